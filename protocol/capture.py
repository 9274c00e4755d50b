"""Samples of what a camera model serves, captured inside Triton for golden labelling and retraining.

The camera model's backend hands each request it answered to a `CaptureWriter`, which keeps a sample of
them (`rate` per request: a hash of the client's request id where it sent one, so a rerun samples the
same frames; random otherwise) and writes them in chunks, atomically (temp file + rename: a reader never
sees half a chunk), every `chunk_seconds` from a daemon thread and at close:

    <capture dir>/<model>/cap-<flush time ns>-<pid>-<writer token>-<seq>.npz

(several instances, processes and writers write into one directory without colliding). A chunk holds, per crop:
`images` uint8 [N,H,W,3] (the model's FP32 NCHW [0,1] input turned back into what the camera sent),
`arrival` float64 (server-side seconds since the epoch), `request_id` (str, "" when none), `prediction`
int64 (the served top-1 class) and `version` int64 (the model version that answered). The controller
moves them into its per-window spool (controller/reconcile/ingest.py).

Capture never fails or delays a request: every error is caught, logged (rate-limited) and counted. When
the directory would go over its byte budget (the controller is not collecting), the flush evicts the oldest
chunks first (whoever wrote them), so what the controller finds when it comes back is the most recent;
their crops are counted as dropped ("evicted"). numpy and the standard library only: this module runs
inside Triton's python backend stub.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

CHUNK_PREFIX = "cap-"
# Each writer's cumulative counters, rewritten atomically at every flush and at close ("closed": true):
# the controller turns them into metrics (Triton 2.51 aborts on a model reload while the python backend's
# custom metrics exist, so they are not used).
COUNTS_PREFIX = "counts-"
CHUNK_SUFFIX = ".npz"
CHUNK_ARRAYS = ("images", "arrival", "request_id", "prediction", "version")
DEFAULT_CHUNK_SECONDS = 5.0
# Why a sampled crop is not (or no longer) on disk: more than the whole budget waiting at once, more
# waiting in memory than a chunk may hold (the disk is slower than the requests), an error (converting,
# writing), or written but evicted (oldest first) to make room for newer crops.
DROP_REASONS = ("budget", "backlog", "error", "evicted")
_FILE_OVERHEAD_BYTES = 2048  # an .npz's headers, per file
_CROP_OVERHEAD_BYTES = 64  # a crop's arrival, id, prediction and version
ERROR_LOG_EVERY_S = 60.0


class CaptureFileError(ValueError):
    """A capture chunk that cannot be read or is malformed."""


# ------------------------------------------------------------------------------------- pure functions
def to_uint8_images(batch: np.ndarray) -> np.ndarray:
    """FP32 NCHW in [0, 1] -> uint8 NHWC: the inverse of protocol/model_input.to_model_input, exact for
    inputs made from uint8 crops (k/255 in float32, times 255, rounds back to k)."""
    array = np.asarray(batch)
    if array.ndim != 4 or array.shape[1] != 3:
        raise ValueError(f"expected an NCHW batch with 3 channels, got shape {list(array.shape)}")
    scaled = np.rint(np.clip(array.astype(np.float32, copy=False), 0.0, 1.0) * np.float32(255.0))
    return np.ascontiguousarray(scaled.astype(np.uint8).transpose(0, 2, 3, 1))


def request_draw(request_id: str) -> float:
    """A fixed pseudo-uniform number in [0, 1) per request id."""
    digest = hashlib.blake2b(request_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def chunk_name(flushed_at: float, pid: int, token: str, sequence: int) -> str:
    """Sorts by flush time; the pid, a writer's random token and its sequence keep instances, processes
    and writers apart."""
    return f"{CHUNK_PREFIX}{int(flushed_at * 1e9):020d}-{pid}-{token}-{sequence:06d}{CHUNK_SUFFIX}"


def chunk_files(directory: Path) -> list[Path]:
    """A model's complete chunks, oldest first (temp files, being written, start with a dot)."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir()
                  if p.name.startswith(CHUNK_PREFIX) and p.name.endswith(CHUNK_SUFFIX) and p.is_file())


