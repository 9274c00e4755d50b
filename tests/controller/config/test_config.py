"""The deployment config: the shipped examples load, and every kind of bad input names its key."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from pydantic import ValidationError

from controller.config import (
    ConfigError,
    CpuResources,
    DeploymentConfig,
    GpuResources,
    SyntheticSource,
    TritonEmbedded,
    TritonExternal,
    default_retraining_grid,
    load_config,
    parse_config,
)
from tests.repo import REPO_ROOT

ROOT = REPO_ROOT
MINIMAL = "cameras:\n  - {name: cam0, source: {kind: synthetic, seed: 1}}\n"


def write(tmp_path: Path, text: str, name: str = "deployment.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def errors_of(tmp_path: Path, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    return info.value


def issue(err: ConfigError, path: str) -> str:
    """The message of the issue at `path` (fails listing all issues if there is none)."""
    for item in err.issues:
        if item.path == path:
            return item.message
    raise AssertionError(f"no issue at {path!r}; issues: {err.issues}")


# ------------------------------------------------------------------------------------------ examples
def test_cpu_demo_example_loads_with_four_drifting_synthetic_cameras() -> None:
    cfg = load_config(ROOT / "examples" / "deployment.yaml")
    assert isinstance(cfg.resources, CpuResources)
    assert cfg.camera_names == ["cam0", "cam1", "cam2", "cam3"]
    assert all(isinstance(c.source, SyntheticSource) for c in cfg.cameras)
    assert any(c.source.drift.magnitude > 0 for c in cfg.cameras if isinstance(c.source, SyntheticSource))
    assert cfg.window_seconds <= 60
    assert isinstance(cfg.triton, TritonEmbedded) and cfg.triton.resolved_backend == "ekya_onnx"
    # relative paths are resolved against the file's directory and normalised
    assert cfg.data.dir == ROOT / ".ekya" / "demo"
    assert cfg.fixed_retraining_config.name == cfg.scheduler.retraining_config


def test_external_cameras_example_has_fixed_loopback_endpoints_and_a_per_camera_sampling_rate() -> None:
    cfg = load_config(ROOT / "examples" / "external-cameras.yaml")
    assert isinstance(cfg.triton, TritonEmbedded)
    # clients are configured once: the ports are fixed (never 0) and on loopback unless exposed
    assert (cfg.triton.address, cfg.triton.grpc_port, cfg.directives.port) == ("127.0.0.1", 8001, 9401)
    assert cfg.directives.address == "127.0.0.1" and not cfg.network.expose
    assert cfg.camera("yard").label_sampling_rate == 0.2 and cfg.camera("gate").label_sampling_rate is None


def test_gpu_example_loads_for_an_h100_with_mps_and_the_default_grid() -> None:
    cfg = load_config(ROOT / "examples" / "gpu-deployment.yaml")
    assert isinstance(cfg.resources, GpuResources)
    assert cfg.resources.mps and cfg.resources.device_indices == [0]
    assert cfg.edge_model.input_size == 224
    assert len(cfg.cameras) >= 4
    assert [c.name for c in cfg.retraining_configs] == [c.name for c in default_retraining_grid()]
    assert cfg.golden_model.family == "resnext50_32x4d"
    assert cfg.mps_dir == cfg.data.dir / "mps"
    # the planner's share curve is the one measured on the H100 (half the SMs train batch 64 at ~97%)
    from controller.profiles_io import deployment_throughput

    curve = deployment_throughput(cfg.resources, cores=16)
    assert cfg.resources.throughput_profile.is_file()
    assert 0.9 < curve(0.5) < 1.0 and curve(1.0) == 1.0 and curve(0.1) > 0.2



def test_trainer_memory_limit_is_an_mps_setting(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, MINIMAL + "resources: {mode: gpu, trainer_memory_mb: 4096}\n"))
    assert cfg.resources.trainer_memory_mb == 4096
    with pytest.raises(ConfigError, match=r"resources.trainer_memory_mb.*needs `mps: true`"):
        load_config(write(tmp_path, MINIMAL + "resources: {mode: gpu, mps: false, trainer_memory_mb: 4096}\n"))
    with pytest.raises(ConfigError, match=r"resources.trainer_memory_mb"):
        load_config(write(tmp_path, MINIMAL + "resources: {mode: gpu, trainer_memory_mb: 10}\n"))
    from controller.gpu import env_for_share

    env = env_for_share(0.25, 1, pipe_dir=tmp_path, memory_limit_bytes=4096 * 2**20)
    assert env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] == "0=4096M" and env["CUDA_VISIBLE_DEVICES"] == "1"


def test_a_missing_throughput_profile_is_reported_with_its_key_when_the_controller_starts(tmp_path: Path) -> None:
    from controller.profiles_io import ProfileError, deployment_throughput

    cfg = load_config(write(tmp_path, MINIMAL + "resources: {mode: gpu, throughput_profile: nope.json}\n"))
    with pytest.raises(ProfileError, match=r"resources.throughput_profile: .*nope.json.*train_throughput"):
        deployment_throughput(cfg.resources, cores=2)
    cpu = load_config(write(tmp_path, MINIMAL))
    assert deployment_throughput(cpu.resources, cores=2)(0.5) > 0.5  # threads: half the cores do more than half


def test_docker_config_uses_an_external_triton_with_the_key_from_a_file() -> None:
    cfg = load_config(ROOT / "docker" / "config" / "deployment.yaml")
    assert isinstance(cfg.triton, TritonExternal)
    assert cfg.triton.resolved_backend == "onnxruntime"
    assert cfg.triton.admin_key_file == Path("/run/secrets/triton_admin_key")
    assert cfg.model_repository == Path("/models")
    assert cfg.metrics.address == "0.0.0.0"
    # the container's camera models capture through the Python wrapper in front of the ONNX model
    from controller.triton.spec import ModelSpec

    spec = ModelSpec(name="cam0", backend=cfg.triton.resolved_backend, capture_dir=cfg.capture_dir_for_triton,
                     capture_via=cfg.triton.capture_via, capture_rate=0.1)
    assert spec.wrapped and cfg.capture_dir == Path("/capture")


def test_the_onnxruntime_backend_cannot_capture_by_itself(tmp_path: Path) -> None:
    error = errors_of(tmp_path, MINIMAL + "triton: {mode: embedded, backend: onnxruntime, capture_via: backend}\n")
    assert "triton.capture_via" in str(error) and "wrapper" in str(error)
    cfg = load_config(write(tmp_path, MINIMAL + "triton: {mode: embedded, capture_via: wrapper}\n"))
    assert cfg.triton.capture_via == "wrapper" and cfg.triton.resolved_backend == "ekya_onnx"


def test_minimal_config_is_a_few_lines_and_gets_sensible_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, MINIMAL))
    assert cfg.window_seconds == 200
    assert cfg.scheduler.name == "thief"
    assert len(cfg.retraining_configs) == 18
    assert len({c.name for c in cfg.retraining_configs}) == 18
    assert isinstance(cfg.resources, CpuResources) and cfg.resources.cores >= 1
    assert isinstance(cfg.triton, TritonEmbedded)
    assert cfg.data.dir == tmp_path / ".ekya" / "data"  # default data dir: next to the config
    assert cfg.model_repository == cfg.data.dir / "model_repository"
    assert cfg.mps_dir is None
    assert 0 < cfg.label_sampling_rate <= 1


def test_retraining_grid_default_keyword_and_explicit_list(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, MINIMAL + "retraining_configs: default\n"))
    assert len(cfg.retraining_configs) == 18
    cfg = load_config(
        write(
            tmp_path,
            MINIMAL + "retraining_configs:\n  - {epochs: 5, layers: head}\n  - {epochs: 30, hidden: 1024}\n",
        )
    )
    assert [c.name for c in cfg.retraining_configs] == ["e5-head-h64-s1", "e30-all-h1024-s1"]
    assert cfg.fixed_retraining_config.name == "e30-all-h1024-s1"  # default: the grid's middle entry


def test_config_is_immutable(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, MINIMAL))
    with pytest.raises(ValidationError, match="frozen"):
        cfg.window_seconds = 5  # type: ignore[misc]
    assert cfg.model_copy(update={"window_seconds": 5}).window_seconds == 5


def test_parse_config_accepts_a_mapping() -> None:
    cfg = parse_config({"cameras": [{"name": "a", "source": {"kind": "synthetic"}}], "window_seconds": 10})
    assert isinstance(cfg, DeploymentConfig) and cfg.window_seconds == 10


# ---------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("yaml_text", "path", "words"),
    [
        # a value out of range, deep in a list
        (
            """
            cameras:
              - {name: a, source: {kind: synthetic, seed: 1}}
              - {name: b, source: {kind: synthetic, seed: 2}}
              - {name: c, source: {kind: synthetic, seed: -3}}
            """,
            "cameras[2].source.seed",
            [">= 0", "-3"],
        ),
        # wrong type
        (MINIMAL + "window_seconds: soon\n", "window_seconds", ["number", "'soon'"]),
        # unknown key, with a suggestion and the allowed keys
        (MINIMAL + "windw_seconds: 30\n", "windw_seconds", ["unknown key", "window_seconds"]),
        (
            "cameras:\n  - {name: a, source: {kind: synthetic, drift: {sped: 1}}}\n",
            "cameras[0].source.drift.sped",
            ["unknown key", "'speed'"],
        ),
        # an unknown source kind
        (
            "cameras:\n  - {name: a, source: {kind: webcam}}\n",
            "cameras[0].source",
            ["'webcam'", "synthetic", "folder"],
        ),
        # a missing required key
        ("cameras:\n  - {name: a, source: {kind: folder}}\n", "cameras[0].source.manifest", ["missing"]),
        ("cameras:\n  - {source: {kind: synthetic}}\n", "cameras[0].name", ["missing"]),
        ("window_seconds: 30\n", "cameras", ["missing"]),
        # names Triton cannot serve, duplicates
        (
            "cameras:\n  - {name: 'front door', source: {kind: synthetic}}\n",
            "cameras[0].name",
            ["Triton", "'front door'"],
        ),
        (
            "cameras:\n  - {name: _cam, source: {kind: synthetic}}\n",
            "cameras[0].name",
            ["starting with a letter or digit"],
        ),
        (
            "cameras:\n  - {name: a, source: {kind: synthetic}}\n  - {name: a, source: {kind: synthetic}}\n",
            "cameras[1].name",
            ["duplicate", "cameras[0]"],
        ),
        ("cameras: []\n", "cameras", ["at least 1"]),
        # enumerations
        (MINIMAL + "edge_model: {family: vgg16}\n", "edge_model.family", ["resnet18", "mobilenet_v3_small"]),
        (MINIMAL + "edge_model: {hidden: 128}\n", "edge_model.hidden", ["64", "1024"]),
        (MINIMAL + "scheduler: {name: greedy}\n", "scheduler.name", ["thief", "noretrain"]),
        (MINIMAL + "resources: {mode: tpu}\n", "resources", ["'tpu'", "cpu", "gpu"]),
        (MINIMAL + "triton: {mode: remote}\n", "triton", ["'remote'", "embedded", "external"]),
        # fractions and bounds
        (MINIMAL + "label_sampling_rate: 0\n", "label_sampling_rate", ["> 0"]),
        (MINIMAL + "label_sampling_rate: 1.5\n", "label_sampling_rate", ["<= 1"]),
        (MINIMAL + "scheduler: {fair_inference_weight: 1.0}\n", "scheduler.fair_inference_weight", ["< 1"]),
        (MINIMAL + "microprofiler: {budget_fraction: 0}\n", "microprofiler.budget_fraction", ["> 0"]),
        (MINIMAL + "retraining_configs: [{epochs: 0}]\n", "retraining_configs[0].epochs", [">= 1"]),
        (
            MINIMAL + "retraining_configs: [{epochs: 5, layers: half}]\n",
            "retraining_configs[0].layers",
            ["'head'", "'all'"],
        ),
        (
            MINIMAL + "retraining_configs: [{epochs: 5, learning_rate: 0.1}]\n",
            "retraining_configs[0].learning_rate",
            ["unknown key", "'lr'"],
        ),
        (
            MINIMAL + "retraining_configs: [{epochs: 5}, {epochs: 5, lr: 0.01}]\n",
            "retraining_configs[1].name",
            ["duplicate", "e5-all-h64-s1", "retraining_configs[0]"],
        ),
        (
            "cameras:\n  - {name: golden, source: {kind: synthetic}}\n",
            "cameras[0].name",
            ["reserved", "golden model"],
        ),
        (
            "cameras:\n  - {name: gate.onnx, source: {kind: synthetic}}\n",
            "cameras[0].name",
            ["reserved", "'.onnx'", "capturing camera"],
        ),
        (MINIMAL + "edge_model: {input_size: 320}\n", "edge_model.input_size", ["synthetic", "<= 256"]),
        (MINIMAL + "edge_model: {family: shufflenet_v2}\n", "edge_model.family", ["shufflenet_v2_x0_5"]),
        (MINIMAL + "retraining_configs: everything\n", "retraining_configs", ["'default'", "list"]),
        (MINIMAL + "metrics: {port: 70000}\n", "metrics.port", ["<= 65535"]),
        (MINIMAL + "triton: {mode: embedded, grpc_port: 0}\n", "triton.grpc_port", [">= 1"]),
        (MINIMAL + "data: {disk_budget_mb: 1}\n", "data.disk_budget_mb", [">= 16"]),
        (MINIMAL + "data: {keep_versions: 1}\n", "data.keep_versions", [">= 2"]),
        # cross-field checks
        (MINIMAL + "resources: {mode: gpu, count: 2, devices: [0]}\n", "resources.devices", ["count is 2"]),
        (MINIMAL + "resources: {mode: gpu, count: 2, devices: [1, 1]}\n", "resources.devices", ["unique"]),
        (
            MINIMAL + "scheduler: {name: fair, retraining_config: nope}\n",
            "scheduler.retraining_config",
            ["'nope'", "e5-head-h64-s0.1"],
        ),
        (
            MINIMAL + "triton: {mode: external, url: 't:8001', admin_key_env: K, admin_key_file: /k}\n",
            "triton.admin_key_file",
            ["not both"],
        ),
        (MINIMAL + "triton: {mode: external}\n", "triton.url", ["missing"]),
        # keys that belong to the other variant of a section
        (MINIMAL + "triton: {mode: embedded, url: 't:8001'}\n", "triton.url", ["unknown key"]),
        (MINIMAL + "resources: {mode: cpu, count: 2}\n", "resources.count", ["unknown key", "cores"]),
    ],
)
def test_each_kind_of_bad_input_names_the_key(
    tmp_path: Path, yaml_text: str, path: str, words: list[str]
) -> None:
    err = errors_of(tmp_path, yaml_text)
    message = issue(err, path)
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    text = str(err)
    assert text.startswith(f"invalid deployment config {tmp_path / 'deployment.yaml'}")
    assert f"  - {path}" in text
    assert "pydantic" not in text.lower() and "Traceback" not in text and "errors.pydantic.dev" not in text


def test_inline_admin_key_is_rejected_pointing_to_env_or_file_and_never_echoed(tmp_path: Path) -> None:
    for triton in (
        "{mode: external, url: 't:8001', admin_key: hunter2-secret}",
        "{mode: embedded, admin_key: hunter2-secret}",
    ):
        err = errors_of(tmp_path, MINIMAL + f"triton: {triton}\n")
        message = issue(err, "triton.admin_key")
        assert "admin_key_env" in message and "admin_key_file" in message
        assert "hunter2" not in str(err)


def test_all_problems_are_reported_at_once_with_line_numbers(tmp_path: Path) -> None:
    err = errors_of(
        tmp_path,
        """
        cameras:
          - name: a
            source: {kind: synthetic, fps: 0}
        window_seconds: 0
        delta: 2
        """,
    )
    assert set(err.paths) == {"cameras[0].source.fps", "window_seconds", "delta"}
    lines = {i.path: i.line for i in err.issues}
    assert lines == {"cameras[0].source.fps": 4, "window_seconds": 5, "delta": 6}
    assert "(line 5)" in str(err)
    assert str(err).splitlines()[0].endswith("3 problems")


def test_file_level_errors_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "missing.yaml")
    err = errors_of(tmp_path, "cameras: [\n")
    assert "not valid YAML" in str(err) and err.issues[0].line is not None
    assert "empty" in str(errors_of(tmp_path, "# nothing\n"))
    assert "mapping" in str(errors_of(tmp_path, "- a\n- b\n"))


def test_relative_paths_resolve_against_the_config_file(tmp_path: Path) -> None:
    sub = tmp_path / "conf"
    sub.mkdir()
    cfg = load_config(
        write(
            sub,
            """
            cameras:
              - {name: a, source: {kind: folder, manifest: ../frames/a.jsonl}}
            data: {dir: /abs/data}
            triton: {mode: external, url: 't:8001', admin_key_file: key.txt}
            """,
        )
    )
    assert cfg.cameras[0].source.manifest == tmp_path / "frames" / "a.jsonl"  # type: ignore[union-attr]
    assert cfg.data.dir == Path("/abs/data")
    assert isinstance(cfg.triton, TritonExternal) and cfg.triton.admin_key_file == sub / "key.txt"


def test_admin_key_is_read_from_env_or_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("s3cret\n")
    cfg = parse_config(
        {**_one_cam(), "triton": {"mode": "external", "url": "t:8001", "admin_key_file": str(key_file)}}
    )
    assert isinstance(cfg.triton, TritonExternal) and cfg.triton.read_admin_key() == "s3cret"

    cfg = parse_config(
        {**_one_cam(), "triton": {"mode": "external", "url": "t:8001", "admin_key_env": "EKYA_TEST_KEY"}}
    )
    assert isinstance(cfg.triton, TritonExternal)
    monkeypatch.delenv("EKYA_TEST_KEY", raising=False)
    with pytest.raises(ConfigError, match="EKYA_TEST_KEY is unset"):
        cfg.triton.read_admin_key()
    monkeypatch.setenv("EKYA_TEST_KEY", "from-env")
    assert cfg.triton.read_admin_key() == "from-env"

    cfg = parse_config(
        {
            **_one_cam(),
            "triton": {"mode": "external", "url": "t:8001", "admin_key_file": str(tmp_path / "nope")},
        }
    )
    assert isinstance(cfg.triton, TritonExternal)
    with pytest.raises(ConfigError, match="triton.admin_key_file: cannot read"):
        cfg.triton.read_admin_key()


def _one_cam() -> dict[str, object]:
    return {"cameras": [{"name": "a", "source": {"kind": "synthetic"}}]}
