"""The training job spec and result (JSON files exchanged between the controller and a worker).

Only pydantic here: the worker parses and validates the job, and sets the CUDA environment from the
share, before torch is imported.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from trainer.configs import RetrainConfig

# Exit codes of `python -m trainer.worker` (result.json says the same in words).
EXIT_OK = 0          # finished, or stopped on request (result.json status "stopped")
EXIT_FAILED = 1      # unexpected error
EXIT_BAD_JOB = 2     # job file missing, not JSON, or invalid
EXIT_BAD_DATA = 3    # data or validation file unreadable, malformed, or without labelled crops
EXIT_BAD_MODEL = 4   # base checkpoint missing or unreadable
EXIT_OOM = 5         # out of memory (before or during training)
EXIT_DEVICE = 6      # requested device not available

PROGRESS_FILE = "progress.jsonl"
RESULT_FILE = "result.json"
STATE_FILE = "state.pt"      # resumable training state (model, optimizer, epoch, best)
BEST_FILE = "best.pt"        # best model so far (a trainer.models checkpoint)
STOP_FILE = "STOP"           # create it to ask the worker to stop
JOB_FILE = "job.json"
# A GPU trainer does not start on a device with less free memory: the controller checks through NVML
# before it launches one, the worker again through CUDA before it trains.
TRAINER_MIN_FREE_MEMORY_MB = 1024


class JobError(ValueError):
    """The job file is missing, unreadable or invalid; the message says what to fix."""


class TrainJob(BaseModel):
    """One retraining job: start from `base_checkpoint`, train with `config` on `data`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    job_id: str = Field(min_length=1, max_length=128)
    camera: str = Field(min_length=1)
    base_checkpoint: Path
    data: Path = Field(description="WindowData .npz with (golden) labels")
    validation: Path | None = Field(None, description="held-out .npz; default: split `data` by track")
    history: Path | None = Field(None, description="replayed historical crops, weighted by history_weight")
    config: RetrainConfig
    share: float = Field(gt=0.0, le=1.0, description="fraction of the device (GPU: MPS %, CPU: cores)")
    device: str = "cpu"
    output_dir: Path
    seed: int = 0
    val_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    min_free_memory_mb: int = Field(TRAINER_MIN_FREE_MEMORY_MB, ge=0, description="GPU: refuse to start with less free memory")

    @field_validator("job_id")
    @classmethod
    def _safe_id(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9._-]+", v):
            raise ValueError("job_id may contain only letters, digits, '.', '_' and '-'")
        return v

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if not re.fullmatch(r"cpu|cuda(:\d+)?", v):
            raise ValueError("device must be 'cpu', 'cuda' or 'cuda:N'")
        return v

    @property
    def is_cuda(self) -> bool:
        return self.device.startswith("cuda")

    @property
    def cuda_index(self) -> int:
        return int(self.device.split(":")[1]) if ":" in self.device else 0

    def write(self, path: str | os.PathLike[str] | None = None) -> Path:
        from common.atomic import atomic_write_text

        return atomic_write_text(path or self.output_dir / JOB_FILE, self.model_dump_json(indent=2))

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> TrainJob:
        p = Path(path)
        try:
            raw = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise JobError(f"cannot read job file {p}: {exc.strerror or exc}") from exc
        try:
            obj = json.loads(raw)
        except ValueError as exc:
            raise JobError(f"job file {p} is not valid JSON: {exc}") from exc
        try:
            return cls.model_validate(obj)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(x) for x in e['loc']) or '(root)'}: {e['msg']}"
                                 for e in exc.errors())
            raise JobError(f"invalid job file {p}: {problems}") from exc


class JobResult(BaseModel):
    """What a worker leaves in result.json (written atomically, last)."""

    job_id: str
    status: Literal["ok", "failed", "stopped"]
    message: str = ""
    exit_code: int = 0
    best_val_accuracy: float | None = None
    start_val_accuracy: float | None = None
    best_epoch: int = 0
    epochs_done: int = 0
    seconds: float = 0.0
    img_per_s: float = 0.0
    checkpoint: str | None = None
