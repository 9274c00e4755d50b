"""Video ingest benchmark: decode + detect + crop frames per second at 720p and 1080p, next to decoding
alone (FFmpeg via PyAV, no detection: the limit), and how many 720p cameras at 10 fps one box ingests.

    python bench/video.py [--seconds 8] [--fps 10] [--crop-size 32] [--repeat 3] [--json]

The test videos are synthetic scenes (trainer/streams/scene.py: objects moving over a textured
background) encoded as H.264 by PyAV into a temporary directory. Frames are read as fast as they come
(no real-time pacing). "cameras" = the full pipeline's frames per second / the cameras' fps: an upper
bound, since inference and retraining share the same cores. Last line: JSON per resolution.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

RESOLUTIONS = {"720p": (1280, 720), "1080p": (1920, 1080)}


def decode_only(path: Path, rgb: bool) -> tuple[int, float]:
    import av

    start = time.perf_counter()
    frames = 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            if rgb:
                frame.to_ndarray(format="rgb24")
            frames += 1
    return frames, time.perf_counter() - start


def full_pipeline(path: Path, crop_size: int) -> tuple[int, float, float]:
    """(frames, seconds, crops per frame): decode, RGB, background subtraction, contours, tracking, crops."""
    import av

    from sources.detection.background import BackgroundDetector
    from sources.detection.config import BackgroundDetectorConfig

    detector = BackgroundDetector(BackgroundDetectorConfig(), crop_size)
    start = time.perf_counter()
    frames = crops = 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            crops += len(detector.detect(frame.to_ndarray(format="rgb24")).crops)
            frames += 1
    return frames, time.perf_counter() - start, crops / max(1, frames)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=8.0, help="length of each test video")
    ap.add_argument("--fps", type=float, default=10.0, help="the videos' (and the cameras') frame rate")
    ap.add_argument("--crop-size", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=3, help="passes per measurement (the best counts)")
    ap.add_argument("--json", action="store_true", help="print only the JSON line")
    args = ap.parse_args()

    from trainer.streams.scene import SceneSpec, encode_video, render_scene

    out: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="ekya-bench-video-") as tmp:
        for name, (width, height) in RESOLUTIONS.items():
            path = Path(tmp) / f"{name}.mp4"
            spec = SceneSpec(width=width, height=height, fps=args.fps, seconds=args.seconds, objects=4,
                             object_size=height // 6, speed=height / 40)
            encode_video(path, (f.image for f in render_scene(spec)), spec.fps)
            if not args.json:
                print(f"{name}: {spec.frames} frames, {path.stat().st_size / 1e6:.1f} MB", file=sys.stderr)
            # best of --repeat: the box is shared, and the first pass pays for thread pools and caches
            n, decode_s = min((decode_only(path, rgb=False) for _ in range(args.repeat)), key=lambda r: r[1])
            _, rgb_s = min((decode_only(path, rgb=True) for _ in range(args.repeat)), key=lambda r: r[1])
            _, full_s, crops = min((full_pipeline(path, args.crop_size) for _ in range(args.repeat)),
                                   key=lambda r: r[1])
            decode_fps, rgb_fps, full_fps = n / decode_s, n / rgb_s, n / full_s
            out[name] = {"decode_fps": round(decode_fps, 1), "decode_rgb_fps": round(rgb_fps, 1),
                         "pipeline_fps": round(full_fps, 1), "ratio": round(full_fps / decode_fps, 3),
                         "crops_per_frame": round(crops, 2), "cameras_at_fps": round(full_fps / args.fps, 1)}
            if not args.json:
                print(f"  decode alone {decode_fps:7.1f} fps | decode+rgb {rgb_fps:7.1f} fps | "
                      f"decode+detect+crop {full_fps:7.1f} fps (ratio {full_fps / decode_fps:.2f}, "
                      f"{crops:.1f} crops/frame) -> {full_fps / args.fps:.1f} cameras at {args.fps:g} fps")
    print(json.dumps({"cores": os.cpu_count(), "fps": args.fps, **out}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
