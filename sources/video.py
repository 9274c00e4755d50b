"""The `video` source kind: a video file or a live stream (RTSP, HTTP(S)...), decoded with PyAV, objects
found in its frames by a detector (sources/detection/) and cropped at the edge model's input size.

    source: {kind: video, url: PATH_OR_URL, fps: null, loop: false, detector: {kind: background}}

A path (or `file://` URL) is a file, relative to the config file's directory; it plays in real time at
its own frame rate or `fps` (frames dropped or duplicated to match), once or, with `loop`, over and over.
A stream URL is live: read as it arrives, reopened with backoff when it drops (the camera is reported
down meanwhile, and the gap counted). Video has no ground truth: the camera's accuracy comes from the
controller's golden labels on the samples Triton captures, and there is no history to bootstrap from.
"""

from __future__ import annotations

import urllib.parse
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, ValidationInfo, model_validator

from sources.detection.config import BackgroundDetectorConfig, DetectorConfig, OnnxDetectorConfig
from sources.fields import SourceConfig
from sources.registry import SourceContext, SourceError, SourceKind, register_source_kind
from sources.streaming import StreamingFrameSource
from trainer.streams.base import WindowData

LIVE_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt")


def _resolve_url(value: str, info: ValidationInfo) -> str:
    """A stream URL as given; a file (a path or a file:// URL) as an absolute path, a relative one
    relative to the config file's directory (validation context `base_dir`)."""
    value = value.strip()
    if not value:
        raise ValueError("expected a video file path or a stream URL")
    parts = urllib.parse.urlsplit(value)
    scheme = parts.scheme.lower()
    if scheme in LIVE_SCHEMES:
        return value
    if scheme == "file":
        value = urllib.parse.unquote(parts.netloc + parts.path)
    elif len(scheme) > 1:
        raise ValueError(f"unsupported URL scheme {scheme!r}; expected a file path, file://, or a stream URL "
                         f"({', '.join(s + '://' for s in LIVE_SCHEMES)})")
    path = Path(value).expanduser()
    base = (info.context or {}).get("base_dir")
    if not path.is_absolute() and base is not None:
        path = Path(base) / path
    return str(path.resolve() if path.is_absolute() else path)


VideoUrl = Annotated[str, AfterValidator(_resolve_url)]


def is_live(url: str) -> bool:
    return urllib.parse.urlsplit(url).scheme.lower() in LIVE_SCHEMES


class VideoSource(SourceConfig):
    """A video file or live stream; crops from the detector."""

    kind: Literal["video"]
    url: VideoUrl
    fps: float | None = Field(None, gt=0.0, le=240.0)  # None: the video's own rate
    loop: bool = False  # files only: play again from the start at the end
    detector: DetectorConfig = BackgroundDetectorConfig()
    options: dict[str, str] = {}  # FFmpeg's options for opening it (e.g. rtsp_transport: udp)
    open_timeout_s: float = Field(10.0, gt=0.0, le=600.0)  # a stream that does not answer is down
    read_timeout_s: float = Field(5.0, gt=0.0, le=600.0)  # a stream silent this long is down
    max_backoff_s: float = Field(30.0, ge=0.5, le=3600.0)  # reopening waits double up to this

    @model_validator(mode="after")
    def _loop_is_for_files(self) -> VideoSource:
        if self.loop and is_live(self.url):
            raise ValueError("`loop` applies to video files; a live stream plays as it comes")
        return self


def _open(source: VideoSource, ctx: SourceContext) -> StreamingFrameSource:
    from sources.video_reader import VideoReader, probe

    live = is_live(source.url)
    options = dict(source.options)
    if source.url.lower().startswith(("rtsp://", "rtsps://")):
        options.setdefault("rtsp_transport", "tcp")  # no lost UDP packets smearing the frames
    stream_fps = None
    if not live:  # a missing file or one that is not a video is refused now; a stream is tried with backoff
        path = Path(source.url)
        if not path.is_file():
            raise SourceError(f"camera {ctx.camera!r}: video file not found: {path}")
        try:
            info = probe(str(path), source.open_timeout_s)
        except Exception as exc:  # av's errors say what FFmpeg found
            raise SourceError(f"camera {ctx.camera!r}: {path} is not a video PyAV can read: {exc}") from None
        stream_fps = info.fps
    detector = source.detector
    if isinstance(detector, OnnxDetectorConfig) and not ctx.triton_url and not Path(detector.model).is_file():
        raise SourceError(f"camera {ctx.camera!r}: detector.model {detector.model}: file not found")
    try:
        return VideoReader(camera=ctx.camera, url=source.url, live=live, crop_size=ctx.crop_size,
                           detector=detector, configured_fps=source.fps, loop=source.loop, options=options,
                           open_timeout_s=source.open_timeout_s, read_timeout_s=source.read_timeout_s,
                           max_backoff_s=source.max_backoff_s, stream_fps=stream_fps, triton_url=ctx.triton_url)
    except Exception as exc:  # onnxruntime's errors for a detector file it cannot load
        if not isinstance(detector, OnnxDetectorConfig):
            raise
        raise SourceError(f"camera {ctx.camera!r}: detector.model {detector.model}: cannot load it: {exc}") from None


def _bootstrap_windows(source: VideoSource, ctx: SourceContext, windows: list[int],
                       max_crops: int | None) -> WindowData:
    raise SourceError(
        f"camera {ctx.camera!r}: a video source has no labelled history to bootstrap from; train the initial "
        "models with `ekya bootstrap --config C` on a deployment whose cameras are labelled folders "
        "(`kind: folder`, a manifest with labels), or give the deployment a trained edge model")


def _has_ground_truth(source: VideoSource, ctx: SourceContext) -> bool:
    return False


VIDEO = register_source_kind(SourceKind(
    name="video", config_model=VideoSource, open=_open, bootstrap_windows=_bootstrap_windows,
    has_ground_truth=_has_ground_truth))
