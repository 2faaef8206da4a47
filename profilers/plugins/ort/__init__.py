"""ONNX Runtime flow: our own opset-23 graph builder (Attention with KV cache) run by onnxruntime."""
