"""How many Triton instances serve a camera, from its inference share (the plan's shares drive serving)."""

from __future__ import annotations

import math


def instances_for_share(share: float, full_share: float, max_instances: int, cores: int | None = None) -> int:
    """One instance per full share (the share at which one instance keeps up with every frame), rounded
    up; at least one, at most `max_instances` and, for CPU instances, at most `cores`: a CPU instance runs
    one request at a time on one thread, so instances beyond the cores only contend for them (requests
    that queue meanwhile are batched by Triton's dynamic batcher instead). `cores` None: GPU instances."""
    wanted = math.ceil(share / full_share - 1e-6) if share > 0 else 1
    cap = max_instances if cores is None else min(max_instances, cores)
    return max(1, min(cap, wanted))
