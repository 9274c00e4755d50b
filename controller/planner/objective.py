"""The window objective, evaluated event by event in closed form.

Per camera, accuracy at time t is base(t) x scale(inference share at t); base switches from the
serving model's accuracy to the option's end accuracy when its retraining job completes: the camera's
fixed latency (start-up, export, load: wall seconds at any share) plus its GPU work at the job's share
after the job starts. Shares are constant between completions, so the time average is a sum over those
intervals (no time stepping).
When a job completes, its share is redistributed either by the original's rule (split equally over the
still running training jobs and all inference jobs) or by a re-plan callback (the thief re-run).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from .profiles import EPS, CameraAllocation, InferenceProfile, Problem, RetrainOption, ThroughputCurve


def equal_split(freed: float, running_jobs: int, inference_jobs: int) -> float:
    """The original's rule for a completed job's share: split equally over the still running training
    jobs and all inference jobs; the share each of them gains."""
    jobs = running_jobs + inference_jobs
    return freed / jobs if freed > 0 and jobs > 0 else 0.0


@dataclass(frozen=True)
class CameraStatus:
    """What a re-plan sees about one camera when a job completes."""

    name: str
    accuracy: float  # the serving model's accuracy now
    running: str | None  # config of a job still running
    progress: float  # fraction of the running job's work done (actual)
    finished: bool  # this camera's retraining finished in this window
    started: bool  # a job was started for this camera in this window (finished or not)


# (elapsed seconds, statuses) -> new allocation for every camera (same camera order)
ReplanFn = Callable[[float, tuple[CameraStatus, ...]], Sequence[CameraAllocation]]


@dataclass(frozen=True)
class Segment:
    """An interval with constant shares."""

    t0: float
    t1: float
    inference_shares: tuple[float, ...]
    training_shares: tuple[float, ...]
    accuracies: tuple[float, ...]


@dataclass(frozen=True)
class WindowOutcome:
    cameras: tuple[str, ...]
    accuracies: tuple[float, ...]  # time average over the window, per camera
    completion_times: tuple[float | None, ...]
    segments: tuple[Segment, ...] = field(default=())

    @property
    def mean_accuracy(self) -> float:
        return float(np.mean(self.accuracies)) if self.accuracies else 0.0

    def by_camera(self) -> dict[str, float]:
        return dict(zip(self.cameras, self.accuracies))


def camera_accuracy(base: float, scale: float, end: float, train_time: float, window: float) -> float:
    """One camera's window accuracy with constant shares (no redistribution)."""
    if window <= 0:
        return base * scale
    if train_time >= window:
        return base * scale
    return scale * (base * train_time + end * (window - train_time)) / window


def evaluate(
    problem: Problem,
    allocations: Sequence[CameraAllocation],
    replan: ReplanFn | None = None,
    actual: Mapping[str, Mapping[str, RetrainOption]] | None = None,
    record: bool = False,
) -> WindowOutcome:
    """Exact window accuracy of an allocation.

    `actual` (camera -> config -> option) is what really executes; by default the problem's options.
    Without `replan`, completed shares are redistributed by the original's equal-split rule.
    """
    cams = problem.cameras
    n = len(cams)
    T = float(problem.window)
    prof, thr = problem.inference, problem.throughput
    execd: dict[str, Mapping[str, RetrainOption]] = (
        {c.name: {o.config: o for o in c.options} for c in cams} if actual is None else dict(actual)
    )
    alloc = {a.camera: a for a in allocations}
    base = np.array([c.accuracy for c in cams], dtype=float)
    inf = np.zeros(n)
    tr = np.zeros(n)
    end = base.copy()
    work = np.zeros(n)  # remaining actual GPU-seconds
    latency = problem.latencies()
    delay = np.zeros(n)  # remaining fixed wall seconds of running jobs
    total = np.ones(n)
    running = np.zeros(n, dtype=bool)
    started = np.zeros(n, dtype=bool)
    finished = np.zeros(n, dtype=bool)
    config: list[str | None] = [None] * n
    done_at: list[float | None] = [None] * n

    def apply(allocs: Mapping[str, CameraAllocation], t_now: float) -> float:
        """Set shares and (re)start jobs; return the training share left idle (no job to run)."""
        idle = 0.0
        for k, c in enumerate(cams):
            a = allocs.get(c.name)
            if a is None:
                inf[k] = tr[k] = 0.0
                continue
            inf[k] = max(a.inference_share, 0.0)
            tr[k] = max(a.training_share, 0.0)
            if finished[k]:
                idle += tr[k]
                tr[k] = 0.0
                continue
            if running[k] and a.config == config[k]:
                continue
            if running[k]:  # re-plan switched or cancelled the job: its progress is lost
                running[k] = False
            opt = execd.get(c.name, {}).get(a.config) if a.config is not None else None
            if opt is None or t_now >= T:
                idle += tr[k]
                tr[k] = 0.0
                config[k] = None
                continue
            config[k] = a.config
            running[k] = started[k] = True
            end[k] = opt.end_accuracy
            work[k] = total[k] = max(opt.gpu_seconds, 0.0)
            delay[k] = latency[k]
        return idle

    def split(freed: float) -> None:
        bonus = equal_split(freed, int(running.sum()), n)
        inf[:] += bonus
        tr[running] += bonus

    split(apply(alloc, 0.0))
    integral = np.zeros(n)
    segments: list[Segment] = []
    t = 0.0
    for _ in range(4 * n + 8):
        if t >= T - EPS:
            break
        rates = thr.array(tr) if running.any() else np.zeros(n)
        ttf = _time_to_finish(running, work, rates, delay)
        nxt = float(ttf.min()) if n else math.inf
        dt = min(nxt, T - t)
        scale = prof.scale_array(inf)
        inst = base * scale
        integral += inst * dt
        if record:
            segments.append(Segment(t, t + dt, tuple(inf.tolist()), tuple(tr.tolist()), tuple(inst.tolist())))
        _advance(running, work, delay, rates, dt)
        t += dt
        fin = running & (ttf <= dt + EPS * max(1.0, dt))
        if not fin.any():
            continue
        base[fin] = end[fin]
        running[fin] = False
        finished[fin] = True
        for k in np.flatnonzero(fin):
            done_at[k] = t
        freed = float(tr[fin].sum())
        tr[fin] = 0.0
        if t >= T - EPS:
            break
        if replan is None:
            split(freed)
        else:
            statuses = tuple(
                CameraStatus(c.name, float(base[k]), config[k] if running[k] else None,
                             float(1.0 - work[k] / total[k]) if running[k] and total[k] > 0 else 0.0,
                             bool(finished[k]), bool(started[k]))
                for k, c in enumerate(cams)
            )
            new = {a.camera: a for a in replan(t, statuses)}
            split(apply(new, t))
    accs = integral / T if T > 0 else base * prof.scale_array(inf)
    return WindowOutcome(tuple(c.name for c in cams), tuple(float(a) for a in accs), tuple(done_at),
                         tuple(segments))


