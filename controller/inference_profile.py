"""The stride -> accuracy-factor inference profile the planner uses, measured on the cameras' own
streams where they are synthetic (objects persist over frames, so skipping frames costs what it
costs on that video), else the original system's profile."""

from __future__ import annotations

import numpy as np

from controller.planner import InferenceProfile


def measured_profile(config) -> InferenceProfile:
    from controller.sources import stream_spec
    from trainer.streams.base import stride_profile
    from trainer.streams.synthetic import generate_window

    full_share = config.inference.full_share
    synthetic = [c.name for c in config.cameras if c.source.kind == "synthetic"]
    if not synthetic:
        return InferenceProfile(full_share=full_share)
    factors: dict[int, list[float]] = {}
    for name in synthetic:
        window = generate_window(stream_spec(config, name), 0, render_pixels=False)  # tracks suffice
        # A perfect model: what remains is the cost of skipping frames alone.
        for stride, factor in stride_profile(window, window.labels).items():
            factors.setdefault(stride, []).append(factor)
    pairs = sorted((float(s), float(np.mean(f))) for s, f in factors.items())
    return InferenceProfile.from_pairs(pairs, full_share=full_share)
