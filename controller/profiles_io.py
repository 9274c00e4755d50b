"""Loading planner inputs from files: profile CSVs, inference profiles, throughput curves.

The I/O edge of the planner (controller/planner itself never touches files). Errors name the file,
the row (line number) and the column.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from controller.planner.profiles import InferenceProfile, RetrainOption, ThroughputCurve
from controller.planner.simulator import CameraProfile, WindowProfile

REQUIRED = ("camera", "window", "config", "start_accuracy", "end_accuracy", "gpu_seconds")
PREDICTED = ("predicted_end_accuracy", "predicted_gpu_seconds")
ACCURACIES = ("start_accuracy", "end_accuracy", "predicted_end_accuracy")
COSTS = ("gpu_seconds", "predicted_gpu_seconds")


class ProfileError(ValueError):
    """A profile file that cannot be used; the message names the row and column."""


def _number(path: Path, line: int, col: str, raw: str) -> float:
    try:
        x = float(raw)
    except (TypeError, ValueError):
        raise ProfileError(f"{path}: row {line}, column {col!r}: not a number: {raw!r}") from None
    if not math.isfinite(x):
        raise ProfileError(f"{path}: row {line}, column {col!r}: not a finite number: {raw!r}")
    if col in ACCURACIES and not 0.0 <= x <= 1.0:
        raise ProfileError(f"{path}: row {line}, column {col!r}: accuracy {x} outside [0, 1]")
    if col in COSTS and x < 0:
        raise ProfileError(f"{path}: row {line}, column {col!r}: negative cost {x}")
    return x


def load_profiles_csv(path: str | Path) -> list[WindowProfile]:
    """Rows camera x window x config -> windows (sorted) of cameras (in first-seen order)."""
    path = Path(path)
    try:
        fh = path.open(newline="")
    except OSError as e:
        raise ProfileError(f"{path}: cannot open: {e.strerror}") from None
    with fh:
        reader = csv.DictReader(fh)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise ProfileError(f"{path}: missing column(s) {', '.join(missing)} (have: {', '.join(header)})")
        reader.fieldnames = header
        has_pred = all(c in header for c in PREDICTED)
        starts: dict[tuple[int, str], tuple[float, int]] = {}
        actual: dict[tuple[int, str], list[RetrainOption]] = {}
        pred: dict[tuple[int, str], list[RetrainOption]] = {}
        seen: set[tuple[int, str, str]] = set()
        for line, row in enumerate(reader, start=2):
            if None in row or any(row.get(c) is None for c in REQUIRED):
                raise ProfileError(f"{path}: row {line}: wrong number of fields")
            cam = row["camera"].strip()
            cfg = row["config"].strip()
            if not cam:
                raise ProfileError(f"{path}: row {line}, column 'camera': empty")
            if not cfg:
                raise ProfileError(f"{path}: row {line}, column 'config': empty")
            w = _number(path, line, "window", row["window"])
            if w != int(w):
                raise ProfileError(f"{path}: row {line}, column 'window': not an integer: {row['window']!r}")
            win = int(w)
            start = _number(path, line, "start_accuracy", row["start_accuracy"])
            end = _number(path, line, "end_accuracy", row["end_accuracy"])
            cost = _number(path, line, "gpu_seconds", row["gpu_seconds"])
            key = (win, cam)
            if (win, cam, cfg) in seen:
                raise ProfileError(f"{path}: row {line}: duplicate camera {cam!r} window {win} config {cfg!r}")
            seen.add((win, cam, cfg))
            if key in starts and abs(starts[key][0] - start) > 1e-9:
                raise ProfileError(
                    f"{path}: row {line}, column 'start_accuracy': {start} differs from {starts[key][0]} "
                    f"on row {starts[key][1]} for camera {cam!r} window {win}")
            starts.setdefault(key, (start, line))
            actual.setdefault(key, []).append(RetrainOption(cam, cfg, end, cost))
            if has_pred:
                pe_raw, pc_raw = row.get("predicted_end_accuracy", ""), row.get("predicted_gpu_seconds", "")
                pe = _number(path, line, "predicted_end_accuracy", pe_raw) if pe_raw.strip() else end
                pc = _number(path, line, "predicted_gpu_seconds", pc_raw) if pc_raw.strip() else cost
                pred.setdefault(key, []).append(RetrainOption(cam, cfg, pe, pc))
    if not starts:
        raise ProfileError(f"{path}: no rows")
    windows: dict[int, list[CameraProfile]] = {}
    for (win, cam), (start, _) in starts.items():
        windows.setdefault(win, []).append(CameraProfile(
            cam, start, tuple(actual[(win, cam)]), tuple(pred[(win, cam)]) if has_pred else None))
    return [WindowProfile(w, tuple(cams)) for w, cams in sorted(windows.items())]


def has_predictions(profiles: list[WindowProfile]) -> bool:
    return all(c.predicted is not None for wp in profiles for c in wp.cameras)


def load_inference_profile(path: str | Path, throughput: ThroughputCurve | None = None) -> InferenceProfile:
    """JSON {"strides": [...], "factors": [...], "full_share": 0.25} or {"profile": {stride: factor},
    "full_share": ...}; or a CSV with columns stride,factor (full share 0.25)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ProfileError(f"{path}: cannot open: {e.strerror}") from None
    try:
        if path.suffix.lower() == ".csv":
            rows = list(csv.DictReader(text.splitlines()))
            if not rows or "stride" not in rows[0] or "factor" not in rows[0]:
                raise ProfileError(f"{path}: needs columns stride,factor")
            pairs = [(_number(path, i, "stride", r["stride"]), _number(path, i, "factor", r["factor"]))
                     for i, r in enumerate(rows, start=2)]
            return InferenceProfile.from_pairs(pairs, throughput=throughput)
        data = json.loads(text)
        full = float(data.get("full_share", 0.25))
        if "profile" in data:
            pairs = [(float(k), float(v)) for k, v in data["profile"].items()]
        else:
            pairs = list(zip(map(float, data["strides"]), map(float, data["factors"])))
        if any(not 0.0 <= f <= 1.0 for _, f in pairs):
            raise ProfileError(f"{path}: factors must be in [0, 1]")
        return InferenceProfile.from_pairs(pairs, full, throughput)
    except ProfileError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ProfileError(f"{path}: not an inference profile: {e}") from None


def load_throughput_profile(path: str | Path) -> ThroughputCurve:
    """JSON {"shares": {"1.0": img_per_s, "0.5": ..., ...}, ...} -> a normalised monotone curve."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        shares = data["shares"]
        return ThroughputCurve.from_points({float(k): float(v) for k, v in shares.items()})
    except OSError as e:
        raise ProfileError(f"{path}: cannot open: {e.strerror}") from None
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ProfileError(f"{path}: not a throughput profile ({{\"shares\": {{share: img/s}}}}): {e}") from None


def deployment_throughput(resources, cores: int) -> ThroughputCurve:
    """The training throughput curve a deployment plans with: on a GPU the measured profile named by
    `resources.throughput_profile` (linear in the share without one), on the CPU the thread-count curve."""
    if getattr(resources, "mode", "cpu") == "gpu":
        path = getattr(resources, "throughput_profile", None)
        if path is None:
            return ThroughputCurve.linear()
        try:
            return load_throughput_profile(path)
        except ProfileError as e:
            raise ProfileError(f"resources.throughput_profile: {e} (write one with bench/train_throughput.py)"
                               ) from None
    from controller.trainers.cpu_shares import cpu_throughput_points

    return ThroughputCurve.from_points(cpu_throughput_points(cores))
