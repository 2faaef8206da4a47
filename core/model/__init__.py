"""Loading supported Llama-family base models from local directories."""
