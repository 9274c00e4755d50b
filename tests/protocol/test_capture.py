"""The capture writer on its own (no Triton): sampling by rate and by request id, the exact way back to
uint8 crops, atomic chunks, oldest-first eviction over the budget, backlog drops, and no error ever reaching the request path."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

import protocol.capture as capture
from protocol.capture import (
    CaptureCounts,
    CaptureWriter,
    chunk_files,
    read_chunk,
    read_counts,
    request_draw,
    to_uint8_images,
)
from protocol.model_input import to_model_input
from tests.imports import imported_modules

SIZE = 8


def _crops(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, SIZE, SIZE, 3), dtype=np.uint8)


def _add(writer: CaptureWriter, crops: np.ndarray, request_id: str = "", arrival: float = 100.0) -> int:
    return writer.add(to_model_input(crops), np.arange(len(crops)) % 6, request_id=request_id, arrival=arrival,
                      version=3)


def test_every_uint8_value_survives_the_round_trip_through_the_model_input() -> None:
    every = np.arange(256, dtype=np.uint8).repeat(3).reshape(1, 16, 16, 3)
    back = to_uint8_images(to_model_input(every))
    assert back.dtype == np.uint8 and back.shape == every.shape
    np.testing.assert_array_equal(back, every)


def test_the_sample_follows_the_rate_and_a_request_id_always_samples_the_same(tmp_path: Path) -> None:
    assert not any(CaptureWriter(tmp_path, 0.0, 2**20).wants(f"r{i}") for i in range(100))
    assert all(CaptureWriter(tmp_path, 1.0, 2**20).wants() for _ in range(100))
    sampler = CaptureWriter(tmp_path, 0.3, 2**20, seed=1)
    random_draws = [sampler.wants() for _ in range(4000)]
    assert 0.27 < np.mean(random_draws) < 0.33
    ids = [f"frame-{i}" for i in range(4000)]
    first = [CaptureWriter(tmp_path, 0.3, 2**20, seed=1).wants(i) for i in ids]
    again = [CaptureWriter(tmp_path, 0.3, 2**20, seed=2).wants(i) for i in ids]  # another instance, a rerun
    assert first == again == [request_draw(i) < 0.3 for i in ids]
    assert 0.27 < np.mean(first) < 0.33


def test_a_chunk_holds_the_crops_ids_times_predictions_and_version(tmp_path: Path) -> None:
    writer = CaptureWriter(tmp_path / "cam", 1.0, 2**24)
    a, b = _crops(2, seed=1), _crops(3, seed=2)
    assert _add(writer, a, "id-a", arrival=10.5) == 2 and _add(writer, b, "", arrival=11.25) == 3
    path = writer.flush()
    assert path is not None and chunk_files(tmp_path / "cam") == [path]
    part = read_chunk(path)
    np.testing.assert_array_equal(part.images, np.concatenate([a, b]))
    assert part.request_id.tolist() == ["id-a"] * 2 + [""] * 3
    assert part.arrival.tolist() == [10.5] * 2 + [11.25] * 3
    assert part.prediction.tolist() == [0, 1, 0, 1, 2] and part.version.tolist() == [3] * 5
    assert writer.flush() is None  # nothing pending: no empty chunk
    assert writer.counts() == CaptureCounts(samples=5)


def test_chunks_of_writers_sharing_a_directory_and_a_clock_never_collide(tmp_path: Path) -> None:
    writers = [CaptureWriter(tmp_path, 1.0, 2**24, clock=lambda: 1000.0) for _ in range(3)]
    for writer in writers:
        _add(writer, _crops(1))
        writer.flush()
    assert len(chunk_files(tmp_path)) == 3


def test_a_write_cut_short_leaves_no_chunk_and_is_counted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writer = CaptureWriter(tmp_path, 1.0, 2**24)
    _add(writer, _crops(4))

    def crash_midway(fh, **arrays) -> None:  # a full disk, say: half the bytes, then the error
        fh.write(b"PK\x03\x04 half a zip")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(capture.np, "savez", crash_midway)
    assert writer.flush() is None  # no exception
    assert [p.name for p in tmp_path.iterdir()] == [writer.counts_path.name]  # neither a chunk nor its temp file
    counts = writer.counts()
    assert counts.samples == 0 and counts.dropped["error"] == 4 and counts.errors == 1
    # ...and the counters are in the file the controller reads them from
    assert read_counts(tmp_path) == [(writer.counts_path, counts, False)]
    writer.close()
    assert read_counts(tmp_path) == [(writer.counts_path, counts, True)]


def test_over_its_budget_the_oldest_chunks_are_evicted_first_and_counted(tmp_path: Path) -> None:
    probe = CaptureWriter(tmp_path / "probe", 1.0, 2**30)
    _add(probe, _crops(1), "r0")
    crop_file = probe.flush().stat().st_size  # a one-crop chunk on disk
    writer = CaptureWriter(tmp_path / "cam", 1.0, budget_bytes=3 * crop_file + 2048)  # room for about three
    tmp_path = tmp_path / "cam"
    other = CaptureWriter(tmp_path, 1.0, budget_bytes=2**30)  # another instance's chunk, the oldest
    _add(other, _crops(2, seed=99), "other", arrival=1.0)
    other.flush()
    for i in range(8):  # the controller is away: one chunk per flush
        assert _add(writer, _crops(1, seed=i), f"r{i}", arrival=10.0 + i) == 1
        assert writer.flush() is not None
    left = chunk_files(tmp_path)
    assert 1 < len(left) < 8
    ids = [read_chunk(p).request_id.tolist()[0] for p in left]
    assert ids == [f"r{i}" for i in range(8 - len(left), 8)]  # the newest kept, in order
    counts = writer.counts()
    assert counts.dropped["evicted"] == 2 + (8 - len(left)) and counts.dropped["budget"] == 0
    assert counts.samples == 8
    assert sum(p.stat().st_size for p in tmp_path.iterdir()) <= 3 * crop_file + 2048
    # ...and the counters file the controller reads says so
    assert [c.dropped["evicted"] for p, c, _ in read_counts(tmp_path) if p == writer.counts_path] == [10 - len(left)]
    # more than the whole budget at once cannot be kept, whatever is evicted
    assert _add(writer, _crops(40)) == 0 and writer.counts().dropped["budget"] == 40


def test_a_chunk_that_goes_while_the_writer_evicts_is_not_counted(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    writer = CaptureWriter(tmp_path, 1.0, budget_bytes=2 * (SIZE * SIZE * 3 + 4096))
    _add(writer, _crops(1))
    first = writer.flush()
    assert first is not None
    listed = capture.chunk_files(tmp_path)

    def listed_then_collected(directory: Path) -> list[Path]:  # the controller moves it after the listing
        first.unlink()
        return listed

    monkeypatch.setattr(capture, "chunk_files", listed_then_collected)
    _add(writer, _crops(3, seed=1))
    assert writer.flush() is not None
    counts = writer.counts()
    assert counts.dropped["evicted"] == 0 and counts.errors == 0 and counts.samples == 4


def test_more_waiting_than_the_backlog_holds_is_dropped(tmp_path: Path) -> None:
    writer = CaptureWriter(tmp_path, 1.0, 2**30, backlog_bytes=4 * SIZE * SIZE * 3)
    kept = sum(_add(writer, _crops(1, seed=i)) for i in range(10))
    assert 0 < kept < 10 and writer.counts().dropped["backlog"] == 10 - kept


def test_no_error_ever_reaches_the_request(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("in the way")
    writer = CaptureWriter(blocker / "cam", 1.0, 2**24)  # its directory cannot be made
    assert _add(writer, _crops(2)) == 2
    assert writer.flush() is None
    assert writer.add(np.zeros((2, 5)), [0, 1], arrival=1.0, version=1) == 0  # not an image batch
    assert writer.add(to_model_input(_crops(2)), [0], arrival=1.0, version=1) == 0  # predictions short
    counts = writer.counts()
    assert counts.errors >= 3 and counts.dropped["error"] == 2 + 2 + 2 and counts.samples == 0
    assert _add(writer, _crops(0)) == 0  # an empty batch: nothing, and no error


def test_the_flush_thread_writes_on_its_cadence_and_close_writes_the_rest(tmp_path: Path) -> None:
    writer = CaptureWriter(tmp_path, 1.0, 2**24, chunk_seconds=0.1).start()
    _add(writer, _crops(2))
    deadline = time.monotonic() + 10
    while not chunk_files(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(chunk_files(tmp_path)) == 1
    _add(writer, _crops(3))
    writer.close()
    assert sum(len(read_chunk(p)) for p in chunk_files(tmp_path)) == 5
    ((_, counts, closed),) = read_counts(tmp_path)  # each count reported once, in the writer's own file
    assert counts.samples == 5 and closed


def test_capture_runs_inside_triton_on_numpy_and_the_standard_library_alone() -> None:
    names = imported_modules("protocol")["protocol/capture.py"]
    assert {n.split(".")[0] for n in names} - set(sys.stdlib_module_names) - {"numpy"} == set()
