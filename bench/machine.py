"""One line naming the machine a benchmark ran on (every benchmark prints it with its figures)."""

from __future__ import annotations

import platform

from trainer.shares import usable_cores


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_name() -> str | None:
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except Exception:
        return None
    return None


def describe(include_gpu: bool = False) -> str:
    cores = usable_cores()
    text = f"{cpu_model()}, {cores} cores, {platform.system()} {platform.machine()}, Python {platform.python_version()}"
    if include_gpu:
        text += f", GPU: {gpu_name() or 'none'}"
    return text
