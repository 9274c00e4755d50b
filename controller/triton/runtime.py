"""Locate and lay out the tritonserver that ships inside the nvidia-pytriton wheel.

The wheel carries a complete Triton (bin/, backends/python, caches/) plus Python-version-specific
backend stubs. We copy it once into a runtime directory, add the right stub and our `ekya_onnx`
Python-based backend, and reuse that directory on later starts. The admin-key shim
(triton_config/keyshim/ekya_keyshim.c, see controller/triton/server.py) is compiled there too, once
per source version.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

MIN_GLIBC = (2, 35)
OUR_BACKEND = "ekya_onnx"


class TritonUnavailableError(RuntimeError):
    """The embedded tritonserver cannot run on this machine (with the reason)."""


@dataclass(frozen=True)
class TritonRuntime:
    binary: Path
    backend_dir: Path
    cache_dir: Path
    library_path: Path
    keyshim: Path | None = None  # the LD_PRELOAD object that hands the server its admin key

    def environment(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """Environment for the server: its bundled libraries, and this interpreter's bin/ first on PATH
        so the python backend stub finds numpy and onnxruntime (PYTHONPATH alone does not work)."""
        env = dict(os.environ if base is None else base)
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            p for p in (str(self.library_path), env.get("LD_LIBRARY_PATH", "")) if p
        )
        env["PATH"] = os.pathsep.join(p for p in (str(Path(sys.executable).parent), env.get("PATH", "")) if p)
        # ...and this interpreter's import path, appended by our backend (PYTHONPATH is ignored there)
        env["EKYA_STUB_SYS_PATH"] = os.pathsep.join(p for p in sys.path if p and Path(p).is_dir())
        return env


def glibc_version() -> tuple[int, int] | None:
    try:
        name, version = os.confstr("CS_GNU_LIBC_VERSION").split()  # type: ignore[union-attr]
    except (ValueError, OSError, AttributeError):
        return None
    if name != "glibc":
        return None
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


def pytriton_dir() -> Path:
    try:
        import importlib.util

        spec = importlib.util.find_spec("pytriton")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise TritonUnavailableError(
            "nvidia-pytriton is not installed: it ships the tritonserver binary (run `make setup`)"
        )
    root = Path(next(iter(spec.submodule_search_locations))) / "tritonserver"
    if not (root / "bin" / "tritonserver").is_file():
        raise TritonUnavailableError(f"tritonserver binary missing from the nvidia-pytriton install at {root}")
    return root


def our_backend_source() -> Path:
    import triton_config

    return Path(triton_config.__file__).parent / "backends" / OUR_BACKEND / "model.py"


def keyshim_source() -> Path:
    import triton_config

    return Path(triton_config.__file__).parent / "keyshim" / "ekya_keyshim.c"


def c_compiler() -> str | None:
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


def build_keyshim(runtime_dir: str | os.PathLike[str]) -> Path:
    """Compile the admin-key shim into `runtime_dir`/keyshim, named by its source's hash (so an edited
    source is rebuilt, an unchanged one reused). Without a C compiler the embedded server cannot keep its
    key private: that is an error saying what to install, not a silent fallback to the command line."""
    source = keyshim_source()
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    target = Path(runtime_dir) / "keyshim" / f"ekya_keyshim-{digest}.so"
    if target.is_file():
        return target
    compiler = c_compiler()
    if compiler is None:
        raise TritonUnavailableError(
            "the embedded tritonserver needs a C compiler once, to build the shim that keeps its admin key off "
            "its command line (triton_config/keyshim): install one (e.g. `apt-get install gcc`) or set CC")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}")  # parallel starts: rename is atomic
    result = subprocess.run([compiler, "-shared", "-fPIC", "-O2", "-o", str(partial), str(source)],
                            capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        raise TritonUnavailableError(f"building the admin-key shim with {compiler} failed: {result.stderr.strip()}")
    os.replace(partial, target)
    return target


def prepare_runtime(runtime_dir: str | os.PathLike[str]) -> TritonRuntime:
    """Lay out (or refresh) a runnable Triton under `runtime_dir`; cheap when already there."""
    glibc = glibc_version()
    if glibc is not None and glibc < MIN_GLIBC:
        raise TritonUnavailableError(
            f"the embedded tritonserver needs glibc >= {MIN_GLIBC[0]}.{MIN_GLIBC[1]}, this machine has "
            f"{glibc[0]}.{glibc[1]}; use an external Triton (triton.mode: external)"
        )
    source = pytriton_dir()
    target = Path(runtime_dir)
    stamp = target / ".source"
    if not (stamp.is_file() and stamp.read_text() == str(source) and (target / "bin" / "tritonserver").is_file()):
        target.mkdir(parents=True, exist_ok=True)
        for part in ("bin", "backends", "caches"):
            if (target / part).exists():
                shutil.rmtree(target / part)
            shutil.copytree(source / part, target / part, symlinks=True)
        stub_version = f"{sys.version_info.major}.{sys.version_info.minor}"
        stub = source / "python_backend_stubs" / stub_version / "triton_python_backend_stub"
        if not stub.is_file():
            raise TritonUnavailableError(f"nvidia-pytriton has no python backend stub for Python {stub_version}")
        shutil.copy2(stub, target / "backends" / "python" / "triton_python_backend_stub")
        stamp.write_text(str(source))
    # Our backend is refreshed on every start, so an edited model.py takes effect.
    ours = target / "backends" / OUR_BACKEND
    ours.mkdir(parents=True, exist_ok=True)
    shutil.copy2(our_backend_source(), ours / "model.py")
    library_path = source.parent.parent / "nvidia_pytriton.libs"
    return TritonRuntime(
        binary=target / "bin" / "tritonserver",
        backend_dir=target / "backends",
        cache_dir=target / "caches",
        library_path=library_path,
        keyshim=build_keyshim(target),
    )
