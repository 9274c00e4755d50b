"""The `folder` source kind: the user's own crops, listed by a CSV manifest (trainer/streams/folder.py;
`ekya prepare cityscapes` writes one), replayed on the deployment's window clock.

The manifest's timeline is cut into windows of the deployment's `window_seconds` (manifest window
floor(timestamp / window_seconds), counted from the camera's first one). The first
`bootstrap.history_windows` of them are the history (the deployment's windows -k..-1): the bootstrap
trains the initial edge and golden models on their labelled crops. The deployment's window w >= 0
replays the manifest window after the history w mod (the number of windows after it): the replay loops
for as long as the deployment runs. A manifest no longer than its history replays all of its windows.

Within a window, each crop keeps its time from the window's start and is shown at frame
floor(t * fps): crops of one manifest frame are one camera frame. The camera scores accuracy where
the manifest has labels; the planner's inference profile is measured on the manifest's tracks where it
has track ids.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from sources.fields import ConfigPath, SourceConfig
from sources.registry import (
    SourceContext,
    SourceError,
    SourceKind,
    StrideProfile,
    classes_identity,
    register_source_kind,
)
from trainer.streams.base import CLASSES, WindowData, concat
from trainer.streams.folder import FolderStream, ManifestError


class FolderSource(SourceConfig):
    """Crops listed by a manifest (written by `ekya prepare`), streamed at `fps`."""

    kind: Literal["folder"]
    manifest: ConfigPath
    camera: str | None = None  # the manifest's `camera` column value; default: the configured camera's name
    fps: float = Field(10.0, gt=0.0, le=240.0)


@dataclass
class ManifestReplay:
    """One manifest camera's crops, laid on the deployment's window clock (see the module's docstring)."""

    manifest: Path
    camera: str  # in the manifest
    name: str  # the configured camera
    fps: float
    crop_size: int
    history_windows: int
    classes: tuple[str, ...] = CLASSES
    _streams: dict[float, FolderStream] = field(default_factory=dict, repr=False)

    def stream(self, window_seconds: float) -> FolderStream:
        if window_seconds not in self._streams:
            try:
                stream = FolderStream(self.manifest, self.crop_size, window_seconds, self.classes)
            except ManifestError as exc:
                raise SourceError(f"camera {self.name!r}: {exc}") from exc
            if self.camera not in stream.cameras():
                raise SourceError(f"camera {self.name!r}: no crops of camera {self.camera!r} in {self.manifest} "
                                  f"(its cameras: {', '.join(stream.cameras()) or 'none'}); set `source.camera`")
            self._streams[window_seconds] = stream
        return self._streams[window_seconds]

    def manifest_window(self, window: int, window_seconds: float) -> int | None:
        """The manifest window the deployment's `window` replays (None: before the manifest starts)."""
        present = self.stream(window_seconds).windows(self.camera)
        first, span = present[0], present[-1] - present[0] + 1
        if window < 0:
            offset = self.history_windows + window
            return first + offset if 0 <= offset < span else None
        live = span - self.history_windows
        if live <= 0:
            return first + window % span
        return first + self.history_windows + window % live

    def frames_per_window(self, window_seconds: float) -> int:
        return max(1, round(self.fps * window_seconds))

    def window(self, window: int, window_seconds: float) -> WindowData:
        stream = self.stream(window_seconds)
        replayed = self.manifest_window(window, window_seconds)
        if replayed is None:
            return WindowData.empty(self.crop_size, self.name, window)
        data = stream.load_window(self.camera, replayed)
        offset = data.timestamps - replayed * window_seconds  # seconds from the window's start
        frames = self.frames_per_window(window_seconds)
        local = np.clip(np.floor(offset * self.fps).astype(np.int64), 0, frames - 1)
        return WindowData(images=data.images, labels=data.labels, track_ids=data.track_ids,
                          frame_index=window * frames + local, timestamps=window * window_seconds + offset,
                          camera=self.name, window=window,
                          meta={"source": str(self.manifest), "manifest_window": replayed},
                          num_classes=len(self.classes))

    def tracks_of(self, window: int, window_seconds: float) -> WindowData | None:
        """The tracks of a replayed window without its pixels; None where the manifest has no track ids."""
        stream = self.stream(window_seconds)
        replayed = self.manifest_window(window, window_seconds)
        rows = [r for r in stream.rows if r.camera == self.camera and stream.window_of(r.timestamp) == replayed]
        if not rows or all(r.track_id is None for r in rows):
            return None
        frames = self.frames_per_window(window_seconds)
        offset = np.array([r.timestamp for r in rows]) - replayed * window_seconds
        local = np.clip(np.floor(offset * self.fps).astype(np.int64), 0, frames - 1)
        tracks = [r.track_id if r.track_id is not None else -(i + 1) for i, r in enumerate(rows)]
        return WindowData(images=np.zeros((len(rows), 0, 0, 3), np.uint8), labels=np.zeros(len(rows)),
                          track_ids=np.array(tracks), frame_index=window * frames + local,
                          timestamps=window * window_seconds + offset, camera=self.name, window=window)


@functools.lru_cache(maxsize=64)
def _replay(source: FolderSource, ctx: SourceContext) -> ManifestReplay:
    return ManifestReplay(source.manifest, source.camera or ctx.camera, ctx.camera, source.fps, ctx.crop_size,
                          ctx.history_windows, ctx.classes)


def _open(source: FolderSource, ctx: SourceContext) -> ManifestReplay:
    replay = _replay(source, ctx)
    replay.stream(ctx.window_seconds)  # a missing manifest or camera fails now, not at the first window
    return replay


def _bootstrap_windows(source: FolderSource, ctx: SourceContext, windows: list[int],
                       max_crops: int | None) -> WindowData:
    replay = _replay(source, ctx)
    parts = []
    for window in windows:
        labelled = replay.window(window, ctx.window_seconds).labelled()
        if max_crops is not None and len(labelled) > max_crops:
            labelled = labelled.subsample(max_crops / len(labelled))
        parts.append(labelled)
    data = concat(parts, camera=ctx.camera)
    if len(data) == 0:
        raise SourceError(
            f"camera {ctx.camera!r}: {source.manifest} has no labelled crops of {replay.camera!r} in the "
            f"bootstrap history (its first {ctx.history_windows} window(s) of {ctx.window_seconds:g}s); "
            "label crops there, or set bootstrap.history_windows to cover labelled ones")
    return data


def _has_ground_truth(source: FolderSource, ctx: SourceContext) -> bool:
    replay = _replay(source, ctx)
    return any(r.label >= 0 for r in replay.stream(ctx.window_seconds).rows if r.camera == replay.camera)


def _stride_profile(source: FolderSource, ctx: SourceContext) -> StrideProfile | None:
    from trainer.streams.base import stride_profile

    window = _replay(source, ctx).tracks_of(0, ctx.window_seconds)
    if window is None or len(window) == 0:
        return None
    # A perfect model (predictions = labels): what remains is the cost of skipping frames alone.
    return sorted((int(s), float(f)) for s, f in stride_profile(window, window.labels).items())


def _identity(source: FolderSource, ctx: SourceContext) -> dict[str, Any]:
    try:
        stat = os.stat(source.manifest)
        changed = [stat.st_size, stat.st_mtime_ns]  # an edited manifest retrains the initial models
    except OSError:
        changed = None
    return {**source.model_dump(mode="json"), "camera": source.camera or ctx.camera, "crop_size": ctx.crop_size,
            "window_seconds": ctx.window_seconds, "history_windows": ctx.history_windows, "manifest_stat": changed,
            **classes_identity(ctx)}


FOLDER = register_source_kind(SourceKind(
    name="folder", config_model=FolderSource, open=_open, bootstrap_windows=_bootstrap_windows,
    stride_profile=_stride_profile, has_ground_truth=_has_ground_truth, identity=_identity))
