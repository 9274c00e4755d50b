"""No trainer outlives its controller: a controller killed with SIGKILL takes its workers (forked from the
fork server or fresh interpreters, running or SIGSTOPped by the duty cycler) and the fork server with it.
Linux only (a parent-death signal)."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal: Linux only")

_ROOT = Path(__file__).resolve().parents[3]

# A controller in miniature: a warm pool (workers forked from the fork server) and a cold one (fresh
# interpreters), each job launched from a thread that exits at once (as a scheduler's pool thread may),
# then both jobs stopped by the duty cycler (share 0) once they are up. It prints the pids to watch and
# waits to be killed.
_CONTROLLER = textwrap.dedent('''
    import json, multiprocessing.resource_tracker, os, sys, threading, time, traceback
    from pathlib import Path

    from controller.trainers import TrainerPool
    from trainer.configs import RetrainConfig
    from trainer.models import build_model, save_model
    from trainer.streams.synthetic import CameraStreamSpec, generate_window


    def state_of(pid):
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return fields[0], int(fields[1])


    def main(root):
        spec = CameraStreamSpec(name="cam0", seed=3, crop_size=16, fps=2, window_seconds=10, objects_per_frame=3)
        train, test = generate_window(spec, 1).split(0.25, seed=0)
        train.save(root / "train.npz")
        test.save(root / "test.npz")
        save_model(build_model("resnet18", hidden=16, input_size=16), root / "base.pt")
        pools = {"warm": TrainerPool(root / "warm", cores=2, warm=True),
                 "cold": TrainerPool(root / "cold", cores=2, warm=False)}
        records = {}
        for kind in pools:  # an earlier run's events (a resumed job): no sign that this worker is up
            (root / kind / kind).mkdir(parents=True)
            (root / kind / kind / "progress.jsonl").write_text('{"event": "start", "time": 0}\\n')

        stopped = threading.Event()

        def launch(kind):  # the launching thread ends once its worker is up
            records[kind] = pools[kind].launch(
                job_id=kind, camera="cam0", window=1, config=RetrainConfig(epochs=1000, layers="all"),
                base_checkpoint=root / "base.pt", data=root / "train.npz", validation=root / "test.npz",
                share=0.5)
            stopped.wait()

        threads = [threading.Thread(target=launch, args=(kind,)) for kind in pools]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 150
        while len(records) < len(pools):
            assert time.monotonic() < deadline and all(t.is_alive() for t in threads), "launch failed"
            time.sleep(0.05)
        print(json.dumps({"launched": [r.pid for r in records.values()]}), flush=True)
        for kind, pool in pools.items():  # stopped for good (once it is up: the pool waits for its first event)
            pool.set_share(kind, 0.0)
        while any(state_of(r.pid)[0] != "T" for r in records.values()):
            assert time.monotonic() < deadline, "workers not stopped"
            assert all(pool.handles[kind].is_running() for kind, pool in pools.items()), "a worker died"
            time.sleep(0.05)
        assert all((root / kind / kind / "progress.jsonl").read_text().count("\\n") > 1 for kind in pools), \
            "a worker was stopped before it was up"
        stopped.set()
        for thread in threads:
            thread.join()
        time.sleep(1.0)
        assert all(pool.handles[kind].is_running() for kind, pool in pools.items()), "died with its launching thread"
        print(json.dumps({"workers": [r.pid for r in records.values()],
                          "fork_server": state_of(records["warm"].pid)[1],
                          "resource_tracker": multiprocessing.resource_tracker._resource_tracker._pid}), flush=True)
        time.sleep(600)


    if __name__ == "__main__":
        try:
            main(Path(sys.argv[1]))
        except BaseException:
            traceback.print_exc()
            sys.stderr.flush()
            os._exit(1)  # at once: a normal exit would wait on the stopped workers
''')


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def test_workers_and_the_fork_server_die_with_a_killed_controller(tmp_path: Path) -> None:
    script = tmp_path / "mini_controller.py"
    script.write_text(_CONTROLLER)
    env = {**os.environ, "PYTHONPATH": str(_ROOT)}
    controller = subprocess.Popen([sys.executable, str(script), str(tmp_path)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, env=env, cwd=str(_ROOT), text=True)
    watched: list[int] = []
    try:
        watched = _read(controller, deadline=time.monotonic() + 240)["launched"]
        pids = _read(controller, deadline=time.monotonic() + 180)
        watched = [*pids["workers"], pids["fork_server"], pids["resource_tracker"]]
        assert pids["fork_server"] != controller.pid and all(_alive(pid) for pid in watched)

        controller.kill()  # kill -9: no clean-up of any kind runs in the controller
        controller.wait(10)
        deadline = time.monotonic() + 15
        while any(_alive(pid) for pid in watched) and time.monotonic() < deadline:
            time.sleep(0.1)
        survivors = [pid for pid in watched if _alive(pid)]
        assert not survivors, f"outlived the controller: {survivors} of workers {pids['workers']}, " \
                              f"fork server {pids['fork_server']}, resource tracker {pids['resource_tracker']}"
    finally:
        if controller.poll() is None:
            controller.kill()
        controller.wait(10)
        time.sleep(0.5)
        for pid in watched:  # (only if the test failed: never leave them behind)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _read(controller: subprocess.Popen[str], deadline: float) -> dict:
    """The mini controller's next line (JSON); fails the test with its stderr if none comes in time."""
    assert controller.stdout is not None and controller.stderr is not None
    ready, _, _ = select.select([controller.stdout], [], [], max(0.0, deadline - time.monotonic()))
    line = controller.stdout.readline() if ready else ""
    if not line:
        controller.kill()
        controller.wait(10)
        pytest.fail(f"the mini controller failed:\n{controller.stderr.read()[-3000:]}")
    return json.loads(line)


def test_a_child_whose_parent_died_before_it_set_the_signal_kills_itself() -> None:
    """The race: the parent dies between the fork and the prctl, the child is re-parented and no
    parent-death signal would ever come. die_with_parent checks the parent it was given."""
    dead_parent = subprocess.Popen(["true"])
    dead_parent.wait()
    env = {**os.environ, "PYTHONPATH": str(_ROOT)}

    def child(parent: str) -> subprocess.CompletedProcess[str]:
        code = f"import os; from common.parent_death import die_with_parent; die_with_parent({parent}); print('alive')"
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env,
                              cwd=str(_ROOT))

    orphan = child(str(dead_parent.pid))
    assert orphan.returncode == -signal.SIGKILL and "alive" not in orphan.stdout, orphan
    kept = child("os.getppid()")  # its parent lives: so does it
    assert kept.returncode == 0 and "alive" in kept.stdout, kept
