"""The reconcile step keeps the data directory bounded: a retention pass after each window close and each
publish (before, every window's labelled data, every version's checkpoint and every window record stayed)."""

from __future__ import annotations

from pathlib import Path

from controller.retention import Retention, Rules, window_history
from controller.triton.repository import ModelRepository
from tests.controller.reconcile.fakes import make_harness


def test_windows_checkpoints_and_records_stay_bounded_over_many_windows(tmp_path: Path) -> None:
    harness = make_harness(tmp_path)
    layout = harness.scope.layout
    rules = Rules(budget_bytes=2**30, keep_versions=2, keep_windows=1, keep_window_records=4)
    harness.scope.retention = Retention(layout, ModelRepository(layout.root / "model_repository", keep_versions=2),
                                        rules, harness.scope.metrics, clock=harness.clock.time)
    harness.enter_window(0)
    for window in range(8):
        for camera in ("cam0", "cam1"):
            harness.spool(camera, window, chunk=0)
            harness.spool(camera, window, chunk=1)
        harness.enter_window(window + 1)  # closes `window`, plans the next: cam0's job starts
        harness.trainers.finish("cam0", 0.9)  # ... and beats the serving model: published
        harness.clock.advance(2)
        harness.reconciler.reconcile()

    cam0 = harness.state.cameras["cam0"]
    assert cam0.serving_version == 9  # v1 and 8 retrained versions published
    assert sorted(p.name for p in (layout.checkpoints_dir / "cam0").iterdir()) == ["v8.pt", "v9.pt"]
    assert Path(cam0.serving_checkpoint).is_file()
    assert sorted(p.name for p in layout.windows_dir.iterdir()) == ["w000007"]  # the one the running jobs read
    assert [r.window for r in harness.state.history] == [5, 6, 7, 8]
    assert [r.window for r in window_history(layout, harness.state)] == list(range(9))
    assert harness.scope.metrics.registry.get_sample_value("ekya_data_dir_bytes") > 0
