"""controller/retention/policy.py: what goes, decided from a DiskView alone (no files)."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.retention.policy import DiskView, Entry, JobDir, Rules, Version, decide

NOW = 10_000.0
WINDOW_S = 100.0
MB = 2**20


def view(**fields) -> DiskView:
    """Window 10 open (started at NOW - 50), window 9 closed; a small directory well within budget."""
    base = dict(now=NOW, window_seconds=WINDOW_S, open_window=10, open_window_start=NOW - 50, closed=9,
                total_bytes=10 * MB)
    return DiskView(**{**base, **fields})


RULES = Rules(budget_bytes=100 * MB, keep_versions=3, keep_windows=2, keep_window_records=10, max_log_bytes=5 * MB)


def test_rules_refuse_fewer_than_two_versions() -> None:
    with pytest.raises(ValueError, match="rollback"):
        Rules(budget_bytes=MB, keep_versions=1)


def test_an_ended_job_loses_its_checkpoints_at_once_and_its_records_after_keep_windows() -> None:
    jobs = (JobDir("running", NOW - 1000, 50 * MB, 51 * MB),  # old, but the state lists it as running
            JobDir("just-judged", NOW - 5, 50 * MB, 51 * MB),
            JobDir("records-only", NOW - 150, 0, 1000),  # within 2 windows: its small files stay
            JobDir("old", NOW - 250, 0, 1000))
    plan = decide(view(jobs=jobs, active_jobs=frozenset({"running"})), RULES)
    assert plan.job_checkpoints == ["just-judged"]
    assert plan.job_dirs == ["old"]
    assert plan.freed["jobs"] == 50 * MB + 1000


def test_versions_keep_the_newest_k_the_serving_one_and_any_publish_in_flight() -> None:
    versions = tuple(Version("cam0", n, repository_bytes=10, checkpoint_bytes=20) for n in range(1, 8))
    # cam0 serves v2 (rolled back to), v7 is being loaded (newer than the serving one): v1 only goes...
    plan = decide(view(versions=versions, serving={"cam0": 2}), RULES)
    assert plan.versions == [("cam0", 1)] and plan.checkpoints == [("cam0", 1)]
    # ... serving v7: v1..v4 go; the golden model (no serving record, no checkpoints) keeps its newest 3
    golden = tuple(Version("golden", n, repository_bytes=10) for n in range(1, 5))
    plan = decide(view(versions=versions + golden, serving={"cam0": 7}), RULES)
    assert plan.versions == [("cam0", 1), ("cam0", 2), ("cam0", 3), ("cam0", 4), ("golden", 1)]
    assert plan.checkpoints == [("cam0", 1), ("cam0", 2), ("cam0", 3), ("cam0", 4)]
    assert plan.freed["model_repository"] == 50 and plan.freed["checkpoints"] == 80


def test_a_checkpoint_whose_repository_version_is_gone_goes_unless_a_running_job_started_from_it() -> None:
    versions = (Version("cam0", 1, checkpoint_bytes=20, pinned=True), Version("cam0", 2, checkpoint_bytes=20),
                *(Version("cam0", n, repository_bytes=10, checkpoint_bytes=20) for n in (3, 4, 5)))
    plan = decide(view(versions=versions, serving={"cam0": 5}), Rules(budget_bytes=MB, keep_versions=3))
    assert plan.checkpoints == [("cam0", 2)] and plan.versions == []


def test_windows_keep_the_last_closed_ones_and_those_running_jobs_train_on() -> None:
    windows = {w: 100 for w in range(10)}
    plan = decide(view(windows=windows, needed_windows=frozenset({3})), RULES)
    assert plan.windows == [0, 1, 2, 4, 5, 6, 7]  # closed 9: 8 and 9 kept, and 3 (a job reads it)


def test_trials_go_once_their_window_is_over() -> None:
    old, current = Entry(Path("trials/cam0.pt"), 7, NOW - 60), Entry(Path("trials/cam1.pt"), 7, NOW - 40)
    assert decide(view(trials=(old, current)), RULES).paths == [old.path]
    assert decide(view(trials=(old,), open_window=-1), RULES).paths == []  # before the first window


def test_records_logs_trash_and_staging() -> None:
    results = tuple(Entry(Path(f"results/w{w}.json"), 10, window=w) for w in range(12))
    log, small = Entry(Path("triton/tritonserver.log"), 6 * MB), Entry(Path("windows.jsonl"), 1000)
    trash = tuple(Entry(Path(f"trash/{n}"), 10, mtime=NOW - 100 + n) for n in range(5))
    staging = (Entry(Path("staging/interrupted"), 10, NOW - 500), Entry(Path("staging/now"), 10, NOW - 1))
    plan = decide(view(results=results, logs=(log, small), rotated_bytes={log.path: 6 * MB}, trash=trash,
                       staging=staging, history_records=25, closed=11), RULES)
    assert plan.archive_records == 15  # the state keeps 10 window records
    assert plan.rotate == [log.path] and plan.freed["logs"] == 6 * MB  # its previous rotated copy
    # closed 11, 10 records kept: results of windows 0 and 1 go; trash keeps its newest 3; the interrupted
    # staging goes
    assert plan.paths == [Path("results/w0.json"), Path("results/w1.json"), Path("trash/1"), Path("trash/0"),
                          Path("staging/interrupted")]


def test_over_budget_the_spool_goes_oldest_first_closed_windows_before_the_open_one() -> None:
    spool = [Entry(Path(f"spool/w{w}/chunk-{c}.npz"), MB, mtime=c, window=w) for w in (10, 9) for c in (1, 0)]
    plan = decide(view(total_bytes=103 * MB, spool=tuple(spool)), RULES)
    assert plan.spool == [Path("spool/w9/chunk-0.npz"), Path("spool/w9/chunk-1.npz"), Path("spool/w10/chunk-0.npz")]
    assert plan.over_budget_bytes == 0
    # what the other kinds free counts first: within budget after them, no frame is dropped
    within = decide(view(total_bytes=103 * MB, spool=tuple(spool), jobs=(JobDir("done", NOW, 5 * MB, 5 * MB),)),
                    RULES)
    assert within.spool == [] and within.job_checkpoints == ["done"]


def test_when_what_must_be_kept_is_over_budget_the_open_windows_frames_are_not_dropped_for_nothing() -> None:
    spool = (Entry(Path("spool/w9/chunk-0.npz"), MB, window=9), Entry(Path("spool/w10/chunk-0.npz"), MB, window=10))
    plan = decide(view(total_bytes=150 * MB, spool=spool), RULES)
    assert plan.spool == [Path("spool/w9/chunk-0.npz")]  # already labelled into windows/: no loss
    assert plan.over_budget_bytes == 49 * MB


def test_a_repository_outside_the_data_directory_is_pruned_but_not_counted() -> None:
    versions = tuple(Version("cam0", n, repository_bytes=10 * MB) for n in range(1, 6))
    plan = decide(view(total_bytes=101 * MB, versions=versions, serving={"cam0": 5}, repository_inside=False,
                       spool=(Entry(Path("spool/w9/chunk-0.npz"), 2 * MB, window=9),)), RULES)
    assert plan.versions == [("cam0", 1), ("cam0", 2)] and plan.freed["model_repository"] == 0
    assert plan.spool == [Path("spool/w9/chunk-0.npz")]  # the repository's bytes did not bring it within


def test_nothing_to_do_is_an_empty_plan() -> None:
    plan = decide(view(), RULES)
    assert plan.empty and plan.freed_bytes == 0 and plan.over_budget_bytes == 0


def test_the_newest_quarantined_files_are_kept_with_their_reasons_and_older_ones_go() -> None:
    from controller.retention.policy import QUARANTINE_KEPT

    files = []
    for age in range(QUARANTINE_KEPT + 3):
        path = Path(f"/d/quarantine/cam0/chunk-{age:05d}.npz")
        files += [Entry(path, 1000, NOW - age), Entry(path.with_name(path.name + ".reason"), 10, NOW - age)]
    plan = decide(view(quarantine=tuple(files)), RULES)
    gone = {p.name for p in plan.paths}
    oldest = {f"chunk-{age:05d}.npz" for age in range(QUARANTINE_KEPT, QUARANTINE_KEPT + 3)}
    assert gone == oldest | {name + ".reason" for name in oldest}
    assert plan.freed["quarantine"] == 3 * 1010
