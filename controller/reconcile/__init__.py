"""The controller's reconcile core, in the Kubernetes-controller style.

`step.Reconciler.reconcile()` observes (the clock, the trainers, the spooled frames), plans (the pure
planner in controller.planner), diffs the plan against what is applied, acts, and returns how soon it
wants to run again. Everything it acts on comes in through `ports` (serving, trainers, the micro-profiler,
the cameras' channel, GPU support, the clock), so tests hand in fakes; `controller.runtime` builds the
real ones (Triton, trainer processes, MPS).
"""
