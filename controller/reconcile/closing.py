"""Closing a window: the samples captured by the serving models moved into
the spool (controller/reconcile/ingest.py), the spooled frames golden-labelled (most of them already
during the window), the serving models' live accuracy (their agreement with the golden labels on the
captured samples), a held-out part kept as the window's test set, the serving models measured on it, and
each camera's error growth for the drift forecast."""

from __future__ import annotations

import logging

from controller.planner.drift import Measurement, error_growth
from controller.reconcile.ingest import CaptureIngest
from controller.reconcile.rollback import Rollbacks
from controller.reconcile.scope import Scope

log = logging.getLogger("controller")

MIN_CROPS = 10  # fewer spooled crops than this: no retraining data for the window


class WindowCloser:
    def __init__(self, scope: Scope) -> None:
        self.scope = scope
        self.rollbacks = Rollbacks(scope)
        self.ingest = CaptureIngest(scope)
        self._labelling_paused = False  # the label-ahead pass found Triton not answering (logged once)

    def close(self, window: int) -> None:
        scope = self.scope
        self.ingest.run()
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
        # captured chunks' labels beside them, for the agreement (Triton down: those left are labelled
        # below, or the close fails)
        self._label_chunks(name, window, captured_only=True)
        agreement = self._agreement(name, window)
        if agreement is not None:  # captured samples, golden-labelled: the live accuracy there is
            cam.live_accuracy = entry.window_accuracy = agreement
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
        known = labels >= 0  # (a user golden model's unmapped classes label nothing)
        if truth is not None and known.any():
            entry.golden_label_accuracy = float((labels[known] == truth[known]).mean())

    def label_open_window(self) -> None:
        """Golden-label the open window's spooled chunks as they arrive, so closing the window labels
        only its last chunk: the labels, and so the window's retraining, come sooner."""
        self.ingest.run()
        state = self.scope.state
        window = state.window
        if window < 0 or window <= state.closed:
            return
        for name in self.scope.config.camera_names:
            if not self._label_chunks(name, window):
                return
            agreement = self._agreement(name, window)
            if agreement is not None:  # the window's live accuracy so far
                self.scope.metrics.observe_camera(name, live_accuracy=agreement)

    def _label_chunks(self, name: str, window: int, captured_only: bool = False) -> bool:
        """Golden-label the window's unlabelled chunks of the camera (`captured_only`: those with the served
        classes beside them); False when Triton does not answer."""
        spool = self.scope.spool(name)
        for chunk in spool.unlabelled_chunks(window):
            if captured_only and not chunk.with_suffix(".served.npy").is_file():
                continue
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
                return False
            if self._labelling_paused:
                log.info("golden labelling resumed")
                self._labelling_paused = False
            spool.write_labels(chunk, labels)
        return True

    def _agreement(self, name: str, window: int) -> float | None:
        """The serving model's agreement with the golden labels on the window's captured samples labelled
        so far (None: none yet). Real cameras have no ground truth: this is their accuracy."""
        agree, total = self.scope.spool(name).served_agreement(window)
        return agree / total if total else None
