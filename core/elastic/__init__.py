"""The elastic model: any shape activated in place on a wrapped HF model."""
