"""A corrupt file in one camera's data (a spool chunk, its golden labels or ground truth, a closed window's
train/test file) is quarantined with its reason; that camera's window goes on with its good files, the
other camera never notices, and a restart does not trip over it again. The real closing, label-ahead and
planning code, with the in-memory fakes of serving and trainers."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import pytest

from protocol.spool import Spool
from tests.controller.reconcile.fakes import Harness, label_of, make_harness
from trainer.streams.base import WindowData

CHUNKS = 3  # per camera and window; the middle one is made bad
CROPS = 40  # per chunk


def _npz(path: Path, **arrays: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    path.write_bytes(buffer.getvalue())


def _arrays(n: int, size: int = 4) -> dict[str, np.ndarray]:
    return {"images": np.zeros((n, size, size, 3), np.uint8), "labels": np.zeros(n, np.int64),
            "track_ids": np.arange(n), "frame_index": np.arange(n), "timestamps": np.zeros(n)}


def _corrupt_chunk(path: Path, kind: str) -> None:
    good = path.read_bytes()
    if kind == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif kind == "garbage":
        path.write_bytes(bytes(range(256)) * 8)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "bare_npy":  # a single array, not an .npz
        buffer = io.BytesIO()
        np.save(buffer, np.zeros(3))
        path.write_bytes(buffer.getvalue())
    elif kind == "missing_arrays":
        _npz(path, foo=np.zeros(3))
    elif kind == "wrong_dtype":
        _npz(path, **{**_arrays(CROPS), "images": np.zeros((CROPS, 4, 4, 3), np.float32)})
    elif kind == "float_labels":
        _npz(path, **{**_arrays(CROPS), "labels": np.full(CROPS, 0.5)})
    elif kind == "wrong_shape":
        _npz(path, **{**_arrays(CROPS), "labels": np.zeros(CROPS - 1, np.int64)})
    elif kind == "odd_crop_size":  # well-formed, but not the size of the window's other crops
        _npz(path, **_arrays(CROPS, size=8))
    else:
        raise AssertionError(kind)


def _corrupt_labels(path: Path, kind: str) -> None:
    buffer = io.BytesIO()
    if kind == "garbage":
        path.write_bytes(b"\x93NUMPY garbage" * 10)
    elif kind == "truncated":
        path.write_bytes(path.read_bytes()[:-40])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind in ("wrong_length", "float_dtype", "out_of_range"):
        values = {"wrong_length": np.zeros(CROPS + 1, np.int64), "float_dtype": np.zeros(CROPS),
                  "out_of_range": np.full(CROPS, 9, np.int64)}[kind]
        np.save(buffer, values)
        path.write_bytes(buffer.getvalue())
    elif kind == "npz_instead":
        _npz(path, labels=np.zeros(CROPS, np.int64))
    elif kind == "broken_zip":
        path.write_bytes(b"PK\x03\x04" + b"\x00" * 64)
    else:
        raise AssertionError(kind)


def _spool_window_0(harness: Harness) -> None:
    harness.enter_window(0)
    for camera in ("cam0", "cam1"):
        for chunk in range(CHUNKS):
            harness.spool(camera, 0, crops=CROPS, chunk=chunk)


def _bad_chunk(harness: Harness) -> Path:
    return harness.scope.layout.spool_dir("cam0", 0) / "chunk-00001.npz"


def _quarantined(harness: Harness, path: Path) -> Path:
    return harness.scope.layout.quarantine_dir("cam0") / path.relative_to(harness.scope.layout.root)


def _quarantine_logs(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "quarantin" in r.getMessage()]


def _quarantine_count(harness: Harness, camera: str) -> float:
    value = harness.scope.metrics.registry.get_sample_value("ekya_quarantined_files_total", {"camera": camera})
    return value or 0.0


def _closed_crops(harness: Harness, camera: str) -> WindowData:
    directory = harness.scope.layout.window_dir(0, camera)
    train, test = WindowData.load(directory / "train.npz"), WindowData.load(directory / "test.npz")
    assert np.array_equal(train.labels, label_of(train.images))  # golden-labelled
    return train, test


def _assert_other_camera_untouched(harness: Harness) -> None:
    train, test = _closed_crops(harness, "cam1")
    assert len(train) + len(test) == CHUNKS * CROPS
    assert not harness.scope.layout.quarantine_dir("cam1").exists() and _quarantine_count(harness, "cam1") == 0


@pytest.mark.parametrize("kind", ["truncated", "garbage", "empty", "bare_npy", "missing_arrays", "wrong_dtype",
                                  "float_labels", "wrong_shape", "odd_crop_size"])
def test_a_corrupt_chunk_is_quarantined_and_its_camera_closes_without_it(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, kind: str) -> None:
    harness = make_harness(tmp_path)
    _spool_window_0(harness)
    chunk = _bad_chunk(harness)
    _corrupt_chunk(chunk, kind)
    with caplog.at_level(logging.ERROR):
        harness.enter_window(1)

    target = _quarantined(harness, chunk)
    assert target.is_file() and not chunk.exists()
    assert not chunk.with_suffix(".truth.npy").exists() and _quarantined(harness, chunk.with_suffix(".truth.npy")).is_file()
    reason = target.with_name(target.name + ".reason").read_text()
    assert str(chunk) in reason and "error: " in reason and len(reason.split("error: ")[1].strip()) > 5
    assert any(str(chunk) in r.getMessage() and "quarantined" in r.getMessage() for r in caplog.records)
    assert _quarantine_count(harness, "cam0") == 2  # the chunk and its ground truth
    train, test = _closed_crops(harness, "cam0")  # closed with its two good chunks
    assert len(train) + len(test) == (CHUNKS - 1) * CROPS
    _assert_other_camera_untouched(harness)
    assert harness.state.closed == 0 and {r.camera for r in harness.trainers.launched} == {"cam0", "cam1"}

    caplog.clear()  # a restart reads the window again: the bad chunk is not there to fail on
    restarted = make_harness(tmp_path)
    data, truth = restarted.scope.spool("cam0").read_window(0)
    assert len(data) == (CHUNKS - 1) * CROPS and truth is not None
    assert _quarantine_count(restarted, "cam0") == 0 and not _quarantine_logs(caplog)


@pytest.mark.parametrize("kind", ["garbage", "truncated", "empty", "wrong_length", "float_dtype", "out_of_range",
                                  "npz_instead", "broken_zip"])
def test_corrupt_golden_labels_are_quarantined_and_the_chunk_labelled_again(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, kind: str) -> None:
    harness = make_harness(tmp_path)
    _spool_window_0(harness)
    chunk = _bad_chunk(harness)
    Spool(harness.scope.layout, "cam0", 2**30).write_labels(chunk, np.zeros(CROPS, np.int64))
    labels = chunk.with_suffix(".labels.npy")
    _corrupt_labels(labels, kind)
    harness.enter_window(1)

    assert _quarantined(harness, labels).is_file() and not labels.exists()
    assert str(labels) in _quarantined(harness, labels).with_name("chunk-00001.labels.npy.reason").read_text()
    assert chunk.is_file() and _quarantine_count(harness, "cam0") == 1  # the crops themselves are good
    train, test = _closed_crops(harness, "cam0")  # every crop kept, the bad labels replaced by the golden model's
    assert len(train) + len(test) == CHUNKS * CROPS
    assert harness.serving.labelled == 2 * CHUNKS * CROPS
    assert harness.state.record_for(0).cameras["cam0"].golden_label_accuracy == 1.0
    _assert_other_camera_untouched(harness)


def test_corrupt_ground_truth_is_quarantined_and_the_window_closes_unmeasured(tmp_path: Path) -> None:
    harness = make_harness(tmp_path)
    _spool_window_0(harness)
    truth = _bad_chunk(harness).with_suffix(".truth.npy")
    truth.write_bytes(b"\x00" * 10)
    harness.enter_window(1)

    assert _quarantined(harness, truth).is_file() and _quarantine_count(harness, "cam0") == 1
    train, test = _closed_crops(harness, "cam0")
    assert len(train) + len(test) == CHUNKS * CROPS
    assert harness.state.record_for(0).cameras["cam0"].golden_label_accuracy is None  # no full truth to compare
    _assert_other_camera_untouched(harness)


def test_the_label_ahead_job_quarantines_a_corrupt_chunk_and_labels_the_rest(tmp_path: Path) -> None:
    harness = make_harness(tmp_path)
    _spool_window_0(harness)
    chunk = _bad_chunk(harness)
    _corrupt_chunk(chunk, "garbage")
    harness.reconciler.label_open_window()

    assert _quarantined(harness, chunk).is_file() and _quarantine_count(harness, "cam0") == 2
    spool = harness.scope.spool("cam0")
    assert spool.unlabelled_chunks(0) == [] and len(spool.chunks(0)) == CHUNKS - 1
    assert harness.serving.labelled == (2 * CHUNKS - 1) * CROPS


@pytest.mark.parametrize("kind", ["garbage", "wrong_dtype"])
def test_a_corrupt_window_file_is_quarantined_before_planning_on_it(tmp_path: Path, kind: str) -> None:
    harness = make_harness(tmp_path)
    harness.reconciler.max_windows = 1  # window 0 closes; the controller stops before planning window 1
    _spool_window_0(harness)
    harness.enter_window(1)
    assert harness.state.closed == 0 and harness.state.window == 0
    train = harness.scope.layout.window_dir(0, "cam0") / "train.npz"
    if kind == "garbage":
        train.write_bytes(b"PK\x03\x04" + b"\x00" * 64)  # a zip's magic, then nothing
    else:
        _npz(train, **{**_arrays(CROPS), "timestamps": np.array(["x"] * CROPS)})

    restarted = make_harness(tmp_path)  # plans window 1 on window 0's data, from disk
    restarted.enter_window(1)
    target = _quarantined(restarted, train)
    assert target.is_file() and not train.exists() and _quarantine_count(restarted, "cam0") == 1
    assert str(train) in target.with_name("train.npz.reason").read_text()
    assert restarted.state.window == 1 and {r.camera for r in restarted.trainers.launched} == {"cam1"}
    assert restarted.profiler.calls == ["cam1"]
