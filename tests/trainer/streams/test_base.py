"""WindowData persistence/splitting and the stride scoring semantics."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.streams.base import (
    WindowData,
    WindowDataError,
    concat,
    processed_mask_for_stride,
    score_tracks,
    score_with_stride,
    stride_profile,
)


def _window(n: int = 12, size: int = 8) -> WindowData:
    rng = np.random.default_rng(0)
    return WindowData(images=rng.integers(0, 255, (n, size, size, 3), dtype=np.uint8),
                      labels=np.arange(n) % 6, track_ids=np.arange(n) // 3, frame_index=np.arange(n) % 3,
                      timestamps=np.arange(n) * 0.5, camera="c", window=3)


def test_save_load_roundtrip(tmp_path):
    w = _window()
    p = w.save(tmp_path / "w.npz")
    back = WindowData.load(p)
    assert back.camera == "c" and back.window == 3
    for name in ("images", "labels", "track_ids", "frame_index", "timestamps"):
        assert np.array_equal(getattr(back, name), getattr(w, name))
    assert [f.name for f in tmp_path.iterdir()] == ["w.npz"]  # no temp files left


def test_bad_inputs_are_rejected(tmp_path):
    with pytest.raises(WindowDataError, match="uint8"):
        WindowData(np.zeros((2, 4, 4, 3), np.float32), np.zeros(2), np.zeros(2), np.zeros(2), np.zeros(2))
    with pytest.raises(WindowDataError, match=r"labels must be in \[-1, 5\]"):  # the class count, where known
        WindowData(np.zeros((2, 4, 4, 3), np.uint8), np.array([0, 6]), np.zeros(2), np.zeros(2), np.zeros(2),
                   num_classes=6)
    with pytest.raises(WindowDataError, match="labels must be >= -1"):
        WindowData(np.zeros((2, 4, 4, 3), np.uint8), np.array([0, -2]), np.zeros(2), np.zeros(2), np.zeros(2))
    # the class list is the deployment's: a window that does not know it takes any class index
    wide = WindowData(np.zeros((2, 4, 4, 3), np.uint8), np.array([0, 9]), np.zeros(2), np.zeros(2), np.zeros(2))
    with pytest.raises(WindowDataError, match="10 classes"):
        wide.take(np.arange(2)).__class__(**{**wide.__dict__, "num_classes": 10, "labels": np.array([0, 10])})
    saved = WindowData.load(WindowData(**{**wide.__dict__, "num_classes": 10}).save(tmp_path / "ten.npz"))
    assert saved.num_classes == 10 and saved.take(np.array([1])).num_classes == 10
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(WindowDataError, match="not a readable"):
        WindowData.load(tmp_path / "junk.npz")
    with pytest.raises(WindowDataError, match="not found"):
        WindowData.load(tmp_path / "missing.npz")



def _npz_bytes(**arrays) -> bytes:
    import io

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _arrays(**overrides) -> dict:
    w = _window()
    return {**{n: getattr(w, n) for n in ("images", "labels", "track_ids", "frame_index", "timestamps")},
            **overrides}


def _corrupt_compressed(path) -> bytes:
    good = bytearray(_window(n=60).save(path, compress=True).read_bytes())
    middle = len(good) // 2
    good[middle:middle + 64] = bytes(64)  # inside the deflated images: CRC or zlib error on read
    return bytes(good)


@pytest.mark.parametrize("corrupt", [
    lambda p: b"",
    lambda p: _window().save(p).read_bytes()[:300],
    lambda p: bytes(range(256)) * 4,
    lambda p: b"\x93NUMPY\x01\x00" + b"\x00" * 20,
    lambda p: _npz_bytes(foo=np.zeros(2)),
    lambda p: _npz_bytes(**_arrays(images=np.zeros((12, 8, 8, 3), np.float32))),
    lambda p: _npz_bytes(**_arrays(labels=np.full(12, 0.5))),
    lambda p: _npz_bytes(**_arrays(labels=np.full(12, -3))),  # (above: only against a known class count)
    lambda p: _npz_bytes(**_arrays(track_ids=np.zeros(11, np.int64))),
    lambda p: _npz_bytes(**_arrays(timestamps=np.array(["x"] * 12))),
    lambda p: _npz_bytes(**_arrays(), header=np.array("{not json")),
    lambda p: _npz_bytes(**_arrays(), header=np.array("[1, 2]")),
    _corrupt_compressed,
], ids=["empty", "truncated", "garbage", "bad_npy_header", "missing_arrays", "float_images", "float_labels",
        "labels_out_of_range", "mismatched_lengths", "string_timestamps", "header_not_json", "header_a_list",
        "bad_compressed_data"])
def test_every_way_a_window_file_is_wrong_names_the_file(tmp_path, corrupt):
    path = tmp_path / "w000003" / "train.npz"
    path.parent.mkdir()
    path.write_bytes(corrupt(path))
    with pytest.raises(WindowDataError) as error:
        WindowData.load(path)
    assert str(error.value).startswith(f"{path}: ")

def test_split_by_track_and_subsample():
    w = _window(30)
    train, held = w.split(0.3, seed=1)
    assert len(train) + len(held) == 30
    assert not set(train.track_ids) & set(held.track_ids)
    assert len(held) and len(train)
    # a part of the window splits the same way as the whole (by track id and seed, not by position)
    part_train, part_held = w.take(np.arange(12)).split(0.3, seed=1)
    assert set(part_held.track_ids) <= set(held.track_ids) and set(part_train.track_ids) <= set(train.track_ids)
    sub = w.subsample(0.5, seed=0)
    assert len(sub) == 15 and np.all(np.diff(sub.timestamps) > 0)
    assert len(concat([w, sub])) == 45
    part = w.with_labels(np.full(30, -1))
    assert part.num_labelled == 0 and w.num_labelled == 30


def test_score_with_stride_hand_made_case():
    # Track 1 on frames 0-3 (label 0), track 2 on frames 1-2 (label 1), track 3 on frame 3 only (label 2).
    frame = np.array([0, 1, 2, 3, 1, 2, 3])
    track = np.array([1, 1, 1, 1, 2, 2, 3])
    label = np.array([0, 0, 0, 0, 1, 1, 2])
    pred = np.array([0, 5, 0, 0, 1, 4, 2])  # a wrong guess on frame 1 of track 1 and frame 2 of track 2
    # stride 1: every crop uses its own prediction: 5 of 7 right.
    assert score_with_stride(track, frame, label, pred, 1) == pytest.approx(5 / 7)
    # stride 2 (frames 0, 2): track 1 keeps frame 0's right answer on 1 and frame 2's on 3 (4/4);
    # track 2 is missed on frame 1 (unseen) and wrong on 2; track 3 (frame 3 only) is never seen.
    assert score_with_stride(track, frame, label, pred, 2) == pytest.approx(4 / 7)
    # stride 2 offset 1 (frames 1, 3): track 1 missed on 0, wrong on 1 and 2 (keeps 5), right on 3;
    # track 2 right on 1 and keeps it on 2; track 3 right.
    assert score_with_stride(track, frame, label, pred, 2, offset=1) == pytest.approx(4 / 7)
    # Unlabelled crops do not count.
    label_u = label.copy()
    label_u[6] = -1
    assert score_with_stride(track, frame, label_u, pred, 2) == pytest.approx(4 / 6)
    assert processed_mask_for_stride(frame, 3).tolist() == [True, False, False, True, False, False, True]
    assert score_tracks(track, frame, label, pred, np.zeros(7, bool)) == 0.0


def test_stride_profile_shape():
    w = _window(30)
    prof = stride_profile(w, w.labels.copy(), strides=(1, 2, 3))
    assert prof[1] == pytest.approx(1.0)
    assert prof[3] <= prof[2] <= 1.0


def test_crops_of_unknown_track_split_one_by_one_and_a_part_splits_like_the_whole():
    # captured server-side: no track (-1); a frame (request) of 1-3 crops, frame index the arrival time
    frames = np.repeat(np.arange(40) * 1_000_003 + 1_700_000_000_000_000, [1 + k % 3 for k in range(40)])
    n = len(frames)
    w = WindowData(np.zeros((n, 4, 4, 3), np.uint8), np.zeros(n, np.int64), np.full(n, -1), frames,
                   frames / 1e6)
    train, held = w.split(0.25, seed=3)
    assert len(train) + len(held) == n and 0.1 * n < len(held) < 0.4 * n  # not all on one side
    key = {(f, k) for f, k in zip(held.frame_index, _place_in_frame(held.frame_index))}
    part = w.take(np.arange(n // 2))  # the window's first chunks, as profiled ahead of the close
    _, part_held = part.split(0.25, seed=3)
    assert {(f, k) for f, k in zip(part_held.frame_index, _place_in_frame(part_held.frame_index))} <= key


def _place_in_frame(frames: np.ndarray) -> list[int]:
    seen: dict[int, int] = {}
    places = []
    for f in frames.tolist():
        places.append(seen.get(f, 0))
        seen[f] = seen.get(f, 0) + 1
    return places