@dataclass(frozen=True)
class CapturedCrops:
    images: np.ndarray  # uint8 [N,H,W,3]
    arrival: np.ndarray  # float64 [N], server-side seconds since the epoch
    request_id: np.ndarray  # str [N]
    prediction: np.ndarray  # int64 [N], served top-1 class
    version: np.ndarray  # int64 [N], model version that answered

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def validate(self) -> None:
        im = self.images
        if im.dtype != np.uint8 or im.ndim != 4 or im.shape[-1] != 3:
            raise CaptureFileError(f"images must be uint8 [N,H,W,3], got {im.dtype} {list(im.shape)}")
        n = im.shape[0]
        for name, kinds in (("arrival", "f"), ("request_id", "U"), ("prediction", "iu"), ("version", "iu")):
            array = getattr(self, name)
            if array.shape != (n,) or array.dtype.kind not in kinds:
                raise CaptureFileError(f"{name} must be [{n}] of kind {kinds}, got {array.dtype} {list(array.shape)}")
        if n and not np.all(np.isfinite(self.arrival)):
            raise CaptureFileError("arrival times must be finite")

    def take(self, index: np.ndarray) -> CapturedCrops:
        return CapturedCrops(self.images[index], self.arrival[index], self.request_id[index],
                             self.prediction[index], self.version[index])


def read_chunk(path: Path) -> CapturedCrops:
    """A chunk's crops; any way the file can be wrong is a CaptureFileError naming it."""
    import zipfile
    import zlib

    try:
        with open(path, "rb") as fh:  # ours to close (np.load leaks its own on a broken zip)
            npz = np.load(fh, allow_pickle=False)
            if not isinstance(npz, np.lib.npyio.NpzFile):
                raise CaptureFileError(f"a single {type(npz).__name__}, not an .npz of arrays")
            missing = [n for n in CHUNK_ARRAYS if n not in npz.files]
            if missing:
                raise CaptureFileError(f"missing arrays {missing}")
            crops = CapturedCrops(**{n: npz[n] for n in CHUNK_ARRAYS})
        crops.validate()
        return crops
    except CaptureFileError as exc:
        raise CaptureFileError(f"{path}: {exc}") from exc
    except (zipfile.BadZipFile, zlib.error, OSError, ValueError, EOFError, TypeError) as exc:
        raise CaptureFileError(f"{path}: not a readable capture chunk ({type(exc).__name__}: {exc})") from exc


# ------------------------------------------------------------------------------------------- counters
@dataclass
class CaptureCounts:
    samples: int = 0  # crops written to chunk files
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_REASONS, 0))
    errors: int = 0  # errors caught (each logged, rate-limited)

    def copy(self) -> CaptureCounts:
        return CaptureCounts(self.samples, dict(self.dropped), self.errors)

    def minus(self, earlier: CaptureCounts) -> CaptureCounts:
        return CaptureCounts(self.samples - earlier.samples,
                             {r: self.dropped[r] - earlier.dropped.get(r, 0) for r in self.dropped},
                             self.errors - earlier.errors)


@dataclass
class _Pending:
    images: list[np.ndarray] = field(default_factory=list)
    arrival: list[np.ndarray] = field(default_factory=list)
    request_id: list[np.ndarray] = field(default_factory=list)
    prediction: list[np.ndarray] = field(default_factory=list)
    version: list[np.ndarray] = field(default_factory=list)
    crops: int = 0
    bytes: int = 0


