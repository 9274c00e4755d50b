"""The default detector on frames a real camera produces besides moving objects: sensor noise, and the
whole picture changing at once (a cloud, lights switched on, the camera knocked)."""

from __future__ import annotations

import numpy as np

from sources.detection.background import BackgroundDetector
from sources.detection.config import BackgroundDetectorConfig
from sources.detection.tracker import iou_matrix

WIDTH, HEIGHT = 320, 240


def _frame(rng: np.random.Generator, brightness: int, box: tuple[int, int, int, int] | None) -> np.ndarray:
    frame = np.clip(rng.normal(brightness, 3.0, (HEIGHT, WIDTH, 3)), 0, 255).astype(np.uint8)
    frame[:, :, 1] = np.clip(frame[:, :, 1].astype(np.int32) + np.arange(WIDTH) // 8, 0, 255)  # some texture
    if box is not None:
        x0, y0, x1, y1 = box
        frame[y0:y1, x0:x1] = (230, 40, 40)
    return frame


def _moving_box(i: int) -> tuple[int, int, int, int]:
    return (20 + 25 * i, 100, 60 + 25 * i, 140)  # fast enough not to fade into the background


def test_moving_objects_are_found_in_a_noisy_picture_and_a_global_change_is_not_an_object() -> None:
    rng = np.random.default_rng(0)
    detector = BackgroundDetector(BackgroundDetectorConfig(process_width=WIDTH, min_area=100), crop_size=32)
    empty = [detector.detect(_frame(rng, 90, None)) for _ in range(30)]  # the empty scene, sensor noise only
    assert all(len(d.boxes) == 0 for d in empty[10:]), [d.boxes for d in empty]
    found = [detector.detect(_frame(rng, 90, _moving_box(i))) for i in range(10)]
    hits = sum(len(d.boxes) > 0 and iou_matrix(np.array([_moving_box(i)]), d.boxes).max() >= 0.7
               for i, d in enumerate(found))
    assert hits >= 8, [d.boxes for d in found]
    assert all(d.crops.shape[1:] == (32, 32, 3) for d in found)

    # the light changes: the whole frame is foreground for the subtractor, which is not an object
    lit = [detector.detect(_frame(rng, 170, None)) for _ in range(3)]
    assert all(len(d.boxes) == 0 for d in lit), [d.boxes for d in lit]


def test_without_the_guard_the_same_change_would_be_one_frame_sized_box() -> None:
    """What max_area_fraction prevents: with it at 1.0 the lighting change comes out as a giant box."""
    rng = np.random.default_rng(1)
    detector = BackgroundDetector(BackgroundDetectorConfig(process_width=WIDTH, min_area=100,
                                                           max_area_fraction=1.0), crop_size=32)
    for _ in range(30):
        detector.detect(_frame(rng, 90, None))
    boxes = detector.detect(_frame(rng, 170, None)).boxes
    assert len(boxes) >= 1
    assert max((b[2] - b[0]) * (b[3] - b[1]) for b in boxes) > 0.5 * WIDTH * HEIGHT
