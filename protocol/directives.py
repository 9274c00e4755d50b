"""The controller -> camera channel: what a camera should follow, read from the controller's read-only
HTTP endpoint (any camera that can reach it; versioned JSON, below). No file: a camera shares nothing
with the controller's data directory.

The directive carries the deployment's window clock (t0 and the window length, so every camera cuts
windows at the same instants as the controller), the frame stride the current plan gives the camera's
inference and the model version the controller serves for the camera.

HTTP API, version 1 (paths under API_PREFIX; every body is JSON with `api_version`):
    GET /v1/cameras           {"api_version": 1, "cameras": [<directive>, ...]}
    GET /v1/cameras/<name>    <directive>: {"api_version": 1, "camera", "t0", "window_seconds", "window",
                              "stride", "serving_version", "stop_after_window"}
                              404 for a camera the deployment does not have, 503 before its first directive
    GET /healthz              200 while the window loop ticks (or is still starting), 503 when it stalls
    GET /readyz               200 once every camera's model serves and its directive is out, else 503
Fields may be added within a version; a reader ignores the ones it does not know.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass, fields
from typing import Any

API_VERSION = 1
API_PREFIX = f"/v{API_VERSION}"
CAMERAS_PATH = f"{API_PREFIX}/cameras"
HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"


@dataclass(frozen=True)
class CameraDirective:
    t0: float  # wall-clock time (time.time()) at which window 0 starts
    window_seconds: float
    stride: float = 1.0  # infer a 1/stride fraction of frames, evenly spaced (fractional strides allowed);
    # frames not inferred keep their track's last prediction
    window: int = 0  # the window the controller is in when it wrote this
    stop_after_window: int | None = None  # cameras exit after finishing this window (demos, tests)
    # the camera model's version the controller serves (as of the request)
    serving_version: int | None = None

    def window_at(self, now: float) -> int:
        return int((now - self.t0) // self.window_seconds)


_FIELDS = {f.name for f in fields(CameraDirective)}


class DirectiveError(ValueError):
    """A directive that cannot be used (missing or mistyped fields, a stride below 1)."""


def frame_is_processed(k: int, stride: float) -> bool:
    """Whether frame k (counted from the window start) is inferred under a possibly fractional stride:
    frames where floor(k / stride) steps, so exactly a 1/stride fraction, evenly spaced."""
    if stride <= 1.0:
        return True
    return k == 0 or int(k / stride) != int((k - 1) / stride)


def directive_from_dict(data: Any) -> CameraDirective:
    """The directive in a JSON object (the endpoint's); unknown keys are ignored, so a newer
    controller's additions do not break an older camera."""
    if not isinstance(data, dict):
        raise DirectiveError(f"expected a JSON object, got {type(data).__name__}")
    try:
        directive = CameraDirective(**{k: v for k, v in data.items() if k in _FIELDS})
    except TypeError as exc:  # a required field missing
        raise DirectiveError(str(exc)) from None
    for name in ("t0", "window_seconds", "stride"):
        value = getattr(directive, name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise DirectiveError(f"{name}: expected a number, got {value!r}")
    for name in ("window", "stop_after_window", "serving_version"):
        value = getattr(directive, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise DirectiveError(f"{name}: expected an integer, got {value!r}")
    if directive.window_seconds <= 0 or directive.stride < 1:
        raise DirectiveError(f"window_seconds must be > 0 and stride >= 1; got {directive}")
    return directive


def directive_to_json(camera: str, directive: CameraDirective) -> dict[str, Any]:
    """The endpoint's body for one camera (API version 1)."""
    return {"api_version": API_VERSION, "camera": camera, **asdict(directive)}


def camera_path(camera: str) -> str:
    return f"{CAMERAS_PATH}/{urllib.parse.quote(camera, safe='')}"


def fetch_directive(base_url: str, camera: str, timeout_s: float = 2.0) -> CameraDirective:
    """GET the camera's directive from the controller at `base_url` (http://host:port). Raises OSError
    when the controller cannot be reached or answers with an error, DirectiveError on a bad body."""
    url = base_url.rstrip("/") + camera_path(camera)
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as reply:  # noqa: S310 (an http URL we were given)
            body = json.loads(reply.read())
    except urllib.error.HTTPError as exc:  # 404 unknown camera, 503 not published yet
        raise OSError(f"{url}: HTTP {exc.code}: {_error_text(exc)}") from None
    except ValueError as exc:
        raise DirectiveError(f"{url}: not JSON: {exc}") from None
    if isinstance(body, dict) and body.get("api_version") != API_VERSION:
        raise DirectiveError(f"{url}: api_version {body.get('api_version')!r}, this camera speaks {API_VERSION}")
    return directive_from_dict(body)


def _error_text(exc: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(exc.read()).get("error", exc.reason))
    except (OSError, ValueError, AttributeError):
        return str(exc.reason)