class FastEvaluator:
    """The exact objective with the equal-split rule, specialised for search (no records, no re-plan).

    Options are given per camera as (end accuracy, gpu_seconds); a camera without a job passes None.
    """

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        self.base0 = np.array([c.accuracy for c in problem.cameras], dtype=float)
        self.latency = problem.latencies()
        self.n = len(problem.cameras)

    def mean(self, inf: np.ndarray, tr: np.ndarray, end: np.ndarray, work: np.ndarray,
             has_job: np.ndarray) -> float:
        """Mean window accuracy. inf/tr shares, end accuracies, work GPU-seconds, has_job bool mask."""
        p = self.problem
        n, T = self.n, float(p.window)
        if n == 0:
            return 0.0
        thr, prof = p.throughput, p.inference
        tr = np.asarray(tr, dtype=float).copy()
        inf = np.asarray(inf, dtype=float).copy()
        running = np.asarray(has_job, dtype=bool).copy()
        idle = float(tr[~running].sum())
        tr[~running] = 0.0
        if idle > 0:
            k = int(running.sum()) + n
            inf += idle / k
            tr[running] += idle / k
        base = self.base0.copy()
        if T <= 0:  # no time left: the instantaneous accuracy (as evaluate() reports it)
            return float(np.dot(base, prof.scale_array(inf))) / n
        work = np.asarray(work, dtype=float).copy()
        delay = np.where(running, self.latency, 0.0)
        integral = 0.0
        t = 0.0
        while t < T - EPS:
            if running.any():
                rates = thr.array(tr)
                ttf = _time_to_finish(running, work, rates, delay)
                nxt = float(ttf.min())
            else:
                nxt = math.inf
            dt = min(nxt, T - t)
            integral += float(np.dot(base, prof.scale_array(inf))) * dt
            t += dt
            if nxt == math.inf or t >= T - EPS:
                break
            _advance(running, work, delay, rates, dt)
            fin = running & (ttf <= dt + EPS * max(1.0, dt))
            base[fin] = end[fin]
            running = running & ~fin
            freed = float(tr[fin].sum())
            tr[fin] = 0.0
            k = int(running.sum()) + n
            inf += freed / k
            tr[running] += freed / k
        return integral / (T * n)


def _time_to_finish(running: np.ndarray, work: np.ndarray, rates: np.ndarray, delay: np.ndarray) -> np.ndarray:
    """Wall seconds until each running job completes: its fixed delay left, then its work at its rate."""
    ttf = np.divide(work, rates, out=np.full(work.shape, np.inf), where=running & (rates > 0))
    ttf[running & (work <= 0)] = 0.0
    return ttf + np.where(running, delay, 0.0)


