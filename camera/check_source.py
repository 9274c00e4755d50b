"""`ekya check-source --config C --name X [--seconds S] [--json]`: open a camera's source as the camera
would (its own config section, read the camera's way) and report what a user needs before deploying:
frames decoded, their rate, the resolution, the crops detected per frame, errors. With --json the last
line is {"frames", "fps", "width", "height", "crops", "errors"} (crops: the mean per frame). A user's
ONNX detector is checked as the controller would check it, then run in-process with onnxruntime.

Exit status: 0 frames came; 1 none came within S seconds (a stream that never answers, a video that
decodes to nothing); 2 bad input (an unknown camera, a missing file, a file that is not a video, a
detector file the controller would refuse).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, required=True, help="deployment config (YAML)")
    parser.add_argument("--name", required=True, help="camera name from the config")
    parser.add_argument("--seconds", type=float, default=5.0,
                        help="how long to read (a live stream or a file plays in real time; default 5)")
    parser.add_argument("--json", action="store_true", help="end with the report as one JSON line")


@dataclass
class Report:
    frames: int = 0
    fps: float = 0.0
    width: int = 0
    height: int = 0
    crops: float = 0.0  # mean crops per frame
    errors: list[str] = field(default_factory=list)

    def error(self, message: str) -> None:
        if message not in self.errors:
            self.errors.append(message)

    def to_json(self) -> dict[str, Any]:
        return {"frames": self.frames, "fps": round(self.fps, 2), "width": self.width, "height": self.height,
                "crops": round(self.crops, 2), "errors": self.errors}


def check_detector_file(source: Any, camera: str) -> None:
    """A user's ONNX detector checked as the controller checks it at start-up (trainer/user_models.py),
    so that a file the deployment would refuse is refused here first; the source then runs it in-process
    (no Triton needed)."""
    from sources.detection.config import OnnxDetectorConfig
    from trainer.user_models import inspect_detector

    detector = getattr(source, "detector", None)
    if isinstance(detector, OnnxDetectorConfig):
        inspect_detector(Path(detector.model), f"camera {camera!r}: detector.model", input_size=detector.input_size)


def read_streaming(source: Any, where: str, seconds: float, report: Report, progress: bool) -> None:
    """Frames as the camera takes them, for `seconds` (or until a file without loop ends)."""
    source.start()
    started = time.monotonic()
    times: list[float] = []
    crops = 0
    next_progress = started + 1.0
    try:
        while (left := started + seconds - time.monotonic()) > 0:
            frame = source.next_frame(min(0.25, left))
            health = source.health()
            if health.last_error and not health.up:
                report.error(health.last_error)
            if health.detector_error:
                report.error(health.detector_error)
            if frame is not None:
                times.append(frame.time)
                crops += len(frame.crops)
            elif health.ended:
                break
            if progress and time.monotonic() >= next_progress:
                print(f"  {time.monotonic() - started:4.1f}s: {len(times)} frames, {crops} crops, "
                      f"stream {'up' if health.up else 'down'}", file=sys.stderr)
                next_progress += 1.0
        health = source.health()
    finally:
        source.close()
    report.frames, report.width, report.height = len(times), health.width, health.height
    if len(times) > 1 and times[-1] > times[0]:
        report.fps = (len(times) - 1) / (times[-1] - times[0])
    report.crops = crops / len(times) if times else 0.0
    if not times:
        why = health.last_error or "no answer"
        report.error(f"no frames from {where} within {seconds:g}s ({why})")


def read_windowed(source: Any, window_seconds: float, seconds: float, report: Report) -> None:
    """A per-window source (synthetic, folder): its window 0's first `seconds`."""
    data = source.window(0, window_seconds)
    per_window = source.frames_per_window(window_seconds)
    frames = max(1, min(per_window, round(seconds * source.fps)))
    local = data.frame_index - data.frame_index.min() if len(data) else data.frame_index
    report.frames, report.fps = frames, float(source.fps)
    report.width = report.height = data.image_size
    report.crops = float((local < frames).sum()) / frames


def run(args: argparse.Namespace) -> int:
    from camera.settings import CameraSettingsError, load_camera_settings
    from sources import SourceError, StreamingFrameSource, source_kind
    from trainer.user_models import UserModelError

    report = Report()
    status = 0
    try:
        settings = load_camera_settings(args.config, args.name)
        check_detector_file(settings.source, args.name)
        source = source_kind(settings.source.kind).open(settings.source, settings.context)
    except (CameraSettingsError, SourceError, UserModelError) as exc:
        report.error(str(exc))
        status = 2
    else:
        kind = settings.source.kind
        where = getattr(settings.source, "url", None) or getattr(settings.source, "manifest", None) or kind
        if not args.json:
            print(f"{args.name}: {kind} source {where}, reading {args.seconds:g}s ...", file=sys.stderr)
        if isinstance(source, StreamingFrameSource):
            read_streaming(source, str(where), args.seconds, report, progress=not args.json)
        else:
            read_windowed(source, settings.window_seconds, args.seconds, report)
        status = 0 if report.frames else 1
    print(f"frames: {report.frames}, fps: {report.fps:.2f}, resolution: {report.width}x{report.height}, "
          f"crops per frame: {report.crops:.2f}")
    for message in report.errors:
        print(f"error: {message}", file=sys.stderr if not args.json else sys.stdout)
    if args.json:
        print(json.dumps(report.to_json()))
    return status
