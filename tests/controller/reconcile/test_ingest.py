"""Captured samples into the spool (controller/reconcile/ingest.py) and the golden-agreement live accuracy,
through the real closing and label-ahead code with the in-memory fakes of serving and trainers."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import controller.reconcile.ingest as ingest
from protocol.capture import CaptureWriter, chunk_files
from protocol.model_input import to_model_input
from protocol.spool import Spool
from tests.controller.reconcile.fakes import WINDOW_S, Harness, label_of, make_harness
from trainer.streams.base import WindowData


def _capture(h: Harness, camera: str, arrivals: list[float], predictions: list[int] | None = None,
             images: np.ndarray | None = None) -> Path:
    """One capture chunk of `camera`, a one-crop request per arrival time (seconds after t0)."""
    n = len(arrivals)
    if images is None:
        images = np.random.default_rng(n).integers(0, 256, size=(n, 4, 4, 3), dtype=np.uint8)
    served = predictions if predictions is not None else [0] * n
    writer = CaptureWriter(h.scope.config.capture_dir / camera, 1.0, 2**30)
    for k, arrival in enumerate(arrivals):
        writer.add(to_model_input(images[k:k + 1]), [served[k]], request_id=f"r{k}", arrival=h.state.t0 + arrival,
                   version=1)
    path = writer.flush()
    assert path is not None
    return path


def _spooled(h: Harness, camera: str, window: int) -> list[WindowData]:
    spool = Spool(h.scope.layout, camera, 2**30)
    return [WindowData.load(chunk) for chunk in spool.chunks(window)]


def _discarded(h: Harness, camera: str, reason: str) -> float:
    value = h.scope.metrics.registry.get_sample_value("ekya_camera_capture_discarded_crops_total",
                                                      {"camera": camera, "reason": reason})
    return value or 0.0


def test_captured_crops_go_to_the_windows_they_arrived_in(tmp_path: Path) -> None:
    h = make_harness(tmp_path)
    h.enter_window(0)
    path = _capture(h, "cam0", [-5.0, 10.0, 12.0, WINDOW_S + 1, WINDOW_S + 2, WINDOW_S + 3], [1, 2, 3, 4, 5, 0])
    h.reconciler.label_open_window()
    assert not path.exists()  # moved
    first, second = _spooled(h, "cam0", 0), _spooled(h, "cam0", 1)
    assert [len(p) for p in first] == [2] and [len(p) for p in second] == [3]  # split at the boundary
    part = first[0]
    np.testing.assert_allclose(part.timestamps, h.state.t0 + np.array([10.0, 12.0]))
    assert part.track_ids.tolist() == [-1, -1] and (part.labels == -1).all()
    assert part.frame_index.tolist() == np.rint(part.timestamps * 1e6).astype(np.int64).tolist()
    chunk = Spool(h.scope.layout, "cam0", 2**30).chunks(0)[0]
    assert np.load(chunk.with_suffix(".served.npy")).tolist() == [2, 3]
    assert chunk.with_suffix(".labels.npy").is_file()  # the open window's chunks are golden-labelled at once
    assert h.state.cameras["cam0"].captured == 5 and h.state.cameras["cam1"].captured == 0
    assert _discarded(h, "cam0", "before_start") == 1
    assert h.scope.metrics.registry.get_sample_value("ekya_camera_captured_crops_total", {"camera": "cam0"}) == 5

    h.enter_window(1)  # window 0 closes
    late = _capture(h, "cam0", [20.0, WINDOW_S + 20])  # one crop reaches the controller after its window closed
    h.reconciler.label_open_window()
    assert not late.exists() and _discarded(h, "cam0", "closed_window") == 1
    assert [len(p) for p in _spooled(h, "cam0", 1)] == [3, 1]
    assert h.state.cameras["cam0"].captured == 6


def test_a_pass_cut_short_before_the_capture_file_went_is_redone_without_duplicates(tmp_path: Path) -> None:
    h = make_harness(tmp_path)
    h.enter_window(0)
    path = _capture(h, "cam0", [1.0, 2.0, WINDOW_S + 1])
    kept = tmp_path / "kept.npz"
    shutil.copyfile(path, kept)
    h.reconciler.label_open_window()
    shutil.copyfile(kept, path)  # as if the controller died after writing the spool chunks, before the delete
    spool = Spool(h.scope.layout, "cam0", 2**30)
    spool.chunks(1)[0].unlink()  # ...and after writing only the first window's part
    h.reconciler.label_open_window()
    assert not path.exists()
    assert [len(p) for p in _spooled(h, "cam0", 0)] == [2] and [len(p) for p in _spooled(h, "cam0", 1)] == [1]
    assert h.state.cameras["cam0"].captured == 4  # 3, then the one part written again


def test_a_corrupt_capture_file_is_quarantined_and_the_others_are_moved(tmp_path: Path) -> None:
    h = make_harness(tmp_path)
    h.enter_window(0)
    good = _capture(h, "cam0", [1.0, 2.0])
    bad = good.with_name("cap-00000000000000000001-1-abc-000001.npz")  # sorts first
    bad.write_bytes(b"PK\x03\x04 not a whole zip")
    h.reconciler.label_open_window()
    assert not bad.exists() and not good.exists()
    quarantined = list((h.scope.layout.quarantine_dir("cam0")).rglob(bad.name))
    assert len(quarantined) == 1 and quarantined[0].with_name(bad.name + ".reason").is_file()
    assert [len(p) for p in _spooled(h, "cam0", 0)] == [2]
    assert h.scope.metrics.registry.get_sample_value("ekya_quarantined_files_total", {"camera": "cam0"}) == 1
    assert chunk_files(h.scope.config.capture_dir / "cam0") == []


def test_live_accuracy_is_the_served_models_agreement_with_the_golden_labels(tmp_path: Path) -> None:
    h = make_harness(tmp_path)
    h.enter_window(0)
    images = np.random.default_rng(3).integers(0, 256, size=(8, 4, 4, 3), dtype=np.uint8)
    golden = label_of(images)
    served = [int(g) if k % 4 else int(g + 1) % 6 for k, g in enumerate(golden)]  # 6 of 8 agree
    _capture(h, "cam0", [float(k + 1) for k in range(4)], served[:4], images[:4])
    h.reconciler.label_open_window()
    gauge = h.scope.metrics.registry.get_sample_value
    assert gauge("ekya_camera_live_accuracy_ratio", {"camera": "cam0"}) == 0.75  # the window so far
    _capture(h, "cam0", [float(k + 5) for k in range(4)], served[4:], images[4:])
    h.reconciler.label_open_window()
    assert gauge("ekya_camera_live_accuracy_ratio", {"camera": "cam0"}) == 0.75
    _capture(h, "cam0", [29.0], [int(golden[0])], images[:1])  # still window 0, in at its close
    h.enter_window(1)
    assert h.state.cameras["cam0"].live_accuracy == 7 / 9  # recorded at the close
    assert gauge("ekya_camera_live_accuracy_ratio", {"camera": "cam0"}) == 7 / 9
    assert h.state.cameras["cam1"].live_accuracy is None  # nothing captured: no live accuracy to report
    record = next(r for r in h.state.history if r.window == 0)
    assert record.cameras["cam0"].window_accuracy == 7 / 9  # in the window record too


def test_the_capture_writers_counters_become_the_controllers_metrics(tmp_path: Path) -> None:
    h = make_harness(tmp_path)
    h.enter_window(0)
    directory = h.scope.config.capture_dir / "cam0"
    live = CaptureWriter(directory, 1.0, 2**30)
    for k in range(3):
        live.add(to_model_input(np.zeros((2, 4, 4, 3), np.uint8)), [0, 1], request_id=f"r{k}",
                 arrival=h.state.t0 + 1.0, version=1)
    live.flush()
    gone = CaptureWriter(directory, 1.0, budget_bytes=0)  # a writer whose directory is full, then closed
    gone.add(to_model_input(np.zeros((1, 4, 4, 3), np.uint8)), [0], arrival=h.state.t0 + 1.0, version=1)
    gone.close()
    h.reconciler.label_open_window()
    sample = h.scope.metrics.registry.get_sample_value
    assert sample("ekya_capture_samples_total", {"camera": "cam0"}) == 6
    assert sample("ekya_capture_dropped_total", {"camera": "cam0", "reason": "budget"}) == 1
    assert not gone.counts_path.exists() and live.counts_path.exists()  # a closed writer's file, once counted
    live.add(to_model_input(np.zeros((1, 4, 4, 3), np.uint8)), [0], request_id="r9", arrival=h.state.t0 + 2.0,
             version=1)
    live.flush()
    h.reconciler.label_open_window()
    assert sample("ekya_capture_samples_total", {"camera": "cam0"}) == 7  # its growth, not its total again


def test_nothing_dropped_says_nothing(tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    h = make_harness(tmp_path)
    h.enter_window(0)
    _capture(h, "cam0", [1.0, 2.0])
    with caplog.at_level("WARNING"):
        h.reconciler.label_open_window()
    assert not [r for r in caplog.records if "dropped" in r.getMessage()]


def test_a_chunk_evicted_between_the_listing_and_the_reading_is_skipped(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    h = make_harness(tmp_path)
    h.enter_window(0)
    evicted = _capture(h, "cam0", [1.0, 2.0])
    kept = _capture(h, "cam0", [3.0])
    listing = ingest.chunk_files

    def listed_then_evicted(directory: Path) -> list[Path]:
        found = listing(directory)
        evicted.unlink()  # its writer, over its budget, evicts the oldest chunk right after the listing
        return found

    monkeypatch.setattr(ingest, "chunk_files", listed_then_evicted)
    h.reconciler.label_open_window()  # no exception
    assert not kept.exists() and [len(p) for p in _spooled(h, "cam0", 0)] == [1]
    assert not h.scope.layout.quarantine_dir("cam0").exists()
    assert not h.scope.metrics.registry.get_sample_value("ekya_quarantined_files_total", {"camera": "cam0"})
    assert h.state.cameras["cam0"].captured == 1


def test_evicted_samples_are_exported_by_reason(tmp_path: Path) -> None:
    h = make_harness(tmp_path)
    h.enter_window(0)
    directory = h.scope.config.capture_dir / "cam0"
    first = _capture(h, "cam0", [1.0, 2.0])
    writer = CaptureWriter(directory, 1.0, budget_bytes=first.stat().st_size + 1024)  # room for one chunk
    writer.add(to_model_input(np.zeros((1, 4, 4, 3), np.uint8)), [0], arrival=h.state.t0 + 3.0, version=1)
    writer.flush()  # evicts the first chunk
    assert not first.exists()
    h.reconciler.label_open_window()
    sample = h.scope.metrics.registry.get_sample_value
    assert sample("ekya_capture_dropped_total", {"camera": "cam0", "reason": "evicted"}) == 2
    assert h.state.cameras["cam0"].captured == 1
