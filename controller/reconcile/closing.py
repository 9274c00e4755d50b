"""Closing a window: the spooled frames golden-labelled (most of them already during the window), a held-out part kept as the window's test set, the serving models
measured on it, and each camera's error growth for the drift forecast."""

from __future__ import annotations

import logging

from controller.planner.drift import Measurement, error_growth
from controller.reconcile.rollback import Rollbacks
from controller.reconcile.scope import Scope

log = logging.getLogger("controller")

MIN_CROPS = 10  # fewer spooled crops than this: no retraining data for the window


class WindowCloser:
    def __init__(self, scope: Scope) -> None:
        self.scope = scope
        self.rollbacks = Rollbacks(scope)
        self._labelling_paused = False  # the label-ahead pass found Triton not answering (logged once)

    def close(self, window: int) -> None:
        scope = self.scope
        for name in scope.config.camera_names:
            try:
                self._close_camera(name, window)
            except Exception:  # one camera's bad data must not stop the others' close
                log.exception("%s: closing window %d failed; no retraining data", name, window)
            scope.observe(name)

    def _close_camera(self, name: str, window: int) -> None:
        scope = self.scope
        cam = scope.state.cameras[name]
        entry = scope.events.camera(window, name)
        spool = scope.spool(name)
        data, truth = spool.read_window(window)
        spool.drop_windows_before(window)
        if len(data) < MIN_CROPS:
            log.warning("%s: only %d spooled crops for window %d; no retraining data", name, len(data), window)
            return
        labels = data.labels.copy()  # golden labels of the chunks labelled during the window
        missing = labels < 0
        if missing.any():
            labels[missing] = scope.serving.golden_labels(data.images[missing])
        train, test = data.with_labels(labels).split(scope.config.data.holdout_fraction, seed=window)
        directory = scope.layout.window_dir(window, name)
        train.save(directory / "train.npz")
        test.save(directory / "test.npz")
        accuracy = scope.serving.accuracy(name, test.images, test.labels)
        # a model published since the last close, worse here than the one it replaced: that one again
        accuracy = self.rollbacks.check_live(name, window, test, accuracy)
        cam.serving_accuracy = accuracy
        if accuracy is not None:
            cam.record_accuracy(window, cam.serving_version, accuracy)
        cam.error_growth = error_growth([Measurement(*m) for m in cam.accuracy_history], cam.error_growth)
        entry.serving_accuracy_on_new_data = accuracy
        if truth is not None:
            entry.golden_label_accuracy = float((labels == truth).mean())

    def label_open_window(self) -> None:
        """Golden-label the open window's spooled chunks as they arrive, so closing the window labels
        only its last chunk: the labels, and so the window's retraining, come sooner."""
        state = self.scope.state
        window = state.window
        if window < 0 or window <= state.closed:
            return
        for name in self.scope.config.camera_names:
            spool = self.scope.spool(name)
            for chunk in spool.unlabelled_chunks(window):
                part = spool.load_chunk(chunk)  # None: dropped by the disk budget meanwhile, or quarantined
                if part is None:
                    continue
                try:
                    labels = self.scope.serving.golden_labels(part.images)
                except Exception as exc:  # Triton down or restarting: the next pass (or the close) labels it
                    if not self._labelling_paused:
                        log.warning("golden labelling paused: %s (the chunks wait for the next pass or the "
                                    "window's close)", exc)
                    self._labelling_paused = True
                    return
                if self._labelling_paused:
                    log.info("golden labelling resumed")
                    self._labelling_paused = False
                spool.write_labels(chunk, labels)
