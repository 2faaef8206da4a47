"""Data preparation: corpus cleaning and splits, tokenizer, token streams, evaluation sets."""
