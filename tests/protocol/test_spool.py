"""The camera spool: chunks for labelling and retraining, golden labels beside them, a bounded disk."""

from __future__ import annotations

import numpy as np

from protocol.files import CameraFiles
from protocol.spool import Spool
from trainer.streams.base import UNLABELLED
from trainer.streams.synthetic import CameraStreamSpec, generate_window


def _window(seed: int = 0):
    return generate_window(CameraStreamSpec(name="cam", seed=seed, crop_size=16, fps=2, window_seconds=20), 0)


def test_chunks_read_back_unlabelled_with_their_truth(tmp_path):
    spool = Spool(CameraFiles(tmp_path), "cam", budget_bytes=10**9)
    data = _window()
    first, second = data.take(np.arange(0, 10)), data.take(np.arange(10, 25))
    spool.write_chunk(0, 0, first)
    spool.write_chunk(0, 1, second)
    # a half-written chunk (an atomic write's temp file) is never read
    (spool.chunks(0)[0].parent / ".chunk-00002.npz.abc.tmp").write_bytes(b"partial")
    read, truth = spool.read_window(0)
    assert len(read) == 25 and np.all(read.labels == UNLABELLED)  # retraining labels come from the golden model
    assert np.array_equal(truth, data.labels[:25])
    assert np.array_equal(read.images, data.images[:25])


def test_labels_written_during_the_window_are_read_at_close(tmp_path):
    spool = Spool(CameraFiles(tmp_path), "cam", budget_bytes=10**9)
    data = _window()
    for index in range(3):
        spool.write_chunk(0, index, data.take(np.arange(8 * index, 8 * index + 8)))
    chunks = spool.chunks(0)
    golden = (data.labels[8:16] + 1) % 6  # distinguishable from the truth
    spool.write_labels(chunks[1], golden)
    assert spool.unlabelled_chunks(0) == [chunks[0], chunks[2]]
    read, _ = spool.read_window(0)
    assert np.array_equal(read.labels[8:16], golden)
    assert np.all(read.labels[:8] == UNLABELLED) and np.all(read.labels[16:] == UNLABELLED)


def test_disk_budget_drops_oldest_chunks_and_their_sidecars(tmp_path):
    layout = CameraFiles(tmp_path)
    data = _window()
    probe = Spool(layout, "probe", budget_bytes=10**9)
    probe.write_chunk(0, 0, data.take(np.arange(20)))
    one_chunk = probe.usage_bytes()
    spool = Spool(layout, "cam", budget_bytes=int(2.5 * one_chunk))
    for window in range(2):
        for index in range(2):
            spool.write_chunk(window, index, data.take(np.arange(20)))
            spool.write_labels(spool.chunks(window)[-1], data.labels[:20])
            spool.enforce_budget()
    assert spool.usage_bytes() <= spool.budget_bytes
    assert spool.chunks(0) == []  # window 0 went first
    assert [c.name for c in spool.chunks(1)] == ["chunk-00000.npz", "chunk-00001.npz"][-len(spool.chunks(1)):]
    assert not list(spool.layout.spool_dir("cam", 0).glob("*.npy"))  # no orphaned truth or labels
    spool.drop_windows_before(2)
    assert spool.chunks(1) == []
