"""alerts/ekya-rules.yml: promtool checks and unit tests, and every metric it reads is one we export."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from controller.metrics import ControllerMetrics, exported_series_names
from tests.promql import referenced_metric_names
from tests.repo import REPO_ROOT

ROOT = REPO_ROOT
RULES = ROOT / "alerts" / "ekya-rules.yml"
RULE_TESTS = ROOT / "alerts" / "ekya-rules.test.yml"
# Series that come from Prometheus itself or from Triton, not from the controller.
EXTERNAL = {"up"}

REQUIRED_ALERTS = {
    "EkyaCameraAccuracyDropped",
    "EkyaCameraAccuracyBelowFloor",
    "EkyaRetrainingFailing",
    "EkyaControllerNotTicking",
    "EkyaTritonInferenceFailures",
    "EkyaCameraInferenceFailures",
    "EkyaDataDirNearBudget",
    "EkyaTritonDown",
    "EkyaTritonRestarting",
    "EkyaCameraShedding",
}


def find_promtool() -> str | None:
    """promtool on PATH, or where scripts/install-promtool.sh puts it for a non-root user."""
    return shutil.which("promtool") or next(
        (
            str(p)
            for p in (Path(sys.executable).parent / "promtool", ROOT / ".venv" / "bin" / "promtool")
            if p.exists()
        ),
        None,
    )


PROMTOOL = find_promtool()
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed: run scripts/install-promtool.sh (make setup does)"
)


def rules() -> list[dict]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_required_alerts_exist_with_severity_and_summary() -> None:
    alerts = {rule["alert"]: rule for rule in rules()}
    assert REQUIRED_ALERTS <= set(alerts)
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}, name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name


def test_every_metric_the_rules_read_is_exported_by_the_controller_or_triton() -> None:
    exported = exported_series_names(ControllerMetrics().registry)
    used: set[str] = set()
    for rule in rules():
        names = referenced_metric_names(rule["expr"])
        assert names, f"no metric found in {rule['expr']!r}"
        used |= names
    unknown = {n for n in used if not n.startswith("nv_") and n not in EXTERNAL and n not in exported}
    assert not unknown, f"rules use metrics that controller/metrics/ does not export: {sorted(unknown)}"
    assert "nv_inference_request_failure" in used
    assert "ekya_camera_inference_failures_total" in used


def test_every_alert_is_unit_tested_firing_and_not_firing() -> None:
    doc = yaml.safe_load(RULE_TESTS.read_text())
    fired: set[str] = set()
    silent: set[str] = set()
    for case in doc["tests"]:
        for check in case.get("alert_rule_test", []):
            (fired if check.get("exp_alerts") else silent).add(check["alertname"])
    alerts = {rule["alert"] for rule in rules()}
    assert alerts <= fired, f"never tested firing: {sorted(alerts - fired)}"
    assert alerts <= silent, f"never tested silent: {sorted(alerts - silent)}"


@needs_promtool
def test_promtool_check_rules() -> None:
    result = subprocess.run(
        [PROMTOOL, "check", "rules", str(RULES)], check=False, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


@needs_promtool
def test_promtool_unit_tests_pass() -> None:
    result = subprocess.run(
        [PROMTOOL, "test", "rules", RULE_TESTS.name],
        cwd=RULE_TESTS.parent,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@needs_promtool
def test_promtool_unit_tests_catch_a_broken_threshold(tmp_path: Path) -> None:
    """The unit tests are not vacuous: loosening the accuracy floor makes them fail."""
    broken = RULES.read_text().replace(
        "ekya_camera_live_accuracy_ratio < 0.5", "ekya_camera_live_accuracy_ratio < 0.3"
    )
    assert broken != RULES.read_text()
    (tmp_path / RULES.name).write_text(broken)
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    result = subprocess.run(
        [PROMTOOL, "test", "rules", RULE_TESTS.name],
        cwd=tmp_path,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "EkyaCameraAccuracyBelowFloor" in result.stdout + result.stderr


AGGREGATION = re.compile(r"\b(sum|avg|min|max|count|stddev|stdvar|topk|bottomk|quantile|group|count_values)\s*"
                         r"(by|without)?\s*(\(([^()]*)\))?\s*\(")


def aggregations_losing_the_node(expr: str) -> list[str]:
    """The aggregations of an expression that drop the `node` label (a fleet's alerts must keep it)."""
    lost = []
    for match in AGGREGATION.finditer(expr):
        clause, labels = match.group(2), match.group(4)
        kept = {label.strip() for label in (labels or "").split(",")}
        if clause != "by" or "node" not in kept:  # no clause, or `without`: which labels survive is not ours
            lost.append(match.group(0))
    return lost


def test_every_aggregation_in_the_rules_keeps_the_node_label() -> None:
    assert aggregations_losing_the_node("sum by (camera) (rate(x[5m])) > 0") == ["sum by (camera) ("]
    assert aggregations_losing_the_node("avg(x)") and not aggregations_losing_the_node("max by (node) (x)")
    losing = {rule["alert"]: lost for rule in rules() if (lost := aggregations_losing_the_node(rule["expr"]))}
    assert not losing, f"aggregations that drop the node label: {losing}"
