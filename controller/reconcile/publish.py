"""The one publish path: export -> validate -> repository version -> load (Serving.publish) -> record.

Used for a finished job's model, the micro-profiler's trial models and the initial models at start-up.
A failure anywhere keeps the previous version serving. A camera's publish is recorded as an intent
(its weights staged, the state saved) before it starts and confirmed (the state saved again) once Triton
serves it, so that a crash at any point leaves a state that `truth.ServingTruth` can square with
Triton's repository index.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

from controller.layout import DataLayout
from controller.reconcile.events import EventLog, Slot
from controller.reconcile.ports import Clock, Exporter, Serving
from controller.reconcile.records import Publication
from controller.state import CameraRecord, ControllerState, PendingPublish


class Publisher:
    def __init__(self, serving: Serving, exporter: Exporter, layout: DataLayout, state: ControllerState,
                 events: EventLog, clock: Clock, save: Callable[[], None] = lambda: None) -> None:
        self.serving = serving
        self.exporter = exporter
        self.layout = layout
        self.state = state
        self.events = events
        self.clock = clock
        self.save = save  # persists the state: called when an intent is recorded and when it is confirmed

    def install(self, model: str, checkpoint: Path) -> int:
        """Export the checkpoint and serve it as the model's newest version; returns the version."""
        self.layout.root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.layout.root) as tmp:
            onnx_path = Path(tmp) / "model.onnx"
            self.exporter(checkpoint, onnx_path)
            return self.serving.publish(model, onnx_path)

    def adopt(self, camera: str, version: int, checkpoint: Path) -> CameraRecord:
        """Record `version` as the camera's serving model, with the checkpoint behind it kept (a staged
        one is moved into place, anything else copied)."""
        target = self.layout.checkpoint(camera, version)
        target.parent.mkdir(parents=True, exist_ok=True)
        if Path(checkpoint).resolve() != target.resolve():
            if Path(checkpoint).name.startswith("pending-") and Path(checkpoint).parent == target.parent:
                os.replace(checkpoint, target)  # a staged publish's weights become the version's
            else:
                shutil.copyfile(checkpoint, target)
        record = self.state.cameras.setdefault(camera, CameraRecord())
        record.replace_serving(version)
        record.serving_version = version
        record.serving_checkpoint = str(target)
        return record

    def serve(self, camera: str, checkpoint: Path, accuracy: float | None = None) -> CameraRecord:
        """Serve `checkpoint` as the camera's newest version: intent, install, confirm. Raises (the old
        version still serving, the intent withdrawn) when the publish fails."""
        record = self.state.cameras.setdefault(camera, CameraRecord())
        staged = self.layout.pending_checkpoint(camera, uuid.uuid4().hex[:12])
        staged.parent.mkdir(parents=True, exist_ok=True)
        partial = staged.with_suffix(".partial")
        shutil.copyfile(checkpoint, partial)
        os.replace(partial, staged)
        record.publishing = PendingPublish(checkpoint=str(staged), accuracy=accuracy, started_at=self.clock.time())
        self.save()
        try:
            version = self.install(camera, staged)
        except Exception:  # (an interrupt leaves the intent, as a kill would: the next step squares it)
            record.publishing = None
            staged.unlink(missing_ok=True)
            self.save()
            raise
        record = self.adopt(camera, version, staged)
        record.publishing = None
        if accuracy is not None:
            record.serving_accuracy = accuracy
        self.save()
        return record

    def publish(self, camera: str, checkpoint: Path, *, window: int, slot: Slot, accuracy: float,
                replaced_accuracy: float, data_window: int, window_started: float,
                trained_as: str | None = None) -> Publication:
        """Serve a judged model (it beat the serving one on the held-out data of `data_window`) and
        record it under `window`'s record, in `slot`. Returns the publication (version None: failed)."""
        started = self.clock.monotonic()
        try:
            record = self.serve(camera, checkpoint, accuracy)
        except Exception as exc:  # any failure keeps the old model serving
            failed = Publication(accuracy=accuracy, replaced_accuracy=replaced_accuracy, trained_as=trained_as,
                                 decision=f"publish failed: {exc}")
            self.events.publish_failed(camera, window, slot, failed)
            self.save()
            return failed
        version = record.serving_version
        # the new model on held-out data of the window it learned from: with its accuracy on the next
        # window's data (measured when that window closes) it gives the drift forecast a fresh estimate
        record.record_accuracy(data_window, version, accuracy)
        what = "published" if slot == "retrained" else "served the profiler's trial model"
        how = "" if trained_as is None else f", trained as {trained_as}"
        publication = Publication(
            accuracy=accuracy, replaced_accuracy=replaced_accuracy, version=version, trained_as=trained_as,
            publish_seconds=round(self.clock.monotonic() - started, 2),
            published_at_s=round(self.clock.time() - window_started, 1),
            decision=f"{what} v{version} ({accuracy:.3f} > {replaced_accuracy:.3f}{how})")
        self.events.published(camera, window, slot, publication)
        self.save()
        return publication

    def republish(self, camera: str, version: int, *, window: int, reason: str, accuracy: float,
                  replaced_accuracy: float | None, data_window: int | None, window_started: float,
                  why: str) -> Publication:
        """Serve the kept checkpoint of the earlier `version` again (a rollback), as the model's newest
        version: Triton's version numbers only grow, so a rollback is a publish like any other, recorded
        under `window` in the "rollback" slot. `accuracy` is the checkpoint's on the latest held-out data,
        added to its accuracy history as measured on `data_window`'s unless that is None. Returns the publication (version None: failed, the
        serving model unchanged); raises FileNotFoundError, nothing done, when the checkpoint is gone."""
        checkpoint = self.layout.checkpoint(camera, version)
        if not checkpoint.is_file():
            raise FileNotFoundError(f"{camera}: no checkpoint of version {version} at {checkpoint} (pruned?)")
        started = self.clock.monotonic()
        try:
            record = self.serve(camera, checkpoint, accuracy)
        except Exception as exc:  # the serving model keeps serving
            failed = Publication(accuracy=accuracy, replaced_accuracy=replaced_accuracy,
                                 decision=f"rollback ({reason}) to v{version} failed: {exc}")
            self.events.publish_failed(camera, window, "rollback", failed)
            self.save()
            return failed
        new_version = record.serving_version
        record.rolled_back(version)
        if data_window is not None:
            record.record_accuracy(data_window, new_version, accuracy)
        publication = Publication(
            accuracy=accuracy, replaced_accuracy=replaced_accuracy, version=new_version,
            publish_seconds=round(self.clock.monotonic() - started, 2),
            published_at_s=round(self.clock.time() - window_started, 1),
            decision=f"rolled back ({reason}) to v{version}'s checkpoint, serving as v{new_version}: {why}")
        self.events.rolled_back(camera, window, reason, publication)
        self.save()
        return publication
