"""Full synthetic video frames whose object boxes are known: the synthetic objects (trainer/streams/
synthetic.py's crops) moving over a fixed textured background, one lane each, bouncing off the frame's
sides; and an encoder that writes such frames as a real video file (PyAV, H.264 by default). The video
source's tests and bench/video.py measure the detector against the known boxes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from trainer.streams.synthetic import CameraStreamSpec, generate_window


@dataclass(frozen=True)
class SceneSpec:
    width: int = 320
    height: int = 240
    fps: float = 10.0
    seconds: float = 4.0
    objects: int = 3  # one per horizontal lane
    object_size: int = 40  # pixels (square)
    speed: float = 6.0  # pixels per frame, at most (each object between half and all of it)
    noise: float = 2.0  # sensor noise (std, grey levels)
    seed: int = 0

    @property
    def frames(self) -> int:
        return max(1, round(self.fps * self.seconds))


@dataclass(frozen=True)
class SceneFrame:
    image: np.ndarray  # [H,W,3] uint8 RGB
    boxes: np.ndarray  # [K,4] int64 x0, y0, x1, y1: the objects' true boxes
    object_ids: np.ndarray  # [K] int64


def _background(spec: SceneSpec, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:spec.height, 0:spec.width].astype(np.float32)
    bg = np.broadcast_to(rng.uniform(70, 150, 3).astype(np.float32), (spec.height, spec.width, 3)).copy()
    for _ in range(4):  # low-frequency texture (road, grass, shadows)
        fx, fy = rng.uniform(0.5, 4, 2) / max(spec.width, spec.height)
        bg += np.sin(2 * np.pi * (fx * xx + fy * yy) + rng.uniform(0, 6.3))[..., None] * rng.uniform(5, 20, 3)
    return bg


def render_scene(spec: SceneSpec) -> Iterator[SceneFrame]:
    rng = np.random.default_rng(spec.seed)
    size = spec.object_size
    lanes = spec.height // spec.objects
    if lanes < size or spec.width < 2 * size:
        raise ValueError(f"{spec.objects} objects of {size}px do not fit a {spec.width}x{spec.height} frame")
    crops = generate_window(CameraStreamSpec(name="scene", seed=spec.seed, crop_size=size, objects_per_frame=3,
                                             fps=10, window_seconds=10), 0).images
    looks = crops[rng.choice(len(crops), spec.objects, replace=len(crops) < spec.objects)]
    background = _background(spec, rng)
    x = rng.uniform(0, spec.width - size, spec.objects)
    v = rng.uniform(0.5, 1.0, spec.objects) * spec.speed * rng.choice([-1, 1], spec.objects)
    y = np.arange(spec.objects) * lanes + (lanes - size) // 2
    ids = np.arange(spec.objects, dtype=np.int64)
    for _ in range(spec.frames):
        frame = background + rng.normal(0, spec.noise, background.shape).astype(np.float32)
        boxes = []
        for k in range(spec.objects):
            x0, y0 = int(round(x[k])), int(y[k])
            frame[y0:y0 + size, x0:x0 + size] = looks[k]
            boxes.append((x0, y0, x0 + size, y0 + size))
        yield SceneFrame(np.clip(frame, 0, 255).astype(np.uint8), np.array(boxes, np.int64), ids)
        x += v
        bounce = (x < 0) | (x > spec.width - size)
        v[bounce] *= -1
        x = np.clip(x, 0, spec.width - size)


def encode_video(path: str | Path, frames: Iterator[np.ndarray] | list[np.ndarray], fps: float,
                 codec: str = "libx264", options: dict[str, str] | None = None) -> Path:
    """Write RGB frames [H,W,3] as a video file (the container from the suffix: .mp4, .ts, .mkv...)."""
    import av

    path = Path(path)
    rate = Fraction(fps).limit_denominator(1000)
    with av.open(str(path), mode="w") as container:
        stream = None
        for image in frames:
            if stream is None:
                stream = container.add_stream(codec, rate=rate)
                stream.width, stream.height = image.shape[1], image.shape[0]
                stream.pix_fmt = "yuv420p"
                stream.options = options if options is not None else {"preset": "veryfast", "crf": "23"}
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        if stream is not None:
            for packet in stream.encode():
                container.mux(packet)
    return path
