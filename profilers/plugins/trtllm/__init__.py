"""TensorRT-LLM flow (LLM API, PyTorch backend, dummy weights); its pure parts live in ``config``."""
