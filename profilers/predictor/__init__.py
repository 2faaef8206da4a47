"""Latency predictors fitted on profile tables (physical least squares vs k-NN, chosen by cross-validation)."""
