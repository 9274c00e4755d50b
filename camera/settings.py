"""What a camera reads from the deployment config: only its own keys, leniently.

The controller validates the whole file (controller/config.py); a camera reads its `cameras[].source`
(validated by the source kind's own model, from the registry), the window clock, the request timeout,
the crop size and where Triton and the controller's directive endpoint are. Never the data directory:
the camera shares no files with the controller (its frames are sampled by Triton, its directive comes
over HTTP). Keys it does not need are not looked at, so a camera keeps working across controller-side
config changes. Defaults are the controller's (protocol/defaults.py); relative paths are resolved
against the config file's directory, as the controller does.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from protocol import defaults
from sources import SourceContext, SourceError, source_kind


class CameraSettingsError(ValueError):
    """A config the camera cannot use; the message names the file and the key."""


@dataclass(frozen=True)
class CameraSettings:
    config_file: Path
    name: str
    source: BaseModel  # the kind's validated `source:` section
    context: SourceContext
    request_timeout_s: float
    triton_mode: str  # "embedded" (started by the controller on triton.address:grpc_port) or "external"
    triton_url: str | None  # where the config says Triton's gRPC endpoint is (None: it does not say)
    controller_url: str | None  # the directive endpoint, http://host:port (None: the config does not say)

    @property
    def window_seconds(self) -> float:
        return self.context.window_seconds


class _Reader:
    def __init__(self, path: Path, data: Mapping[str, Any]) -> None:
        self.path = path
        self.data = data

    def error(self, key: str, problem: str) -> CameraSettingsError:
        return CameraSettingsError(f"{self.path}: {key}: {problem}")

    def section(self, name: str) -> Mapping[str, Any]:
        value = self.data.get(name)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self.error(name, f"expected a mapping of keys, got {value!r}")
        return value

    def number(self, key: str, default: float, *, low: float, high: float, integer: bool = False,
               section: str | None = None) -> float:
        where = self.section(section) if section else self.data
        value = where.get(key, default)
        full = f"{section}.{key}" if section else key
        if isinstance(value, bool) or not isinstance(value, int | float) or (integer and not isinstance(value, int)):
            raise self.error(full, f"expected {'an integer' if integer else 'a number'}; got {value!r}")
        if not low <= value <= high:
            raise self.error(full, f"expected a number in [{low:g}, {high:g}]; got {value!r}")
        return value


def load_camera_settings(path: str | os.PathLike[str], camera_name: str) -> CameraSettings:
    file = Path(path)
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CameraSettingsError(f"{file}: file not found") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise CameraSettingsError(f"{file}: cannot read the config: {exc}") from None
    if not isinstance(data, Mapping):
        raise CameraSettingsError(f"{file}: expected a mapping of keys at the top level")
    read = _Reader(file, data)
    base_dir = file.resolve().parent
    cameras = data.get("cameras")
    if not isinstance(cameras, list) or not cameras:
        raise read.error("cameras", "expected a non-empty list of cameras")
    index, entry = next(((i, c) for i, c in enumerate(cameras) if isinstance(c, Mapping)
                         and c.get("name") == camera_name), (None, None))
    if entry is None:
        names = [str(c.get("name")) for c in cameras if isinstance(c, Mapping)]
        raise read.error("cameras", f"no camera named {camera_name!r}; cameras: {', '.join(names)}")
    context = SourceContext(
        camera=camera_name,
        crop_size=int(read.number("input_size", defaults.EDGE_INPUT_SIZE, low=16, high=512, integer=True,
                                  section="edge_model")),
        window_seconds=float(read.number("window_seconds", defaults.WINDOW_SECONDS, low=1.0, high=86_400.0)),
        history_windows=int(read.number("history_windows", defaults.HISTORY_WINDOWS, low=1, high=100,
                                        integer=True, section="bootstrap")),
        **_classes(read, data.get("classes")))
    source = _source(read, f"cameras[{index}].source", entry.get("source"), base_dir)
    mode, triton_url = _triton_url(read)
    return CameraSettings(
        config_file=file, name=camera_name, source=source, context=context,
        request_timeout_s=float(read.number("request_timeout_s", defaults.REQUEST_TIMEOUT_S, low=1e-3, high=600.0,
                                            section="inference")),
        triton_mode=mode, triton_url=triton_url, controller_url=_controller_url(read))


def _triton_url(read: _Reader) -> tuple[str, str | None]:
    """(mode, gRPC host:port): an external server's `url`; the embedded one's address and grpc_port
    (None when its port is 0: a free port chosen at start, which the config cannot tell)."""
    triton = read.section("triton")
    mode = triton.get("mode", "embedded")
    if mode not in ("embedded", "external"):
        raise read.error("triton.mode", f"expected 'embedded' or 'external'; got {mode!r}")
    if mode == "external":
        url = triton.get("url")
        if not (isinstance(url, str) and url):
            raise read.error("triton.url", "an external Triton needs its gRPC host:port")
        return mode, url
    port = int(read.number("grpc_port", defaults.TRITON_GRPC_PORT, low=0, high=65535, integer=True, section="triton"))
    address = _host(read, "triton.address", triton.get("address", defaults.LOOPBACK_ADDRESS))
    return mode, f"{address}:{port}" if port else None


def _controller_url(read: _Reader) -> str | None:
    """The directive endpoint's http://host:port, None when it is off or on a free port (port 0)."""
    section = read.section("directives")
    if section.get("enabled", True) is False:
        return None
    port = int(read.number("port", defaults.DIRECTIVES_PORT, low=0, high=65535, integer=True, section="directives"))
    address = _host(read, "directives.address", section.get("address", defaults.LOOPBACK_ADDRESS))
    return f"http://{address}:{port}" if port else None


def _host(read: _Reader, key: str, address: object) -> str:
    """A listening address as a host to connect to: a wildcard (every interface) means this host."""
    if not isinstance(address, str) or not address:
        raise read.error(key, f"expected a host name or IP address; got {address!r}")
    if address == "0.0.0.0":
        return "127.0.0.1"
    if address == "::":
        return "[::1]"
    return f"[{address}]" if ":" in address and not address.startswith("[") else address


def _classes(read: _Reader, value: Any) -> dict[str, Any]:
    """The deployment's class list (what a folder manifest's labels name), where the config sets one."""
    if value is None:
        return {}
    if not isinstance(value, list) or len(value) < 2 or not all(isinstance(c, str) and c for c in value):
        raise read.error("classes", "expected a list of at least two class names")
    return {"classes": tuple(value)}


def _source(read: _Reader, key: str, raw: Any, base_dir: Path) -> BaseModel:
    if not isinstance(raw, Mapping):
        raise read.error(key, f"expected a mapping with a `kind`; got {raw!r}")
    try:
        kind = source_kind(str(raw.get("kind")))
    except SourceError as exc:
        raise read.error(f"{key}.kind", str(exc)) from None
    try:
        return kind.config_model.model_validate(raw, context={"base_dir": base_dir})
    except ValidationError as exc:
        problems = [f"{'.'.join([key, *map(str, e['loc'])])}: {e['msg']}" for e in exc.errors(include_url=False)]
        raise CameraSettingsError(f"{read.path}: " + "; ".join(problems)) from None
