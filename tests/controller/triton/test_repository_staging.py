"""Publishing onto any filesystem: a version is staged inside its model's directory (on the repository's own
filesystem, nothing written beside the repository), moved in with one rename, and a publish that fails midway
leaves neither half a version nor a staging directory. Real mounts and a real unprivileged user where the test
runs as root; skipped with the reason otherwise."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from controller.triton.repository import STAGING_DIR, ModelRepository
from controller.triton.spec import ModelSpec
from tests.triton_helpers import INPUT_DIMS, export_tiny, running_server

IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="mounting a tmpfs and switching user need root")


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _repository(root: Path) -> ModelRepository:
    repository = ModelRepository(root)
    repository.write_spec(ModelSpec(name="cam0", input_dims=INPUT_DIMS))
    return repository


@contextlib.contextmanager
def tmpfs(where: Path, size: str) -> Iterator[Path]:
    where.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_a_version_is_staged_inside_its_model_and_nothing_is_written_beside_the_repository(tmp_path: Path) -> None:
    parent = tmp_path / "volume"
    repository = _repository(parent / "models")
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"weights-1")
    staged: list[Path] = []
    real_rename = os.rename

    def spy(src, dst):  # what the atomic rename moves, from where
        staged.append(Path(src))
        return real_rename(src, dst)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "rename", spy)
        assert repository.add_version("cam0", onnx) == 1
    assert staged[0].parent == repository.model_dir("cam0") / STAGING_DIR
    assert os.listdir(parent) == ["models"]
    assert _tree(repository.root) == {"cam0", "cam0/config.pbtxt", "cam0/ekya-spec.json", "cam0/1", "cam0/1/model.onnx"}
    repository.remove_version("cam0", 1, reason="a post-mortem")
    [trashed] = repository.trash_entries()
    assert trashed.parent == repository.trash_dir("cam0") and (trashed / "REASON").read_text() == "a post-mortem\n"
    assert os.listdir(parent) == ["models"]


@pytest.mark.parametrize("failing", ["copy", "fsync", "rename"])
def test_a_publish_that_fails_midway_leaves_nothing_behind(tmp_path: Path, failing: str) -> None:
    repository = _repository(tmp_path / "models")
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(os.urandom(64 * 1024))
    assert repository.add_version("cam0", onnx) == 1
    before = _tree(repository.root)
    disk_full = OSError(errno.ENOSPC, "No space left on device")

    def half_copy(src, dst):  # writes half the file, then the disk is full
        Path(dst).write_bytes(Path(src).read_bytes()[:32 * 1024])
        raise disk_full

    def fail(*_args, **_kwargs):
        raise disk_full

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(*{"copy": (shutil, "copyfile", half_copy), "fsync": (os, "fsync", fail),
                         "rename": (os, "rename", fail)}[failing])
        with pytest.raises(OSError, match="No space left"):
            repository.add_version("cam0", onnx)
    assert _tree(repository.root) == before
    assert repository.add_version("cam0", onnx) == 2  # the next publish goes through


def test_the_writer_cleans_interrupted_staging_at_start_up(tmp_path: Path) -> None:
    repository = _repository(tmp_path / "models")
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"weights")
    repository.add_version("cam0", onnx)
    killed = repository.staging_dir("cam0") / "v2-deadbeef"  # a publish killed mid-copy
    killed.mkdir(parents=True)
    (killed / "model.onnx").write_bytes(b"wei")
    legacy = repository.legacy_staging / "cam0-12345678"  # an earlier release's, beside the root
    legacy.mkdir(parents=True)
    assert set(repository.staging_entries()) == {killed, legacy}
    assert set(repository.clean_staging()) == {killed, legacy}
    assert repository.staging_entries() == [] and not repository.staging_dir("cam0").exists()
    assert not repository.legacy_staging.exists()
    assert repository.versions("cam0") == [1]


@needs_root
def test_a_real_disk_full_on_another_filesystem_leaves_nothing(tmp_path: Path) -> None:
    small, big = tmp_path / "small.onnx", tmp_path / "big.onnx"
    small.write_bytes(os.urandom(16 * 1024))
    big.write_bytes(os.urandom(1024 * 1024))
    with tmpfs(tmp_path / "volume", "256k") as volume:
        assert os.stat(volume).st_dev not in {os.stat(tmp_path).st_dev, os.stat(Path.cwd()).st_dev}
        repository = _repository(volume / "models")
        assert repository.add_version("cam0", small) == 1
        before = _tree(repository.root)
        with pytest.raises(OSError) as failed:
            repository.add_version("cam0", big)
        assert failed.value.errno == errno.ENOSPC
        assert _tree(repository.root) == before and os.listdir(volume) == ["models"]
        assert repository.add_version("cam0", small) == 2  # the space the failed copy took is back
        assert (repository.model_dir("cam0") / "2" / "model.onnx").read_bytes() == small.read_bytes()


def _as_user(uid: int, gid: int, work) -> object:
    """Run `work()` in a forked child that dropped root for uid/gid (the venv's interpreter lives under a
    directory only root may read, so a fresh `python` as that user could not start); returns its result."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            outcome = {"ok": work()}
        except BaseException as exc:  # reported to the parent, which fails the test with it
            outcome = {"error": repr(exc)}
        try:
            with os.fdopen(write_end, "w") as out:
                json.dump(outcome, out)
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as answer:
        text = answer.read()
    os.waitpid(pid, 0)
    outcome = json.loads(text)
    assert "error" not in outcome, outcome["error"]
    return outcome["ok"]


