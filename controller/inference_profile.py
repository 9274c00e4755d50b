"""The stride -> accuracy-factor inference profile the planner uses, measured on the cameras' own
streams where their source kind can (objects persist over frames, so skipping frames costs what it
costs on that video), else the original system's profile."""

from __future__ import annotations

import numpy as np

from controller.planner import InferenceProfile
from controller.source_context import kind_of, source_context


def measured_profile(config) -> InferenceProfile:
    full_share = config.inference.full_share
    factors: dict[int, list[float]] = {}
    for camera in config.cameras:
        profile = kind_of(config, camera.name).stride_profile(camera.source, source_context(config, camera.name))
        for stride, factor in profile or ():
            factors.setdefault(stride, []).append(factor)
    if not factors:
        return InferenceProfile(full_share=full_share)
    pairs = sorted((float(s), float(np.mean(f))) for s, f in factors.items())
    return InferenceProfile.from_pairs(pairs, full_share=full_share)
