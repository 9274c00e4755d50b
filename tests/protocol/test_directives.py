"""The directive's JSON shape (the HTTP endpoint's body)."""

from __future__ import annotations

import json

import pytest

from protocol.directives import (
    API_VERSION,
    CameraDirective,
    DirectiveError,
    camera_path,
    directive_from_dict,
    directive_to_json,
)


def test_round_trip_and_unknown_fields_are_ignored() -> None:
    directive = CameraDirective(t0=100.0, window_seconds=30.0, stride=2.5, window=4, serving_version=7)
    body = directive_to_json("cam0", directive)
    assert body["api_version"] == API_VERSION and body["camera"] == "cam0"
    assert directive_from_dict(json.loads(json.dumps({**body, "added_later": [1, 2]}))) == directive


@pytest.mark.parametrize("body", [
    [], {"window_seconds": 30.0}, {"t0": "now", "window_seconds": 30.0}, {"t0": 1.0, "window_seconds": 0},
    {"t0": 1.0, "window_seconds": 30.0, "stride": 0.5}, {"t0": 1.0, "window_seconds": 30.0, "window": 1.5},
    {"t0": 1.0, "window_seconds": 30.0, "serving_version": True},
])
def test_bad_directives_are_refused(body: object) -> None:
    with pytest.raises(DirectiveError):
        directive_from_dict(body)


def test_a_body_from_before_the_serving_version_still_reads() -> None:
    body = {"t0": 5.0, "window_seconds": 10.0, "stride": 1.0, "window": 0, "stop_after_window": None}
    assert directive_from_dict(body) == CameraDirective(t0=5.0, window_seconds=10.0)


def test_camera_names_are_quoted_in_paths() -> None:
    assert camera_path("cam 0/x") == "/v1/cameras/cam%200%2Fx"
