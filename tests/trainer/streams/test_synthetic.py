"""The synthetic drifting streams: determinism, speed, tracks, per-camera differences, drift."""

from __future__ import annotations

import time

import numpy as np
import pytest

from trainer.configs import RetrainConfig
from trainer.streams.base import stride_profile
from trainer.streams.synthetic import (
    CameraStreamSpec,
    all_conditions_data,
    class_mix,
    conditions,
    default_cameras,
    generate_window,
)

SMALL = {"crop_size": 32, "window_seconds": 100, "fps": 1.0}


def test_deterministic_and_salted():
    spec = CameraStreamSpec(name="a", seed=3, **SMALL)
    a, b = generate_window(spec, 2), generate_window(spec, 2)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)
    c = generate_window(spec, 2, salt=1)
    assert len(c) != len(a) or not np.array_equal(c.images, a.images)
    other = generate_window(CameraStreamSpec(name="b", seed=4, **SMALL), 2)
    assert not np.array_equal(other.images[:5].mean(axis=(1, 2)), a.images[:5].mean(axis=(1, 2)))


def test_max_crops_renders_a_deterministic_sample_of_the_same_objects():
    spec = CameraStreamSpec(name="a", seed=3, **SMALL)
    full = generate_window(spec, 2)
    part = generate_window(spec, 2, max_crops=len(full) // 4)
    assert len(part) == len(full) // 4
    assert np.all(np.diff(part.frame_index) >= 0)  # frame order kept
    objects = {(t, f): y for t, f, y in zip(full.track_ids, full.frame_index, full.labels)}
    assert all(objects[(t, f)] == y for t, f, y in zip(part.track_ids, part.frame_index, part.labels))
    again = generate_window(spec, 2, max_crops=len(full) // 4)
    assert np.array_equal(part.images, again.images) and np.array_equal(part.track_ids, again.track_ids)
    assert len(generate_window(spec, 2, max_crops=10 * len(full))) == len(full)


def test_generate_many_in_worker_processes_equals_in_process(monkeypatch):
    from trainer.streams import synthetic

    specs = [CameraStreamSpec(name=n, seed=i, **SMALL) for i, n in enumerate("ab")]
    tasks = [(spec, w, 0, 30) for spec in specs for w in (0, 1)]
    done_here: list[int] = []
    here = synthetic.generate_many(tasks, on_done=done_here.append)  # small: generated in-process
    monkeypatch.setattr(synthetic, "_PARALLEL_PIXELS", 0)
    monkeypatch.setattr(synthetic, "usable_cores", lambda: 4)
    done_spread: list[int] = []
    spread = synthetic.generate_many(tasks, on_done=done_spread.append)
    assert done_here == done_spread == list(range(len(tasks)))  # progress: each task once, in order
    assert [(d.camera, d.window, len(d)) for d in spread] == [(s.name, w, 30) for s, w, _, _ in tasks]
    assert all(np.array_equal(a.images, b.images) and np.array_equal(a.track_ids, b.track_ids)
               for a, b in zip(here, spread))


def test_speed_thousands_of_crops_per_second():
    spec = CameraStreamSpec(name="a", seed=0, crop_size=64, window_seconds=400)
    generate_window(spec, 0)  # warm the per-camera cache
    t = time.perf_counter()
    w = generate_window(spec, 1)
    rate = len(w) / (time.perf_counter() - t)
    assert rate > 500, f"{rate:.0f} crops/s"  # loose: the machine is shared; ~2-3k/s typical


def test_tracks_span_consecutive_frames():
    w = generate_window(CameraStreamSpec(name="a", seed=1, **SMALL), 0)
    assert w.images.shape[1:] == (32, 32, 3)
    for tid in np.unique(w.track_ids)[:50]:
        frames = np.sort(w.frame_index[w.track_ids == tid])
        assert np.all(np.diff(frames) == 1)
        assert len(set(w.labels[w.track_ids == tid])) == 1
    assert (np.bincount(w.track_ids - w.track_ids.min()) > 1).sum() > 10  # many multi-frame tracks


def test_cameras_drift_differently():
    cams = default_cameras(4, **SMALL)
    assert len({c.drift_speed for c in cams}) > 1
    night = [float(conditions(c, np.array([3.0]))["night"][0]) for c in cams]
    assert len(set(np.round(night, 3))) == 4
    assert float(conditions(cams[0], np.array([0.0]))["night"][0]) == 0.0
    mix0, mix5 = class_mix(cams[0], 0), class_mix(cams[0], 5)
    assert np.abs(mix0 - mix5).sum() > 0.2  # class mix drifts
    static = CameraStreamSpec(name="s", seed=0, drift_magnitude=0.0, **SMALL)
    assert float(conditions(static, np.array([5.0]))["night"][0]) == 0.0


def test_start_window_shifts_the_deployment_not_the_history():
    day = CameraStreamSpec(name="a", seed=5, **SMALL)
    dusk = day.model_copy(update={"start_window": 3.0})
    positions = np.array([0.0, 0.5, 1.7])
    for key, value in conditions(dusk, positions).items():
        assert np.allclose(value, conditions(day, positions + 3.0)[key]), key
    assert np.allclose(class_mix(dusk, 1.0), class_mix(day, 4.0))
    # the bootstrap's history stays the cycle's start, so a dusk deployment starts away from it
    history = np.array([-1.0, -0.2])
    assert np.allclose(conditions(dusk, history)["night"], conditions(day, history)["night"])
    assert float(conditions(dusk, np.array([0.0]))["night"][0]) > 0.3
    assert np.array_equal(generate_window(dusk, -1).images, generate_window(day, -1).images)
    assert not np.array_equal(generate_window(dusk, 0).images, generate_window(day, 0).images)


def test_stride_profile_decreases():
    w = generate_window(CameraStreamSpec(name="a", seed=2, **SMALL), 0)
    prof = stride_profile(w, w.labels.copy())  # a perfect model: losses come from skipped frames only
    assert prof[1] == 1.0 and prof[2] < 1.0 and prof[20] < prof[5] < prof[2]


def test_all_conditions_data_spans_cycle():
    done: list[str] = []
    d = all_conditions_data(default_cameras(2, **SMALL), 200, on_camera=lambda spec: done.append(spec.name))
    assert 100 <= len(d) <= 260 and len(set(d.labels)) == 6
    assert done == ["cam0", "cam1"]


@pytest.mark.slow
def test_drift_hurts_and_retraining_recovers():
    from trainer.drift import drift_experiment

    spec = CameraStreamSpec(name="t", seed=0, crop_size=32, window_seconds=100, objects_per_frame=3)
    r = drift_experiment(spec, "resnet18", history_windows=2, pretrain=RetrainConfig(epochs=4, lr=0.02),
                         retrain=RetrainConfig(epochs=4, lr=0.01))
    assert r.drop >= 0.10, r
    assert r.recovered >= r.drop / 2, r


def test_window_without_pixels_has_the_same_tracks() -> None:
    spec = CameraStreamSpec(name="c", seed=5, crop_size=32, fps=5, window_seconds=4, objects_per_frame=3)
    full = generate_window(spec, 2)
    bare = generate_window(spec, 2, render_pixels=False)
    assert bare.images.shape == (len(full), 0, 0, 3) and bare.images.nbytes == 0
    for name in ("labels", "track_ids", "frame_index", "timestamps"):
        assert np.array_equal(getattr(bare, name), getattr(full, name)), name
