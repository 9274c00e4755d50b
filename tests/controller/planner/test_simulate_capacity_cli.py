"""`ekya simulate` and `ekya capacity` end to end on small CSVs; errors on bad CSVs."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import pytest

from controller.cli import main
from controller.planner.synthetic_profiles import generate

KEYS = {"scheduler", "gpus", "mean_accuracy", "plan_seconds", "windows"}


def write_csv(path: Path, cameras: int = 3, windows: int = 2, configs: int = 6, seed: int = 1) -> Path:
    rows = generate(cameras, windows, seed=seed, configs=configs)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=[x.name for x in dataclasses.fields(rows[0])])
        w.writeheader()
        for r in rows:
            w.writerow(dataclasses.asdict(r))
    return path


def test_simulate_json_shape(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = write_csv(tmp_path / "p.csv")
    assert main(["simulate", "--profiles", str(f), "--gpus", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == KEYS and out["scheduler"] == "thief" and out["gpus"] == 1
    assert [w["window"] for w in out["windows"]] == [0, 1]
    for w in out["windows"]:
        assert set(w) == {"window", "mean_accuracy", "cameras"}
        assert set(w["cameras"]) == {"cam000", "cam001", "cam002"}
        total = 0.0
        for cam in w["cameras"].values():
            assert set(cam) == {"config", "inference_share", "training_share", "accuracy"}
            assert cam["config"] is None or isinstance(cam["config"], str)
            assert 0 <= cam["accuracy"] <= 1
            total += cam["inference_share"] + cam["training_share"]
        assert total <= 1 + 1e-5  # shares are rounded to 6 decimals


def test_simulate_all_predicted_and_plots(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = write_csv(tmp_path / "p.csv")
    plots = tmp_path / "plots"
    rc = main(["simulate", "--profiles", str(f), "--gpus", "2", "--scheduler", "all", "--plan-with", "predicted",
               "--json", "--plot", str(plots)])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert isinstance(out, list) and [o["scheduler"] for o in out] == ["thief", "fair", "uniform-0.5", "noretrain"]
    assert all(set(o) == KEYS for o in out)
    noretrain = out[-1]
    assert all(c["config"] is None for w in noretrain["windows"] for c in w["cameras"].values())
    for sched in ("thief", "fair", "uniform-0.5", "noretrain"):
        for w in (0, 1):
            assert (plots / f"{sched}_w{w}_allocation.png").stat().st_size > 0
            assert (plots / f"{sched}_w{w}_accuracy.png").stat().st_size > 0


def test_simulate_human_output_and_throughput(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = write_csv(tmp_path / "p.csv")
    thr = tmp_path / "thr.json"
    thr.write_text(json.dumps({"shares": {"1.0": 5493, "0.5": 5265, "0.25": 3427, "0.1": 1723}}))
    inf = tmp_path / "inf.json"
    inf.write_text(json.dumps({"strides": [1, 2, 4, 8], "factors": [1, 0.8, 0.5, 0.2], "full_share": 0.2}))
    rc = main(["simulate", "--profiles", str(f), "--gpus", "1", "--throughput-profile", str(thr),
               "--inference-profile", str(inf)])
    assert rc == 0
    assert "thief" in capsys.readouterr().out


BAD = [
    ("camera,window,config,start_accuracy,end_accuracy\na,0,x,0.5,0.6\n", "missing column(s) gpu_seconds"),
    ("camera,window,config,start_accuracy,end_accuracy,gpu_seconds\na,0,x,0.5,abc,3\n",
     "row 2, column 'end_accuracy': not a number"),
    ("camera,window,config,start_accuracy,end_accuracy,gpu_seconds\na,0,x,0.5,0.6,3\na,0,y,0.5,1.4,3\n",
     "row 3, column 'end_accuracy': accuracy 1.4 outside [0, 1]"),
    ("camera,window,config,start_accuracy,end_accuracy,gpu_seconds\na,0,x,0.5,0.6,-3\n",
     "row 2, column 'gpu_seconds': negative cost"),
    ("camera,window,config,start_accuracy,end_accuracy,gpu_seconds\na,0,x,0.5,0.6,3\na,0,y,0.4,0.6,3\n",
     "row 3, column 'start_accuracy'"),
    ("camera,window,config,start_accuracy,end_accuracy,gpu_seconds\n", "no rows"),
]


@pytest.mark.parametrize("text,msg", BAD)
def test_bad_csv_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, msg: str) -> None:
    f = tmp_path / "bad.csv"
    f.write_text(text)
    assert main(["simulate", "--profiles", str(f), "--gpus", "1"]) == 2
    err = capsys.readouterr().err
    assert msg in err and "bad.csv" in err


def test_predicted_needs_columns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "p.csv"
    f.write_text("camera,window,config,start_accuracy,end_accuracy,gpu_seconds\na,0,x,0.5,0.6,3\n")
    assert main(["simulate", "--profiles", str(f), "--gpus", "1", "--plan-with", "predicted"]) == 2
    assert "predicted_end_accuracy" in capsys.readouterr().err


def test_capacity_monotone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = write_csv(tmp_path / "p.csv", cameras=4, windows=1, configs=6)
    assert main(["capacity", "--profiles", str(f), "--target-accuracy", "0.6", "--max-gpus", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)["schedulers"]
    assert set(out) == {"thief", "fair", "uniform", "noretrain"}
    for r in out.values():
        accs = [r["accuracy_by_gpus"][str(g)] for g in (1, 2, 3)]
        cams = [r["max_cameras"][str(g)] for g in (1, 2, 3)]
        assert accs[0] <= accs[-1] + 1e-6
        assert cams[0] <= cams[-1]
        if r["min_gpus"] is not None:
            assert r["accuracy_by_gpus"][str(r["min_gpus"])] >= 0.6
    # thief holds the target with no more GPUs than noretrain needs
    t, n = out["thief"]["min_gpus"], out["noretrain"]["min_gpus"]
    assert t is not None and (n is None or t <= n)
    assert main(["capacity", "--profiles", str(f), "--max-gpus", "2"]) == 0
    assert "fewest GPUs" in capsys.readouterr().out
