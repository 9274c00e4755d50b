"""Triton adapter: the embedded server process, the model repository writer, and the gRPC client."""