@needs_root
def test_an_unprivileged_user_publishes_into_a_directory_it_owns_only(tmp_path: Path) -> None:
    """The repository's parent belongs to root: the earlier writer, which staged beside the repository, failed
    here with PermissionError (as the container image's non-root user did on its volume)."""
    nobody = pwd.getpwnam("nobody")
    parent = Path(tempfile.mkdtemp(prefix="ekya-volume-"))  # /tmp/pytest-of-root is closed to other users
    try:
        parent.chmod(0o755)
        root = parent / "models"
        root.mkdir()
        os.chown(root, nobody.pw_uid, nobody.pw_gid)
        onnx = parent / "m.onnx"
        onnx.write_bytes(b"weights")
        onnx.chmod(0o644)

        def publish() -> dict:
            assert os.geteuid() == nobody.pw_uid
            with pytest.raises(PermissionError):  # what the earlier writer needed
                (parent / ".models.staging").mkdir()
            repository = ModelRepository(root)
            repository.write_spec(ModelSpec(name="cam0"))
            versions = [repository.add_version("cam0", onnx) for _ in range(3)]
            repository.remove_version("cam0", 1, reason="taken out")
            repository.prune("cam0")
            return {"versions": versions, "kept": repository.versions("cam0")}

        assert _as_user(nobody.pw_uid, nobody.pw_gid, publish) == {"versions": [1, 2, 3], "kept": [2, 3]}
        assert sorted(os.listdir(parent)) == ["m.onnx", "models"]
        assert {p.stat().st_uid for p in root.rglob("*")} == {nobody.pw_uid}
        [trashed] = (root / "cam0" / ".trash").iterdir()
        assert (trashed / "REASON").read_text() == "taken out\n"
        assert _tree(root) - _tree(root / "cam0" / ".trash") == {
            "cam0", "cam0/config.pbtxt", "cam0/ekya-spec.json", "cam0/2", "cam0/2/model.onnx", "cam0/3",
            "cam0/3/model.onnx", "cam0/.trash", f"cam0/.trash/{trashed.name}", f"cam0/.trash/{trashed.name}/REASON",
            f"cam0/.trash/{trashed.name}/model.onnx"}
    finally:
        shutil.rmtree(parent, ignore_errors=True)


@needs_root
@pytest.mark.slow
def test_triton_serves_and_hot_swaps_from_a_repository_on_its_own_filesystem(tmp_path: Path, triton_runtime) -> None:
    models = {seed: export_tiny(tmp_path / f"m{seed}.onnx", seed) for seed in (1, 2)}
    with tmpfs(tmp_path / "volume", "16m") as volume:
        repo_root = volume / "models"
        with running_server(repo_root, tmp_path / "work", triton_runtime) as (_, client, serving):
            serving.deploy(ModelSpec(name="cam0", input_dims=INPUT_DIMS), models[1][0])
            leftover = serving.repository.staging_dir("cam0") / "v9-interrupted"  # Triton must not see it
            leftover.mkdir(parents=True)
            serving.publish("cam0", models[2][0], models[2][1], models[2][2])
            assert client.served_version("cam0") == 2
            np.testing.assert_allclose(client.infer("cam0", models[2][1]), models[2][2], atol=1e-4)
            assert {entry["name"] for entry in client.repository_index()} == {"cam0"}
            assert serving.repository.clean_staging() == [leftover]