# --------------------------------------------------------------------------------------------- writer
class CaptureWriter:
    def __init__(self, directory: str | os.PathLike[str], rate: float, budget_bytes: int,
                 chunk_seconds: float = DEFAULT_CHUNK_SECONDS, *, backlog_bytes: int | None = None,
                 clock: Callable[[], float] = time.time, seed: int | None = None) -> None:
        """`backlog_bytes` bounds what waits in memory; the counters go to `counts_path` at every flush."""
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate must be in [0, 1], got {rate}")
        if chunk_seconds <= 0:
            raise ValueError(f"chunk_seconds must be > 0, got {chunk_seconds}")
        self.directory = Path(directory)
        self.rate = float(rate)
        self.budget_bytes = int(budget_bytes)
        self.chunk_seconds = float(chunk_seconds)
        self.backlog_bytes = int(backlog_bytes) if backlog_bytes is not None else max(1, min(budget_bytes, 64 * 2**20))
        self.clock = clock
        self._random = random.Random(seed)
        self._lock = threading.Lock()  # the buffer and counters: requests add, the flush thread takes
        self._write_lock = threading.Lock()  # one flush at a time (the thread's and close's)
        self._pending = _Pending()
        self._counts = CaptureCounts()
        self._counts_written: CaptureCounts | None = None
        self._sequence = 0
        self._token = secrets.token_hex(3)
        self._last_error_log = -float("inf")
        self._errors_unlogged = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the request path (never raises) ----------------------------------------------------------
    def wants(self, request_id: str = "") -> bool:
        """Whether this request is in the sample."""
        try:
            if self.rate >= 1.0:
                return True
            if self.rate <= 0.0:
                return False
            draw = request_draw(request_id) if request_id else self._random.random()
            return draw < self.rate
        except Exception as exc:  # never the request's problem
            self.record_error("sampling", exc)
            return False

    def add(self, batch: np.ndarray, predictions: np.ndarray, *, request_id: str = "", arrival: float,
            version: int) -> int:
        """Keep a sampled request's crops (its FP32 NCHW input and served classes); returns how many were
        kept, 0 when dropped (counted by reason)."""
        n = 0
        try:
            n = int(np.shape(batch)[0])
            if n == 0:
                return 0
            images = to_uint8_images(batch)
            classes = np.asarray(predictions, dtype=np.int64).reshape(-1)
            if classes.shape[0] != n:
                raise ValueError(f"{classes.shape[0]} predictions for {n} crops")
            size = images.nbytes + n * (_CROP_OVERHEAD_BYTES + 4 * len(request_id))
            with self._lock:
                # what is on disk makes room at the flush (oldest evicted); only what waits must fit
                if self._pending.bytes + size + _FILE_OVERHEAD_BYTES > self.budget_bytes:
                    self._counts.dropped["budget"] += n
                    return 0
                if self._pending.bytes + size > self.backlog_bytes:
                    self._counts.dropped["backlog"] += n
                    return 0
                pending = self._pending
                pending.images.append(images)
                pending.arrival.append(np.full(n, float(arrival)))
                pending.request_id.append(np.full(n, request_id))
                pending.prediction.append(classes)
                pending.version.append(np.full(n, int(version), dtype=np.int64))
                pending.crops += n
                pending.bytes += size
            return n
        except Exception as exc:
            with self._lock:
                self._counts.dropped["error"] += n
            self.record_error("capturing a request", exc)
            return 0

    # -- chunks ------------------------------------------------------------------------------------
    def flush(self) -> Path | None:
        """Write what is pending as one chunk (None: nothing was, or the write failed: counted)."""
        with self._write_lock:
            with self._lock:
                pending, self._pending = self._pending, _Pending()
            path = None
            if pending.crops and self._make_room(pending.bytes + _FILE_OVERHEAD_BYTES):
                path = self._write(pending)
            elif pending.crops:
                with self._lock:
                    self._counts.dropped["budget"] += pending.crops
            self._write_counts(closed=False)
            return path

    @property
    def counts_path(self) -> Path:
        return self.directory / f"{COUNTS_PREFIX}{os.getpid()}-{self._token}.json"

    def _write_counts(self, closed: bool) -> None:
        counts = self.counts()
        if counts == self._counts_written and not closed:
            return
        try:
            body = json.dumps({"samples": counts.samples, "dropped": counts.dropped, "errors": counts.errors,
                               "closed": closed}).encode()
            self.directory.mkdir(parents=True, exist_ok=True)
            temp = self.directory / f".{self.counts_path.name}.tmp"
            temp.write_bytes(body)
            os.replace(temp, self.counts_path)
            self._counts_written = counts
        except Exception as exc:  # the directory cannot be written: the chunks' errors say so too
            self.record_error(f"writing the counters into {self.directory}", exc)

    def _write(self, pending: _Pending) -> Path | None:
        try:
            crops = CapturedCrops(np.concatenate(pending.images), np.concatenate(pending.arrival),
                                  np.concatenate(pending.request_id), np.concatenate(pending.prediction),
                                  np.concatenate(pending.version))
            self._sequence += 1
            path = self.directory / chunk_name(self.clock(), os.getpid(), self._token, self._sequence)
            _atomic_savez(path, crops)
        except Exception as exc:
            with self._lock:
                self._counts.dropped["error"] += pending.crops
            self.record_error(f"writing a chunk into {self.directory}", exc)
            return None
        with self._lock:
            self._counts.samples += pending.crops
        return path

    def _make_room(self, needed: int) -> bool:
        """Evict the directory's oldest chunks until `needed` more bytes fit the budget; False when they
        cannot (the rest of the directory alone is over it). A chunk gone meanwhile (the controller moved
        it, another writer evicted it) is simply not counted."""
        usage = self._scan_usage()
        if usage + needed <= self.budget_bytes:
            return True
        for path in chunk_files(self.directory):
            try:
                size, crops = path.stat().st_size, _crops_in(path)
                path.unlink()
            except FileNotFoundError:
                continue
            except Exception as exc:
                self.record_error(f"evicting {path}", exc)
                continue
            usage -= size
            with self._lock:
                self._counts.dropped["evicted"] += crops
            if usage + needed <= self.budget_bytes:
                return True
        return False

    def _scan_usage(self) -> int:
        try:
            return sum(entry.stat().st_size for entry in os.scandir(self.directory) if entry.is_file())
        except FileNotFoundError:
            return 0
        except Exception as exc:
            self.record_error(f"measuring {self.directory}", exc)
            return 0

    # -- counters ----------------------------------------------------------------------------------
    def counts(self) -> CaptureCounts:
        with self._lock:
            return self._counts.copy()

    def record_error(self, what: str, exc: BaseException) -> None:
        """Count it; log it at most once a minute (a full disk must not flood the log)."""
        with self._lock:
            self._counts.errors += 1
            now = time.monotonic()
            if now - self._last_error_log < ERROR_LOG_EVERY_S:
                self._errors_unlogged += 1
                return
            unlogged, self._errors_unlogged, self._last_error_log = self._errors_unlogged, 0, now
        more = f" ({unlogged} more errors since the last report)" if unlogged else ""
        log.error("capture: %s failed: %s: %s%s", what, type(exc).__name__, exc, more)

    # -- lifetime ----------------------------------------------------------------------------------
    def start(self) -> CaptureWriter:
        """Flush every chunk_seconds from a daemon thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="ekya-capture-flush", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.chunk_seconds):
            self.flush()

    def close(self) -> None:
        """Stop the thread and write what is pending."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(10.0, 2 * self.chunk_seconds))
            self._thread = None
        self.flush()
        self._write_counts(closed=True)


