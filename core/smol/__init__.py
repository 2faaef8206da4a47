"""SMoL: shape-aware mixture of LoRAs attached to an ``ElasticModel`` (DESIGN §3.1)."""
