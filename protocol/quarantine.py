"""Moving a corrupt data file aside, so that one bad file costs only itself.

A spool chunk, its golden labels or a window's train/test file that cannot be read is moved to
`<data dir>/quarantine/<camera>/<its path relative to the data directory>` with a `.reason` text file
beside it (what was wrong, when), and logged. The reader then goes on without it: that camera's window
continues with its good files, other cameras never see it, and a restart does not trip over it again.
Moving (a rename within the data directory) keeps the bytes for a post-mortem.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from common.atomic import atomic_write_text
from protocol.files import CameraFiles

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QuarantinedFile:
    camera: str
    source: Path  # where it was
    target: Path  # where it is now
    reason: str


class Quarantine:
    def __init__(self, layout: CameraFiles, on_quarantine: Callable[[QuarantinedFile], None] | None = None) -> None:
        self.layout = layout
        self.on_quarantine = on_quarantine  # e.g. count it in a metric

    def move(self, camera: str, path: Path, reason: str | BaseException) -> QuarantinedFile | None:
        """Move `path` aside with its reason. None if it was gone already (another reader moved it, or the
        spool's disk budget dropped it: not corrupt then, just gone) or could not be moved (logged; the
        reader skips it either way, and the next read tries again)."""
        path = Path(path)
        why = _reason(path, reason)
        try:
            target = self._free_target(camera, path)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.error("%s: could not quarantine %s (%s); skipping it: %s", camera, path, why, exc)
            return None
        moved = QuarantinedFile(camera, path, target, why)
        log.error("%s: quarantined %s (moved to %s): %s", camera, path, target, why)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        try:
            atomic_write_text(target.with_name(target.name + ".reason"), f"{stamp}\nfile: {path}\nerror: {why}\n")
        except OSError as exc:  # the log line above says it all the same
            log.error("%s: could not write the reason beside %s: %s", camera, target, exc)
        if self.on_quarantine is not None:
            self.on_quarantine(moved)
        return moved

    def _free_target(self, camera: str, path: Path) -> Path:
        try:
            relative = path.resolve().relative_to(self.layout.root.resolve())
        except ValueError:  # not under the data directory: keep its name only
            relative = Path(path.name)
        target = self.layout.quarantine_dir(camera) / relative
        number = 1
        while target.exists():  # the same name quarantined before (a spool re-created after a restart)
            target = target.with_name(f"{path.stem}.{number}{path.suffix}")
            number += 1
        return target


def _reason(path: Path, reason: str | BaseException) -> str:
    """The error in words, without the file's path in front (the log line and the .reason file name it)."""
    text = str(reason) or type(reason).__name__
    return text.removeprefix(f"{path}: ")
