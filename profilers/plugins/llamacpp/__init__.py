"""llama.cpp flow through llama-cpp-python (optional extra ``llamacpp``)."""
