"""The comparison's runs start their cameras as remote ones: both endpoints on fixed ports named in the
run's config and passed by URL, results outside the data directory (the runs themselves are the demo's
and bench/e2e.py's; this checks the wiring without running one)."""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from camera.cli import add_arguments, controller_url_for, triton_url_for
from camera.settings import load_camera_settings
from controller.comparison import _config_for_run, camera_command, camera_results

RAW = {"cameras": [{"name": "cam0", "source": {"kind": "synthetic", "seed": 1}},
                   {"name": "cam1", "source": {"kind": "synthetic", "seed": 2}}],
       "directives": {"port": 0}, "triton": {"mode": "embedded", "grpc_port": 0}}


def test_each_camera_is_told_the_runs_endpoints_and_its_results_directory(tmp_path: Path) -> None:
    run_dir = tmp_path / "thief"
    data, config = _config_for_run(RAW, tmp_path, run_dir, "thief")
    assert config.directives.enabled and config.directives.port > 0 and config.triton.grpc_port > 0  # fixed
    config_file = run_dir / "deployment.yaml"
    run_dir.mkdir()
    config_file.write_text(yaml.safe_dump(data))
    results = camera_results(run_dir, config.camera_names)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    for name in config.camera_names:
        command = camera_command(config_file, config, name, results[name], windows=3)
        args = parser.parse_args(command[command.index("camera") + 1:])
        settings = load_camera_settings(args.config, name)
        assert triton_url_for(args.triton_url, settings) == f"127.0.0.1:{config.triton.grpc_port}"
        assert controller_url_for(args.controller_url, settings) == f"http://127.0.0.1:{config.directives.port}"
        assert args.results == results[name].root
        assert not args.results.resolve().is_relative_to(Path(config.data.dir).resolve())
    _, other = _config_for_run(RAW, tmp_path, tmp_path / "fair", "fair")
    assert other.directives.port != config.directives.port  # runs side by side do not collide
