"""deploy/kubernetes/: every overlay rendered (kubectl kustomize where installed, else the stand-in in
kubernetes_render.py) and every object validated offline against the Kubernetes 1.32 schemas that
kubernetes-validate bundles (strict: unknown fields are errors). The Prometheus Operator's kinds have no schema
there: ServiceMonitor and PrometheusRule are checked against the subset of the operator's CRD schemas written
below (the fields we use), and the rules themselves with promtool. Nothing here runs a cluster."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from controller.config import TritonExternal, load_config
from scripts import gen_k8s_monitoring
from tests.alerts.test_rules import PROMTOOL, RULE_TESTS, RULES, needs_promtool
from tests.deploy.kubernetes_render import (
    KUBECTL,
    OVERLAYS,
    by_kind,
    config_map,
    kubectl_kustomize,
    render,
    render_without_kubectl,
)

KUBERNETES_VERSION = "1.32.0"  # the version the manifests are validated for (kubectl v1.32 here)
OPERATOR_KINDS = {"ServiceMonitor", "PrometheusRule"}

_RELABEL = {"type": "object", "additionalProperties": False, "properties": {
    "sourceLabels": {"type": "array", "items": {"type": "string", "pattern": r"^[a-zA-Z_][a-zA-Z0-9_]*$"}},
    "separator": {"type": "string"}, "targetLabel": {"type": "string"}, "regex": {"type": "string"},
    "modulus": {"type": "integer"}, "replacement": {"type": "string"},
    "action": {"enum": ["replace", "keep", "drop", "hashmod", "labelmap", "labeldrop", "labelkeep", "lowercase",
                        "uppercase", "keepequal", "dropequal"]}}}
_METADATA = {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}
# Subsets of the monitoring.coreos.com/v1 CRD schemas (prometheus-operator v0.7x): the fields the manifests use,
# with their types; anything else is refused, as the operator's structural schemas would prune it.
OPERATOR_SCHEMAS: dict[str, dict[str, Any]] = {
    "ServiceMonitor": {"type": "object", "required": ["apiVersion", "kind", "metadata", "spec"], "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"}, "kind": {"const": "ServiceMonitor"},
        "metadata": _METADATA, "spec": {
            "type": "object", "additionalProperties": False, "required": ["selector", "endpoints"], "properties": {
                "jobLabel": {"type": "string"},
                "selector": {"type": "object", "properties": {"matchLabels": {"type": "object"}}},
                "namespaceSelector": {"type": "object"},
                "endpoints": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "additionalProperties": False, "required": ["port"], "properties": {
                        "port": {"type": "string"}, "path": {"type": "string"},
                        "interval": {"type": "string", "pattern": r"^(0|(([0-9]+)(y|w|d|h|m|s|ms))+)$"},
                        "scheme": {"enum": ["http", "https"]},
                        "relabelings": {"type": "array", "items": _RELABEL},
                        "metricRelabelings": {"type": "array", "items": _RELABEL}}}}}}}},
    "PrometheusRule": {"type": "object", "required": ["apiVersion", "kind", "metadata", "spec"], "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"}, "kind": {"const": "PrometheusRule"},
        "metadata": _METADATA, "spec": {
            "type": "object", "additionalProperties": False, "properties": {"groups": {"type": "array", "items": {
                "type": "object", "additionalProperties": False, "required": ["name", "rules"], "properties": {
                    "name": {"type": "string", "minLength": 1}, "interval": {"type": "string"},
                    "rules": {"type": "array", "items": {
                        "type": "object", "additionalProperties": False, "required": ["expr"], "properties": {
                            "alert": {"type": "string"}, "record": {"type": "string"},
                            "expr": {"type": "string", "minLength": 1}, "for": {"type": "string"},
                            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                            "annotations": {"type": "object", "additionalProperties": {"type": "string"}}}}}}}}}}}},
}


def validate(obj: dict[str, Any]) -> None:
    """Raises with the object's kind and name when it is not valid."""
    name = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
    if obj.get("kind") in OPERATOR_KINDS:
        try:
            jsonschema.validate(obj, OPERATOR_SCHEMAS[obj["kind"]])
        except jsonschema.ValidationError as exc:
            raise AssertionError(f"{name}: {exc.message} at {list(exc.absolute_path)}") from exc
        return
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        raise AssertionError(f"{name}: {exc.message} at {list(exc.absolute_path)}") from exc


