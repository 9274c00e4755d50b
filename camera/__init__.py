"""The camera client: streams a camera's frames to Triton and measures what it gets back.

It talks to the controller only over the network (Triton's gRPC endpoint and the controller's read-only
directive endpoint, protocol/directives.py) and never imports the controller, so it runs on any host that
reaches both, and can be replaced by your own client.
"""
