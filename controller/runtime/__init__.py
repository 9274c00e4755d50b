"""The real implementations of the reconcile core's ports (Triton, trainer processes, the torch
micro-profiler, the cameras' files, GPUs) and `Deployment`, which starts them and wires the core."""