@pytest.fixture(scope="module", params=sorted(OVERLAYS))
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render(OVERLAYS[request.param])


def daemonset(objects: list[dict[str, Any]]) -> dict[str, Any]:
    [found] = by_kind(objects, "DaemonSet")
    return found


def containers(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in daemonset(objects)["spec"]["template"]["spec"]["containers"]}


def mounts(container: dict[str, Any]) -> dict[str, str]:
    return {m["name"]: m["mountPath"] for m in container.get("volumeMounts", [])}


def test_every_object_of_every_overlay_is_valid_for_kubernetes_1_32(rendered) -> None:
    _, objects = rendered
    kinds = sorted(obj["kind"] for obj in objects)
    assert kinds == sorted(["Namespace", "ConfigMap", "ConfigMap", "Service", "DaemonSet", "ServiceMonitor",
                            "PrometheusRule"])
    for obj in objects:
        validate(obj)


def test_the_validation_catches_broken_objects(rendered) -> None:
    _, objects = rendered
    typo = copy.deepcopy(daemonset(objects))
    typo["spec"]["template"]["spec"]["containers"][1]["readinesProbe"] = {}  # unknown field
    wrong_type = copy.deepcopy(daemonset(objects))
    wrong_type["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "grpc"
    [monitor] = by_kind(objects, "ServiceMonitor")
    bad_monitor = copy.deepcopy(monitor)
    bad_monitor["spec"]["endpoints"][0]["intervall"] = "15s"
    for broken in (typo, wrong_type, bad_monitor):
        with pytest.raises(AssertionError):
            validate(broken)


@pytest.mark.skipif(KUBECTL is None, reason="kubectl not installed: the overlays are rendered by the stand-in only")
@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_the_stand_in_renders_what_kubectl_kustomize_renders(overlay: str) -> None:
    """So that the checks above mean the same where CI has no kubectl."""
    def comparable(objects: list[dict[str, Any]]) -> list[str]:
        text = json.dumps(objects, sort_keys=True)
        for cm in by_kind(objects, "ConfigMap"):  # kustomize's hash suffix
            name = cm["metadata"]["name"]
            text = text.replace(f'"{name}"', f'"{name.rsplit("-", 1)[0]}"') if name.startswith("ekya-config-") else text
        return sorted(json.dumps(obj, sort_keys=True) for obj in json.loads(text))

    assert comparable(kubectl_kustomize(OVERLAYS[overlay])) == comparable(render_without_kubectl(OVERLAYS[overlay]))


def test_generated_monitoring_objects_never_drift() -> None:
    assert gen_k8s_monitoring.stale() == [], "run python scripts/gen_k8s_monitoring.py"
    rule = yaml.safe_load(gen_k8s_monitoring.PROMETHEUS_RULE.read_text())
    assert rule["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"]
    edited = RULES.read_text().replace("< 0.5", "< 0.4")
    assert gen_k8s_monitoring.prometheus_rule(edited) != gen_k8s_monitoring.PROMETHEUS_RULE.read_text()


@needs_promtool
def test_the_prometheus_rule_passes_the_alert_unit_tests(tmp_path: Path) -> None:
    """The rules as the operator loads them (the PrometheusRule's spec) behave as alerts/ekya-rules.yml."""
    spec = yaml.safe_load(gen_k8s_monitoring.PROMETHEUS_RULE.read_text())["spec"]
    (tmp_path / RULES.name).write_text(yaml.safe_dump(spec, sort_keys=False))
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    done = subprocess.run([PROMTOOL, "test", "rules", RULE_TESTS.name], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and "SUCCESS" in done.stdout, done.stdout + done.stderr


def test_the_dashboard_config_map_is_the_grafana_dashboard(rendered) -> None:
    _, objects = rendered
    dashboard = config_map(objects, "ekya-grafana-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["data"]["ekya.json"] == gen_k8s_monitoring.DASHBOARD.read_text()


def test_triton_and_its_controller_sidecar_share_the_repository_config_and_secret(rendered, tmp_path: Path) -> None:
    overlay, objects = rendered
    pod = daemonset(objects)["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"ekya.io/edge": "true"}
    volumes = {v["name"]: v for v in pod["volumes"]}
    for kept in ("models", "data", "capture"):  # on the node, across pod restarts
        assert volumes[kept]["hostPath"]["type"] == "DirectoryOrCreate"
    triton, controller = containers(objects)["triton"], containers(objects)["controller"]
    assert triton["image"] == "nvcr.io/nvidia/tritonserver:24.10-py3"
    args = " ".join(triton["args"])
    for flag in ("--model-control-mode=explicit", "--http-restricted-api=model-repository:admin-key=$KEY",
                 "--grpc-restricted-protocol=model-repository:admin-key=$KEY", "--grpc-port=8001",
                 "--http-port=8000", "--metrics-port=8002"):
        assert flag in args
    # the deployment config: from the ConfigMap, loadable, and pointing where the pod mounts things
    text = config_map(objects, "ekya-config")["data"]["deployment.yaml"]
    (tmp_path / "deployment.yaml").write_text(text)
    config = load_config(tmp_path / "deployment.yaml")
    assert isinstance(config.triton, TritonExternal) and config.triton.url == "127.0.0.1:8001"
    assert config.resources.mode == ("gpu" if overlay == "gpu" else "cpu")
    assert mounts(controller)["config"] == "/etc/ekya" and controller["args"][-1] == "/etc/ekya/deployment.yaml"
    assert str(config.model_repository) == mounts(controller)["models"] == mounts(triton)["models"] == "/models"
    assert str(config.data.dir) == mounts(controller)["data"]
    assert str(config.capture_dir) == mounts(controller)["capture"] == config.capture_dir_for_triton == mounts(triton)["capture"]
    # the admin key: a Secret's file in both containers, never in the ConfigMap
    assert volumes["admin-key"]["secret"]["secretName"] == "ekya-triton-admin-key"
    assert str(config.triton.admin_key_file.parent) == mounts(controller)["admin-key"] == mounts(triton)["admin-key"]
    assert "/run/secrets/ekya/key" in args
    assert "admin_key:" not in text and not by_kind(objects, "Secret")


def test_probes_and_ports_match_the_config(rendered, tmp_path: Path) -> None:
    _, objects = rendered
    triton, controller = containers(objects)["triton"], containers(objects)["controller"]
    assert triton["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert controller["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "directives"}
    assert controller["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert controller["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "directives"}
    ports = {p["name"]: p["containerPort"] for c in (triton, controller) for p in c["ports"]}
    (tmp_path / "deployment.yaml").write_text(config_map(objects, "ekya-config")["data"]["deployment.yaml"])
    config = load_config(tmp_path / "deployment.yaml")
    assert ports["directives"] == config.directives.port and config.directives.address == "0.0.0.0"
    assert ports["metrics"] == config.metrics.port and config.metrics.address == "0.0.0.0"
    annotations = daemonset(objects)["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(config.metrics.port)
    [service] = by_kind(objects, "Service")
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == {
        "grpc": 8001, "http": 8000, "directives": 9401, "metrics": 9400, "triton-metrics": 8002}
    assert service["spec"]["internalTrafficPolicy"] == "Local"  # a camera reaches its own node's Triton
    [monitor] = by_kind(objects, "ServiceMonitor")
    jobs = set()
    for endpoint in monitor["spec"]["endpoints"]:
        assert {"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node",
                "action": "replace"} in endpoint["relabelings"]
        jobs |= {r["replacement"] for r in endpoint["relabelings"] if r["targetLabel"] == "job"}
    assert jobs == {"ekya-controller", "triton"} and 'up{job="ekya-controller"}' in RULES.read_text()


def test_gpu_resources_only_in_the_gpu_overlay(rendered) -> None:
    overlay, objects = rendered
    for name, container in containers(objects).items():
        if overlay == "gpu":
            assert container["resources"]["limits"]["nvidia.com/gpu"] == 1, name
            assert container["resources"]["requests"]["memory"], name
        else:
            assert "resources" not in container, name
