"""The micro-profiler (I/O edge): briefly trains candidate configs and turns the measurements into
retraining options through the pure planner code (curve fitting, extrapolation, cost scaling).

Configs that differ only in epochs and data fraction share one run (those two are extrapolated), so the
default 18-config grid costs 2 runs per camera; a run is `trainer.fit.fit` for the profiling epochs,
validating on the window's held-out data after each. Runs go in the grid's order (pruning removes the kinds
that kept losing); a kind whose run would overrun the profiling budget (predicted from one crop's forward
pass, timed on the start accuracy) is not started (the first kind always runs, so a camera never ends up
with no options); configs never profiled in a window are not offered to the planner that window (it cannot
predict them), which the pruning state records. Seconds per epoch count the training passes only (the
per-epoch validation is profiling overhead, not part of a config's cost). Head-only runs compute the
frozen backbone's features of the sample and of the validation set once (the trainer caches them) and
the start accuracy comes from the same features, so profiling a head-only kind costs about one forward
pass over its data. A config with another head width starts from a new, random head: its learning curve
starts from chance accuracy, not from the serving model's.

The trial runs are real models: the best one (its accuracy on the window's held-out data after its last
profiling epoch) is returned with the profile, so the controller can serve it at once where it beats the
serving model, while the full retraining runs.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from controller.planner.microprofile import ConfigSpec, MicroProfile, predict_options
from controller.planner.profiles import RetrainOption, ThroughputCurve
from trainer.configs import RetrainConfig
from trainer.streams.base import WindowData

log = logging.getLogger(__name__)


def run_key(config: RetrainConfig) -> str:
    """Configs with the same run key share one micro-profiling run."""
    return config.model_copy(update={"epochs": 1, "subsample": 1.0}).name


@dataclass(frozen=True)
class ProfileRun:
    key: str
    start_accuracy: float
    epoch_accuracies: tuple[float, ...]
    seconds_per_epoch: float
    setup_seconds: float = 0.0


@dataclass
class CameraProfile:
    camera: str
    start_accuracy: float
    runs: list[ProfileRun]
    options: list[RetrainOption]
    seconds: float
    trial_model: object | None = None  # the best trial run's model (a CropClassifier) and its held-out accuracy
    trial_accuracy: float | None = None
    trial_kind: str | None = None  # the profile run that trained it (e.g. "head-h64": configs sharing a run)


def profile_camera(
    model,
    train: WindowData,
    test: WindowData,
    configs: Sequence[RetrainConfig],
    *,
    subsample: float = 0.1,
    epochs: int = 5,
    budget_seconds: float = float("inf"),
    profile_share: float = 1.0,
    throughput: ThroughputCurve | None = None,
    device: str = "cpu",
    min_crops: int = 16,
) -> CameraProfile:
    """Micro-profile `configs` for one camera starting from its serving `model` (not modified)."""
    from trainer.fit import fit
    from trainer.progress import ProgressReporter
    from trainer.training import backbone_is_frozen

    started = time.monotonic()
    camera = train.camera
    start_accuracy: float | None = None
    sample = train.labelled().subsample(subsample, seed=1)
    if len(sample) < min_crops:  # too little data to learn a curve from: use what there is
        sample = train.labelled()
    fraction = len(sample) / max(1, train.num_labelled)
    groups: dict[str, list[RetrainConfig]] = {}
    for config in configs:
        groups.setdefault(run_key(config), []).append(config)
    runs: list[ProfileRun] = []
    profiles: list[MicroProfile] = []
    trial_model, trial_accuracy, trial_kind = None, None, None
    forward_per_crop: float | None = None  # seconds of one crop's forward pass, from the start accuracy
    n_test = test.num_labelled
    skipped = 0
    # Profiling runs every window for every camera: a line per kind at debug level (the camera's summary
    # is one info line), and never bars, which would fight the controller's own log.
    report = ProgressReporter(f"micro-profiling {camera}", bars=False, level=logging.DEBUG)
    kinds = report.task("config kind", total=len(groups))
    for key, members in groups.items():
        spent = time.monotonic() - started
        probe_config = members[0].model_copy(update={"epochs": epochs, "subsample": 1.0})
        if runs:  # the first kind is always profiled: never zero options
            predicted = (float("inf") if forward_per_crop is None else
                         predicted_run_seconds(probe_config, forward_per_crop, len(sample), n_test))
            if spent + predicted > budget_seconds:
                # A slow CPU must not spend most of a window profiling: a kind that cannot finish within
                # the budget is not started (a cheaper one after it may still be).
                skipped += 1
                kinds.advance(f"{key} not profiled: predicted {predicted:.1f} s, {spent:.1f} s of "
                              f"{budget_seconds:.1f} s spent")
                continue
        candidate = copy.deepcopy(model)
        # The first run measures the untrained copy's accuracy: a head-only run reuses those features
        # every epoch. The trial model is the last epoch's, as profiled (not the best epoch's).
        result = fit(candidate, probe_config, sample, test, device=device, keep_best=False,
                     start_accuracy=start_accuracy is None)
        if start_accuracy is None:
            start_accuracy = result.start_val_accuracy
            forward_per_crop = result.start_accuracy_seconds / max(1, n_test)
        assert start_accuracy is not None
        # Every epoch was validated: the test crops are labelled (measuring the start accuracy needs that).
        accuracies = tuple(float(stats.val_accuracy or 0.0) for stats in result.history)
        epoch_seconds = [stats.train_seconds for stats in result.history]  # validation is not a config's cost
        if accuracies and (trial_accuracy is None or accuracies[-1] > trial_accuracy):
            trial_model, trial_accuracy, trial_kind = candidate, accuracies[-1], key
        per_epoch, setup = _epoch_cost(epoch_seconds, backbone_is_frozen(probe_config))
        runs.append(ProfileRun(key, start_accuracy, accuracies, per_epoch, setup))
        kinds.advance(f"{key}: {start_accuracy:.3f} -> {accuracies[-1]:.3f} held-out in {epochs} epoch(s), "
                      f"{per_epoch:.2f} s/epoch")
        for config in members:
            profiles.append(MicroProfile(
                camera=camera,
                config=ConfigSpec(config.name, float(config.epochs), float(config.subsample)),
                start_accuracy=start_accuracy,
                epoch_accuracies=accuracies,
                seconds_per_epoch=per_epoch,
                setup_seconds=setup,
                curve_start=None if probe_config.hidden == model.meta.hidden else 1.0 / len(model.meta.classes),
                profile_fraction=fraction,
                profile_share=profile_share,
            ))
    over_budget = (f"; profiling budget {budget_seconds:.1f}s: {skipped} of {len(groups)} config kinds not "
                   f"profiled (they would not finish in it)") if skipped else ""
    log.info("%s: micro-profiled %d config kind(s) (%d configs) on %d crops in %.1f s%s", camera, len(runs),
             len(configs), len(sample), time.monotonic() - started, over_budget)
    options = predict_options(profiles, throughput)
    assert start_accuracy is not None  # the first kind is always profiled
    return CameraProfile(camera, start_accuracy, runs, options, time.monotonic() - started, trial_model,
                         trial_accuracy, trial_kind)


def predicted_run_seconds(config: RetrainConfig, forward_per_crop: float, n_sample: int, n_test: int) -> float:
    """A profile run's wall time before it starts, from one crop's forward pass: a head-only run costs
    about one forward pass over its sample (features computed once; the test set's were computed for
    the start accuracy); a run that trains the backbone costs, per epoch, a training pass over the sample
    (forward and backward: about 3 forward passes) and a forward pass over the test set."""
    if config.layers == "head":
        return forward_per_crop * n_sample
    return config.epochs * forward_per_crop * (3 * n_sample + n_test)


def _epoch_cost(epoch_seconds: list[float], caches_features: bool) -> tuple[float, float]:
    """(seconds per epoch, one-off setup seconds) of a profile run. A run that caches backbone features
    pays for them in its first epoch: that excess over the later epochs is setup, paid once per job."""
    if not epoch_seconds:
        return 0.0, 0.0
    if not caches_features or len(epoch_seconds) < 2:
        return sum(epoch_seconds) / len(epoch_seconds), 0.0
    later = sorted(epoch_seconds[1:])
    per_epoch = later[len(later) // 2]
    return per_epoch, max(0.0, epoch_seconds[0] - per_epoch)
