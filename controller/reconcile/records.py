"""Typed records of what happened in each window, kept in the persisted state (`ControllerState.history`)
and read by `ekya status`, the demo's comparison and the benchmarks."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Publication(BaseModel):
    """A model offered for serving: published (version set) or refused / failed (version None)."""

    accuracy: float  # the new model's accuracy on the held-out data it was judged on
    replaced_accuracy: float | None = None  # the serving model's on the same data
    version: int | None = None
    publish_seconds: float | None = None  # export, validation, Triton load
    published_at_s: float | None = None  # seconds into the window
    trained_as: str | None = None  # a profiler trial: the profile run that trained it
    decision: str = ""


class JobOutcome(BaseModel):
    """A retraining job that ended, set against what the planner expected of it."""

    job_id: str
    config: str
    status: str  # ok | stopped | failed
    share: float
    retrained_accuracy: float | None = None
    train_seconds: float = 0.0
    epochs_done: int = 0
    img_per_s: float | None = None
    startup_seconds: float | None = None  # launch to the worker's first event
    planned_train_seconds: float | None = None  # the planner's wall time at the job's share
    cost_scale: float | None = None
    cost_overhead: float | None = None


class CameraWindowRecord(BaseModel):
    # the plan
    config: str | None = None
    inference_share: float | None = None
    training_share: float | None = None
    stride: float | None = None
    serving_accuracy: float | None = None  # the serving model's, on the last closed window's held-out data
    error_growth: float | None = None
    # the window's close
    # the serving models' agreement with the golden labels on the window's captured samples (live accuracy)
    window_accuracy: float | None = None
    serving_accuracy_on_new_data: float | None = None
    golden_label_accuracy: float | None = None  # golden labels against ground truth, where known
    # the window's retraining
    job: JobOutcome | None = None
    retrained: Publication | None = None  # the job's model
    trial: Publication | None = None  # the micro-profiler's trial model, served at the plan
    ahead_trial: Publication | None = None  # ... or before the window closed
    rollback: Publication | None = None  # an earlier version's checkpoint served again (the latest, if several)
    decision: str | None = None  # why the camera had no model to judge (not started, failed, stopped)


class WindowRecord(BaseModel):
    window: int
    scheduler: str
    plan_seconds: float = 0.0
    planned_accuracy: float | None = None
    cameras: dict[str, CameraWindowRecord] = Field(default_factory=dict)
    events: list[str] = Field(default_factory=list)

    def camera(self, name: str) -> CameraWindowRecord:
        return self.cameras.setdefault(name, CameraWindowRecord())


class RollbackRecord(BaseModel):
    """A rollback, asked for (`ekya rollback`: its request id) or automatic, and how it ended: the new
    version that serves the target's checkpoint, or why it did not happen."""

    id: str
    camera: str
    reason: str  # manual | auto
    at: float  # wall time it was applied (or refused)
    window: int
    from_version: int | None = None
    to_version: int | None = None  # the version whose checkpoint serves again
    version: int | None = None  # the new version number it serves as (None: not rolled back)
    error: str | None = None
