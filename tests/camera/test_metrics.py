"""The reference camera's own /metrics: its live counters over real HTTP, a stream down included."""

from __future__ import annotations

import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from camera.metrics import serve_camera_metrics
from protocol.camera_results import CameraResults


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {sample.name: sample.value for family in text_string_to_metric_families(text)
            for sample in family.samples if sample.labels.get("camera") == "gate"}


def test_camera_metrics_follow_the_live_counters(tmp_path: Path) -> None:
    results = CameraResults(tmp_path / "gate")
    results.root.mkdir()
    port = serve_camera_metrics("gate", results.read_live, 0)
    before = scrape(port)  # nothing written yet: zero counters, a source taken as up
    assert before["ekya_camera_client_requests_total"] == 0 and before["ekya_camera_source_up"] == 1
    assert "ekya_camera_client_stride" not in before

    results.write_live({"camera": "gate", "window": 3, "stride": 2.0, "requests_total": 120,
                        "failed_requests_total": 1, "shed_requests_total": 4, "source_up": False,
                        "source": {"reconnects": 2, "gap_seconds": 7.5, "missed_frames": 75,
                                   "detector_errors": 9}})
    now = scrape(port)
    assert now["ekya_camera_client_requests_total"] == 120
    assert now["ekya_camera_client_failed_requests_total"] == 1
    assert now["ekya_camera_client_shed_requests_total"] == 4
    assert now["ekya_camera_source_up"] == 0
    assert now["ekya_camera_source_reconnects_total"] == 2
    assert now["ekya_camera_source_gap_seconds_total"] == 7.5
    assert now["ekya_camera_source_missed_frames_total"] == 75
    assert now["ekya_camera_detector_errors_total"] == 9
    assert now["ekya_camera_client_stride"] == 2.0 and now["ekya_camera_client_window"] == 3

    results.live_file.write_text("{not json")  # a torn or foreign file: the scrape still answers
    assert scrape(port)["ekya_camera_source_up"] == 1