def _crops_in(path: Path) -> int:
    """How many crops a chunk holds (its small `arrival` array read alone); 0 if it is unreadable."""
    try:
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as npz:
            return int(npz["arrival"].shape[0])
    except FileNotFoundError:
        raise
    except Exception:  # a broken chunk holds no crops the controller could have used
        return 0


def _atomic_savez(path: Path, crops: CapturedCrops) -> None:
    """Temp file (hidden: readers skip dot files) + fsync + rename; never a half-written chunk."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            np.savez(fh, **{name: getattr(crops, name) for name in CHUNK_ARRAYS})
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise


def read_counts(directory: Path) -> list[tuple[Path, CaptureCounts, bool]]:
    """Every writer's counters in `directory`: (file, cumulative counts, whether the writer closed).
    A file that cannot be read (being replaced, foreign) is skipped: the next read has it."""
    found = []
    if not directory.is_dir():
        return found
    for path in sorted(directory.glob(f"{COUNTS_PREFIX}*.json")):
        try:
            data = json.loads(path.read_text())
            dropped = {reason: int(data["dropped"].get(reason, 0)) for reason in DROP_REASONS}
            found.append((path, CaptureCounts(int(data["samples"]), dropped, int(data["errors"])),
                          bool(data.get("closed", False))))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
    return found
