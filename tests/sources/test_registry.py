"""A new frame-source kind is one module plus one registration: the deployment config accepts it (with
its own errors named by key path), the camera opens and streams it, and the bootstrap and the planner's
inference profile call its hooks. No other file changes."""

from __future__ import annotations

import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
from pydantic import Field

from sources import SourceContext, SourceKind, register_source_kind, source_kind, unregister_source_kind
from sources.fields import SourceConfig
from trainer.streams.base import WindowData, concat

CALLS: list[str] = []


# ---- the new kind: every frame shows one object of one colour and class ---------------------------------
class ConstantSource(SourceConfig):
    kind: Literal["constant"]
    colour: tuple[int, int, int] = (128, 128, 128)
    label: int = Field(1, ge=0, le=5)
    fps: float = Field(4.0, gt=0.0)


@dataclass
class ConstantFrames:
    source: ConstantSource
    ctx: SourceContext

    @property
    def fps(self) -> float:
        return self.source.fps

    def frames_per_window(self, window_seconds: float) -> int:
        return max(1, round(self.fps * window_seconds))

    def window(self, window: int, window_seconds: float) -> WindowData:
        n, size = self.frames_per_window(window_seconds), self.ctx.crop_size
        frames = window * n + np.arange(n)
        return WindowData(images=np.broadcast_to(np.array(self.source.colour, np.uint8), (n, size, size, 3)).copy(),
                          labels=np.full(n, self.source.label), track_ids=np.full(n, window), frame_index=frames,
                          timestamps=frames / self.fps, camera=self.ctx.camera, window=window)


def _bootstrap_windows(source: ConstantSource, ctx: SourceContext, windows: list[int], max_crops: int | None):
    CALLS.append(f"bootstrap_windows {windows}")
    return concat([ConstantFrames(source, ctx).window(w, ctx.window_seconds) for w in windows])


def _stride_profile(source: ConstantSource, ctx: SourceContext) -> list[tuple[int, float]]:
    CALLS.append("stride_profile")
    return [(1, 1.0), (2, 0.5)]


CONSTANT = SourceKind(name="constant", config_model=ConstantSource, open=ConstantFrames,
                      bootstrap_windows=_bootstrap_windows, stride_profile=_stride_profile, max_crop_size=128)
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture
def constant_kind() -> Iterator[SourceKind]:
    register_source_kind(CONSTANT)
    CALLS.clear()
    yield CONSTANT
    unregister_source_kind("constant")


def write_config(tmp_path: Path, source: str, input_size: int = 16) -> Path:
    path = tmp_path / "deployment.yaml"
    path.write_text(textwrap.dedent(f"""\
        cameras:
          - {{name: plain, source: {{kind: synthetic}}}}
          - name: flat
            source: {source}
        window_seconds: 1
        label_sampling_rate: 1.0
        data: {{dir: data}}
        edge_model: {{input_size: {input_size}}}
        """))
    return path


def test_the_config_accepts_a_registered_kind(tmp_path: Path, constant_kind: SourceKind) -> None:
    from controller.config import ConfigError, load_config

    config = load_config(write_config(tmp_path, "{kind: constant, colour: [10, 20, 30], label: 4}"))
    assert config.camera("flat").source == ConstantSource(kind="constant", colour=(10, 20, 30), label=4)
    with pytest.raises(ConfigError) as bad:  # an error inside the new kind's section names its key and line
        load_config(write_config(tmp_path, "{kind: constant, label: 9}"))
    assert [str(i) for i in bad.value.issues] == ["cameras[1].source.label (line 4): expected a number <= 5; got 9"]
    with pytest.raises(ConfigError, match=r"cameras\[1\].source.colr .*did you mean 'colour'"):
        load_config(write_config(tmp_path, "{kind: constant, colr: [1, 2, 3]}"))
    with pytest.raises(ConfigError, match=r"constant cameras \(cameras\[1\]\) generate crops of at most 128 px"):
        load_config(write_config(tmp_path, "{kind: constant}", input_size=200))


def test_an_unknown_kind_lists_the_registered_ones(tmp_path: Path, constant_kind: SourceKind) -> None:
    from controller.config import ConfigError, load_config

    with pytest.raises(ConfigError) as bad:
        load_config(write_config(tmp_path, "{kind: webcam}"))
    message = str(bad.value.issues[0])
    assert message == ("cameras[1].source (line 4): unknown 'kind' 'webcam'; "
                       "expected one of: 'synthetic', 'folder', 'video', 'constant'")


def test_an_unregistered_kind_is_refused_again(tmp_path: Path) -> None:
    from controller.config import ConfigError, load_config

    register_source_kind(CONSTANT)
    unregister_source_kind("constant")
    with pytest.raises(ConfigError, match="unknown 'kind' 'constant'; expected one of: 'synthetic', 'folder', 'video'$"):
        load_config(write_config(tmp_path, "{kind: constant}"))


def test_the_camera_opens_and_streams_it(tmp_path: Path, constant_kind: SourceKind) -> None:
    from camera.client import CameraClient
    from camera.directives import HttpDirectiveWatcher
    from camera.settings import load_camera_settings
    from protocol.camera_results import CameraResults
    from protocol.directives import CameraDirective
    from tests.camera.test_client import directive_endpoint, publish

    settings = load_camera_settings(write_config(tmp_path, "{kind: constant, colour: [10, 20, 30]}"), "flat")
    frames = source_kind(settings.source.kind).open(settings.source, settings.context)
    with directive_endpoint(("flat",)) as (channel, server):
        publish(channel, CameraDirective(t0=time.time(), window_seconds=1.0), "flat")
        client = CameraClient("flat", frames, "127.0.0.1:1", HttpDirectiveWatcher(server.url, "flat", interval_s=0.1),
                              CameraResults(tmp_path / "results"), request_timeout_s=0.2)
        (stats,) = client.run(threading.Event(), max_windows=1, directive_timeout_s=10)
    assert stats.frames == 4 and stats.crops == 4  # every frame streamed (no Triton here: requests failed)
    assert CameraResults(tmp_path / "results").read_window(stats.window)["frames"] == 4


def test_the_bootstrap_and_the_inference_profile_call_its_hooks(tmp_path: Path, constant_kind: SourceKind) -> None:
    from controller.bootstrap_settings import bootstrap_data
    from controller.config import load_config
    from controller.inference_profile import measured_profile

    config = load_config(write_config(tmp_path, "{kind: constant, label: 2}"))
    data = bootstrap_data(config)
    history = data.history()
    assert CALLS == ["bootstrap_windows [-1]"]
    assert {2}.issubset(set(history.labels.tolist())) and data.golden is None  # no golden crops of its own
    assert data.identity[1]["kind"] == "constant" and data.identity[1]["camera"] == "flat"
    profile = measured_profile(config)
    assert "stride_profile" in CALLS
    factors = dict(zip(profile.strides, profile.factors))
    assert factors[2.0] < 0.75  # the synthetic camera's (about 0.9) and the constant one's (0.5), averaged
