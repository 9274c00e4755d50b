"""protocol/quarantine.py: a bad file moved aside under its own path, with its reason; never twice, never
over an earlier one."""

from __future__ import annotations

from pathlib import Path

from protocol.files import CameraFiles
from protocol.quarantine import Quarantine, QuarantinedFile


def test_a_file_is_moved_under_its_path_with_its_reason_and_reported_once(tmp_path: Path) -> None:
    layout = CameraFiles(tmp_path)
    moved: list[QuarantinedFile] = []
    quarantine = Quarantine(layout, moved.append)
    bad = layout.spool_dir("cam0", 2) / "chunk-00003.npz"
    bad.parent.mkdir(parents=True)
    first = None
    for attempt in range(2):  # the same name quarantined again later (a spool rebuilt after a restart)
        bad.write_bytes(b"junk %d" % attempt)
        result = quarantine.move("cam0", bad, ValueError(f"{bad}: not a readable .npz"))
        assert result is not None and not bad.exists() and result.target.read_bytes() == b"junk %d" % attempt
        first = first or result.target
    assert first == tmp_path / "quarantine" / "cam0" / "cameras" / "cam0" / "spool" / "w000002" / "chunk-00003.npz"
    assert moved[1].target == first.with_name("chunk-00003.1.npz")  # the earlier one is kept
    reason = first.with_name("chunk-00003.npz.reason").read_text()
    assert f"file: {bad}" in reason and "error: not a readable .npz" in reason  # the path once, then the error
    assert quarantine.move("cam0", bad, "gone meanwhile") is None and len(moved) == 2  # not there: nothing to do
