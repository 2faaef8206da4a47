"""Stage 2: one-for-all fine-tuning of SMoL adapters by sandwich sampling and in-place distillation."""
