"""Instant subnet export: any shape → a standalone, physically sliced HF model directory."""
