"""Latency profiler plugins, profile tables, the latency predictor and the device agent."""
