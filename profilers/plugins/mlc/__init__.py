"""MLC-LLM flow (convert_weight / gen_config / compile per shape, then MLCEngine usage metrics)."""
