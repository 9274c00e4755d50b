"""The label-ahead pass rides out a Triton outage: no error per pass, one warning, labels once it is back."""

from __future__ import annotations

import logging

from tests.controller.reconcile.fakes import make_harness


def test_label_ahead_pauses_while_triton_is_down_and_resumes(tmp_path, caplog):
    h = make_harness(tmp_path)
    h.enter_window(0)
    h.spool("cam0", 0, chunk=0)
    spool = h.scope.spool("cam0")
    h.serving.down = True
    caplog.set_level(logging.INFO, logger="controller")
    for _ in range(3):
        h.reconciler.label_open_window()  # the APScheduler job: must not raise
    warnings = [r for r in caplog.records if "golden labelling paused" in r.getMessage()]
    assert len(warnings) == 1 and "not answering" in warnings[0].getMessage()
    assert spool.unlabelled_chunks(0)  # still waiting

    h.serving.down = False
    h.reconciler.label_open_window()
    assert not spool.unlabelled_chunks(0) and h.serving.labelled == 40
    assert any("golden labelling resumed" in r.getMessage() for r in caplog.records)
