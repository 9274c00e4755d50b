"""What the planner is told a job costs: a profile taken before the window closed saw part of the window's
data, and a job trains on all of it, so the reused profile's costs grow with the data; and what a job is
found to have cost: at the mean share it ran at, re-plans having changed it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from controller.planner import RetrainOption
from controller.reconcile.context import AheadProfile, WindowContext
from controller.reconcile.ports import ProfiledOptions
from controller.state import JobRecord
from tests.controller.reconcile.fakes import make_harness
from trainer.streams.base import WindowData


def _data(crops: int) -> WindowData:
    images = np.zeros((crops, 4, 4, 3), np.uint8)
    return WindowData(images, np.zeros(crops, np.int64), np.arange(crops), np.arange(crops), np.zeros(crops),
                      camera="cam0", window=0)


def test_a_profile_taken_ahead_is_reused_with_its_costs_grown_to_the_whole_windows_data(tmp_path: Path) -> None:
    harness = make_harness(tmp_path)
    planner = harness.reconciler.planner
    camera = harness.state.cameras["cam0"]
    camera.serving_checkpoint = str(tmp_path / "v1.pt")
    camera.serving_version = 1
    options = [RetrainOption("cam0", "e10-head-h64-s1", 0.8, 2.0), RetrainOption("cam0", "e5-all-h64-s1", 0.9, 10.0)]
    planner.ahead = {0: {"cam0": AheadProfile(ProfiledOptions(0.6, options, train_crops=100), {1}, chunks=3)}}
    context = WindowContext(window=1, started=0.0)
    costs = {o.config: o.gpu_seconds for o in planner.options_for("cam0", context, (_data(400), _data(100)))}
    assert costs == {"e10-head-h64-s1": 8.0, "e5-all-h64-s1": 40.0}  # 4x the crops the profile saw
    assert harness.profiler.calls == []  # reused, not profiled again
    # a profile that saw the whole window (or more: never shrunk), or did not record its crops: as it is
    for seen in (400, 500, 0):
        planner.ahead = {0: {"cam0": AheadProfile(ProfiledOptions(0.6, options, train_crops=seen), {1}, chunks=3)}}
        costs = {o.config: o.gpu_seconds for o in planner.options_for("cam0", context, (_data(400), _data(100)))}
        assert costs == {"e10-head-h64-s1": 2.0, "e5-all-h64-s1": 10.0}, seen


def test_a_jobs_cost_is_reckoned_at_the_mean_share_it_ran_at() -> None:
    # launched at a tiny share, raised by a re-plan near its end: most of its time ran at the small share
    record = JobRecord(job_id="j", camera="cam0", config="c", window=1, job_dir="/tmp/j", share=0.05,
                       started_at=100.0)
    record.change_share(0.45, 108.0)
    assert record.share == 0.45
    assert record.mean_share(110.0) == pytest.approx((0.05 * 8 + 0.45 * 2) / 10)
    assert record.mean_share(100.0) == 0.45  # nothing run yet: its share now
