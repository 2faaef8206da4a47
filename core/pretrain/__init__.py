"""Pretraining of the small embedded base model (recipe + its pieces)."""