def _advance(running: np.ndarray, work: np.ndarray, delay: np.ndarray, rates: np.ndarray, dt: float) -> None:
    """Advance running jobs by dt wall seconds in place: the fixed delay is spent first, then work."""
    spent = np.minimum(delay, dt)
    work[running] -= rates[running] * (dt - spent[running])
    delay -= spent


def throughput_time(gpu_seconds: float, share: float, curve: ThroughputCurve) -> float:
    """Wall seconds a job of gpu_seconds takes at a share (inf when the share is 0)."""
    r = curve(share)
    return gpu_seconds / r if r > 0 else math.inf


def scale_of(profile: InferenceProfile, share: float) -> float:
    return profile.scale(share)


def batch_mean(problem: Problem, inf: np.ndarray, tr: np.ndarray, end: np.ndarray, work: np.ndarray,
               has_job: np.ndarray) -> np.ndarray:
    """FastEvaluator.mean for M candidate allocations at once: arrays (M, N) -> (M,).

    Rows whose window is over (or with no job left running) leave the working set, so each event step
    only touches the rows still changing."""
    n = len(problem.cameras)
    T = float(problem.window)
    m = inf.shape[0]
    if n == 0 or m == 0:
        return np.zeros(m)
    thr, prof = problem.throughput, problem.inference
    linear = thr.is_linear
    scale = _scale_fn(prof)
    base = np.broadcast_to(np.array([c.accuracy for c in problem.cameras], dtype=float), (m, n)).copy()
    end = np.asarray(end, dtype=float)
    running = np.asarray(has_job, dtype=bool).copy()
    tr_in = np.asarray(tr, dtype=float)
    idle = np.where(running, 0.0, tr_in).sum(axis=1)
    share0 = idle / (running.sum(axis=1) + n)
    inf = np.asarray(inf, dtype=float) + share0[:, None]
    tr = np.where(running, tr_in + share0[:, None], 0.0)
    work = np.asarray(work, dtype=float).copy()
    delay = np.where(running, problem.latencies()[None, :], 0.0)
    out = np.zeros(m)
    integral = np.zeros(m)
    t = np.zeros(m)
    rows = np.arange(m)
    inf_t = np.inf
    if T <= 0:  # no time left: the instantaneous accuracy (as evaluate() reports it)
        return (base * prof.scale_array(inf)).sum(axis=1) / n
    with np.errstate(divide="ignore", invalid="ignore"):
        integral, rows = _batch_events(n, T, thr, linear, scale, base, end, running, inf, tr, work, delay, out,
                                       integral, t, rows, inf_t)
    if rows.size:
        out[rows] = integral
    return out / (T * n) if T > 0 else out


def _batch_events(n, T, thr, linear, scale, base, end, running, inf, tr, work, delay, out, integral, t, rows,
                  inf_t):
    # a job not running has infinite work left and no training share; a running one a positive share.
    # A running job's completion is its fixed delay left plus its work at its rate.
    w = np.where(running, work, inf_t)
    d = delay
    nrun = running.sum(axis=1)
    run = running
    tiny = 1e-300
    for _ in range(n + 1):
        rates = tr if linear else thr.array(tr)
        ttf = w / np.maximum(rates, tiny) + d
        nxt = ttf.min(axis=1)
        dt = np.minimum(nxt, T - t)
        integral += (base * scale(inf)).sum(axis=1) * dt
        t += dt
        fin = (ttf <= (dt + 1e-9)[:, None]) & (t < T - EPS)[:, None]
        going = fin.any(axis=1)
        k = int(going.sum())
        if k == 0:
            break
        if k <= 0.7 * len(going):  # many rows have nothing left to happen: set them aside (final values)
            stop = ~going
            out[rows[stop]] = integral[stop]
            rows, integral, t, base, end, run, inf, tr, w, d, fin, rates, dt, nrun = (
                x[going] for x in (rows, integral, t, base, end, run, inf, tr, w, d, fin, rates, dt, nrun))
        spent = np.minimum(d, dt[:, None])
        w = w - rates * (dt[:, None] - spent)
        d = d - spent
        w[fin] = inf_t
        base = np.where(fin, end, base)
        run = run & ~fin
        nrun = nrun - fin.sum(axis=1)
        freed = np.where(fin, tr, 0.0).sum(axis=1)
        share = (freed / (nrun + n))[:, None]
        inf = inf + share
        tr = np.where(run, tr + share, 0.0)
    return integral, rows


def _scale_fn(prof: InferenceProfile):
    """A lean scale_array for the common case (linear inference throughput)."""
    if not prof.throughput.is_linear:
        return prof.scale_array
    st, fa, full = prof._st, prof._fa, prof.full_share

    def scale(s: np.ndarray) -> np.ndarray:  # called under errstate(divide="ignore")
        r = full / s
        out = np.interp(r, st, fa, right=0.0)
        return np.where(s >= full - EPS, 1.0, out)

    return scale
