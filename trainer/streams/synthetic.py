"""Synthetic drifting camera streams: deterministic, vectorised, fast enough for tests and demos.

Each camera has its own look (background texture, colour cast, object scale and aspect), and drifts
over time: day/night brightness and colour, weather (fog, sensor noise, blur), occlusion, and its
class mix. Cameras differ in how fast (`drift_speed`) and how much (`drift_magnitude`) they drift.
Objects are tracks over consecutive frames, so skipping frames costs accuracy as on real video.

Time: frame f is at t = f / fps; window w covers frames [w*F, (w+1)*F) with F = fps * window_seconds.
Negative windows are "history" (the conditions at the cycle's start, daytime: the past a bootstrap model
learned from). Conditions cycle with a period of 10 / drift_speed windows, darkest around cycle position
5 / drift_speed. Window w >= 0 sits at cycle position w + start_window: a deployment can start later in
the cycle than the history its models learned from (e.g. at dusk, after a daytime bootstrap).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from trainer.shares import usable_cores
from trainer.streams.base import CLASSES, NUM_CLASSES, WindowData

# Class shapes: primitives in object coordinates (u right, v down, object box = [-1, 1]^2):
# (kind, cu, cv, ru, rv, shade). kind 0 = rectangle, 1 = ellipse, 2 = ring (inner radius 0.72 r).
# shade > 0 scales the track's body colour; shade 0 is a near-black part (tyres, windows).
# Vehicles share bodies, wheels and windows and the two-wheelers share wheels and a rider, so the
# classes are confusable once blur, fog, darkness and noise wash out the details.
_SHAPES: dict[str, list[tuple[int, float, float, float, float, float]]] = {
    "person": [(1, 0.0, 0.2, 0.30, 0.62, 1.0), (1, 0.0, -0.68, 0.19, 0.2, 0.8),
               (0, 0.0, 0.78, 0.2, 0.2, 0.45)],
    "car": [(0, 0.0, 0.25, 0.95, 0.28, 1.0), (0, -0.05, -0.12, 0.52, 0.18, 1.0),
            (0, -0.05, -0.12, 0.42, 0.12, 0.0), (1, -0.6, 0.55, 0.17, 0.17, 0.0),
            (1, 0.6, 0.55, 0.17, 0.17, 0.0)],
    "truck": [(0, -0.25, -0.05, 0.7, 0.55, 1.25), (0, 0.68, 0.15, 0.27, 0.35, 1.0),
              (0, 0.75, 0.0, 0.15, 0.12, 0.0), (1, -0.6, 0.6, 0.16, 0.16, 0.0),
              (1, 0.65, 0.6, 0.16, 0.16, 0.0)],
    "bus": [(0, 0.0, 0.05, 0.97, 0.5, 1.0), (0, -0.65, -0.15, 0.15, 0.13, 0.0),
            (0, -0.22, -0.15, 0.15, 0.13, 0.0), (0, 0.22, -0.15, 0.15, 0.13, 0.0),
            (0, 0.65, -0.15, 0.15, 0.13, 0.0), (1, -0.65, 0.6, 0.16, 0.16, 0.0),
            (1, 0.65, 0.6, 0.16, 0.16, 0.0)],
    "bicycle": [(2, -0.55, 0.42, 0.35, 0.35, 0.0), (2, 0.55, 0.42, 0.35, 0.35, 0.0),
                (0, 0.0, 0.15, 0.45, 0.06, 1.0), (1, 0.0, -0.45, 0.18, 0.4, 0.7)],
    "motorcycle": [(1, -0.6, 0.45, 0.3, 0.3, 0.0), (1, 0.6, 0.45, 0.3, 0.3, 0.0),
                   (1, 0.0, 0.1, 0.55, 0.25, 1.0), (1, -0.05, -0.42, 0.2, 0.38, 0.7)],
}
assert tuple(_SHAPES) == CLASSES
_MAX_PARTS = max(len(p) for p in _SHAPES.values())
_DARK = np.float32(0.07)
_PERIOD_WINDOWS = 10.0  # condition cycle length at drift_speed 1


class CameraStreamSpec(BaseModel):
    """One synthetic camera. Everything about its look and drift follows from `seed` and these knobs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    seed: int = 0
    crop_size: int = Field(64, ge=16, le=256)
    fps: float = Field(1.0, gt=0)
    window_seconds: float = Field(200.0, gt=0)
    objects_per_frame: float = Field(3.0, gt=0)
    mean_track_frames: float = Field(5.0, ge=1.0)
    drift_speed: float = Field(1.0, ge=0.0, description="condition cycles per 10 windows")
    drift_magnitude: float = Field(1.0, ge=0.0, le=1.5, description="0 = static camera")
    class_mix_drift: float = Field(1.0, ge=0.0)
    start_window: float = Field(0.0, ge=0.0, description="cycle position of window 0, in windows")

    @property
    def frames_per_window(self) -> int:
        return max(1, round(self.fps * self.window_seconds))


def default_cameras(n: int = 4, seed: int = 0, **overrides: Any) -> list[CameraStreamSpec]:
    """`n` cameras that differ in drift speed and magnitude (the demo's and the benchmarks' set)."""
    speeds = (1.0, 0.6, 1.4, 0.8, 1.2, 0.5, 1.0, 0.9)
    mags = (1.0, 0.8, 1.1, 0.6, 0.9, 1.0, 0.7, 1.2)
    return [CameraStreamSpec(name=f"cam{i}", seed=seed * 1000 + i, drift_speed=speeds[i % 8],
                             drift_magnitude=mags[i % 8], **overrides) for i in range(n)]


# ---- per-camera constants ----------------------------------------------------------------------
def _rng(*key: Any) -> np.random.Generator:
    digest = hashlib.blake2b(repr(key).encode(), digest_size=8).digest()
    return np.random.default_rng(int.from_bytes(digest, "little"))


class _Look:
    """A camera's fixed appearance: background texture, colour cast, object scale, weather habits."""

    def __init__(self, seed: int, size: int) -> None:
        r = _rng("look", seed)
        tex = 3 * size
        yy, xx = np.mgrid[0:tex, 0:tex].astype(np.float32) / tex
        base = r.uniform(0.25, 0.6, 3).astype(np.float32)
        bg = np.broadcast_to(base, (tex, tex, 3)).copy()
        bg += (r.uniform(-0.25, 0.25) * yy)[..., None]  # ground gradient
        for _ in range(4):  # low-frequency texture (buildings, grass, shadows)
            fx, fy = r.uniform(1, 6, 2)
            ph = r.uniform(0, 2 * np.pi)
            amp = r.uniform(0.03, 0.1, 3).astype(np.float32)
            bg += np.sin(2 * np.pi * (fx * xx + fy * yy) + ph)[..., None] * amp
        angle = r.uniform(-0.6, 0.6)  # lane markings
        stripes = np.sin(2 * np.pi * r.uniform(3, 8) * (np.cos(angle) * xx + np.sin(angle) * yy)) > 0.9
        bg[stripes] = np.float32(r.uniform(0.7, 0.9))
        self.background = np.clip(bg, 0, 1).astype(np.float32)
        self.cast = r.uniform(0.8, 1.2, 3).astype(np.float32)
        self.scale = float(r.uniform(0.75, 0.95))  # object size in the crop (viewpoint / detector margin)
        self.aspect = float(r.uniform(0.8, 1.2))  # vertical squash from the camera angle
        self.fog_amp = float(r.uniform(0.25, 0.55))
        self.fog_rate = float(r.uniform(0.7, 1.5))
        self.rain_amp = float(r.uniform(0.0, 0.05))
        self.occlusion = float(r.uniform(0.05, 0.2))
        self.mix_base = r.normal(0, 0.4, NUM_CLASSES)
        self.mix_phase = r.uniform(0, 2 * np.pi, NUM_CLASSES)


@functools.lru_cache(maxsize=64)
def _look(seed: int, size: int) -> _Look:
    return _Look(seed, size)


# ---- conditions over time ----------------------------------------------------------------------
def _cycle_position(spec: CameraStreamSpec, window_pos: np.ndarray | float) -> np.ndarray:
    """Position in the condition cycle: history (w < 0) is the cycle's start, window w is w + start_window."""
    w = np.asarray(window_pos, dtype=np.float64)
    return np.where(w < 0, 0.0, w + spec.start_window)


def conditions(spec: CameraStreamSpec, window_pos: np.ndarray) -> dict[str, np.ndarray]:
    """Scene conditions at fractional window positions (history, w < 0, looks like the cycle's start)."""
    look = _look(spec.seed, spec.crop_size)
    w = _cycle_position(spec, window_pos)
    phase = spec.drift_speed * w / _PERIOD_WINDOWS
    m = spec.drift_magnitude
    night = m * 0.5 * (1 - np.cos(2 * np.pi * phase))
    fog = np.clip(m * look.fog_amp * 0.5 * (1 - np.cos(2 * np.pi * phase * look.fog_rate)), 0, 0.7)
    return {
        "night": np.clip(night, 0, 1),
        "fog": fog,
        "noise": 0.02 + 0.05 * np.clip(night, 0, 1.2) + m * look.rain_amp * (fog > 0.2),
        "blur": np.clip(fog * 2.2 + 0.3 * night, 0, 2.4),
        "occlusion": np.clip(look.occlusion + 0.25 * m * np.sin(np.pi * phase) ** 2, 0, 0.6),
        "phase": phase,
    }


def class_mix(spec: CameraStreamSpec, window_pos: float) -> np.ndarray:
    """The camera's class probabilities at a window position (drifts with the same clock)."""
    look = _look(spec.seed, spec.crop_size)
    phase = spec.drift_speed * float(_cycle_position(spec, window_pos)) / _PERIOD_WINDOWS
    logits = look.mix_base + 0.8 * spec.class_mix_drift * np.sin(2 * np.pi * phase + look.mix_phase)
    p = np.exp(logits - logits.max())
    return p / p.sum()


# ---- tracks -------------------------------------------------------------------------------------
def _tracks(spec: CameraStreamSpec, window: int, salt: int) -> dict[str, np.ndarray]:
    """Per-track attributes for the tracks starting in `window` (clipped to the window's end)."""
    r = _rng("tracks", spec.seed, window, salt)
    fpw = spec.frames_per_window
    n_tracks = max(1, round(spec.objects_per_frame * fpw / spec.mean_track_frames))
    start = r.integers(0, fpw, n_tracks)
    dur = np.minimum(r.geometric(1.0 / spec.mean_track_frames, n_tracks), fpw - start)
    return {
        "cls": r.choice(NUM_CLASSES, n_tracks, p=class_mix(spec, window + 0.5)),
        "start": start + window * fpw, "dur": dur,
        "colour": r.uniform(0.12, 0.95, (n_tracks, 3)).astype(np.float32),
        "flip": r.random(n_tracks) < 0.5,
        "scale": r.uniform(0.85, 1.15, n_tracks), "aspect": r.uniform(0.85, 1.15, n_tracks),
        "cu": r.uniform(-0.1, 0.1, n_tracks), "cv": r.uniform(-0.1, 0.1, n_tracks),
        "vu": r.uniform(-0.04, 0.04, n_tracks),
        "part_jit": r.uniform(-1, 1, (n_tracks, _MAX_PARTS, 4)).astype(np.float32),
        "bg": r.integers(0, 2 * spec.crop_size, (n_tracks, 2)),
    }


def generate_window(spec: CameraStreamSpec, window: int, salt: int = 0, max_crops: int | None = None,
                    render_pixels: bool = True) -> WindowData:
    """All object crops of one camera in one window, with true labels and track ids.

    `salt` gives an independent draw of tracks under the same conditions (e.g. the golden model's
    training data, so it never trains on the exact crops it will later label). `max_crops` renders only
    a uniform sample of that many crops (frame order kept): rendering is the cost, and training sets
    (bootstrap, golden) need a sample, not every crop of a long window at 224 px. `render_pixels=False`
    gives the window's tracks, labels and frames with empty [N,0,0,3] images (the inference profile needs
    no pixels).
    """
    tr = _tracks(spec, window, salt)
    per = np.repeat(np.arange(len(tr["dur"])), tr["dur"])
    offset = np.arange(len(per)) - np.repeat(np.cumsum(tr["dur"]) - tr["dur"], tr["dur"])
    frame = tr["start"][per] + offset
    order = np.argsort(frame, kind="stable")
    if max_crops is not None and max_crops < len(order):
        pick = _rng("sample", spec.seed, window, salt).choice(len(order), size=max(1, max_crops), replace=False)
        order = order[np.sort(pick)]
    per, offset, frame = per[order], offset[order], frame[order]
    t = frame / spec.fps
    if render_pixels:
        r = _rng("frames", spec.seed, window, salt)
        images = render(spec, {k: v[per] for k, v in tr.items()}, offset, frame / spec.frames_per_window, r)
    else:
        images = np.zeros((len(per), 0, 0, 3), np.uint8)
    track_ids = (np.int64(window) * 1_000_000 + salt * 100_000 + per).astype(np.int64)
    return WindowData(images=images, labels=tr["cls"][per], track_ids=track_ids, frame_index=frame,
                      timestamps=t, camera=spec.name, window=window,
                      meta={"source": "synthetic", "seed": spec.seed, "salt": salt})


def generate_windows(spec: CameraStreamSpec, windows: list[int] | range, salt: int = 0) -> list[WindowData]:
    return [generate_window(spec, w, salt) for w in windows]


WindowTask = tuple[CameraStreamSpec, int, int, "int | None"]  # spec, window, salt, max_crops
_PARALLEL_PIXELS = 50_000_000  # below this (about 1,000 crops at 224 px) worker start-up costs more than it saves


def generate_many(tasks: list[WindowTask], on_done: Callable[[int], None] | None = None) -> list[WindowData]:
    """generate_window for each (spec, window, salt, max_crops), in that order; spread over the machine's
    cores when the crops are many and large (bootstrapping at 224 px), in-process otherwise.
    The result is the same either way: every window is generated from its own seeds. on_done gets the
    index of each task as its window is made, in order (for progress)."""
    cores = usable_cores()
    pixels = sum((m if m is not None else t.objects_per_frame * t.frames_per_window) * t.crop_size ** 2
                 for t, _, _, m in tasks)
    workers = min(len(tasks), cores - 1)
    if workers < 2 or pixels < _PARALLEL_PIXELS:
        return _collect((generate_window(spec, w, salt, m) for spec, w, salt, m in tasks), on_done)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # spawn: the caller may hold CUDA or thread pools that a forked child must not inherit
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        return _collect(pool.map(generate_window, *zip(*tasks)), on_done)


def _collect(windows: Iterable[WindowData], on_done: Callable[[int], None] | None) -> list[WindowData]:
    out = []
    for index, window in enumerate(windows):
        out.append(window)
        if on_done is not None:
            on_done(index)
    return out


# ---- rendering ----------------------------------------------------------------------------------
def render(spec: CameraStreamSpec, obj: dict[str, np.ndarray], offset: np.ndarray, window_pos: np.ndarray,
           rng: np.random.Generator) -> np.ndarray:
    """Render crops [N,S,S,3] uint8 for per-crop object attributes at per-crop window positions."""
    s = spec.crop_size
    n = len(offset)
    if n == 0:
        return np.zeros((0, s, s, 3), np.uint8)
    look = _look(spec.seed, s)
    grid = (np.arange(s, dtype=np.float32) + 0.5) / s * 2 - 1
    scale = (look.scale * obj["scale"] * (1 + 0.01 * offset)).astype(np.float32)
    su, sv = scale, scale * np.float32(look.aspect) * obj["aspect"].astype(np.float32)
    cu = (obj["cu"] + obj["vu"] * offset).astype(np.float32)
    cv = obj["cv"].astype(np.float32)
    flip = np.where(obj["flip"], -1, 1).astype(np.float32)
    u = (grid[None, None, :] - cu[:, None, None]) / su[:, None, None] * flip[:, None, None]  # [n,1,S]
    v = (grid[None, :, None] - cv[:, None, None]) / sv[:, None, None]  # [n,S,1]

    parts = np.zeros((n, s, s), np.int8)  # 0 = background, k = part k (later parts on top)
    shades = np.zeros((n, _MAX_PARTS + 1), np.float32)
    for c, name in enumerate(CLASSES):
        idx = np.flatnonzero(obj["cls"] == c)
        if idx.size == 0:
            continue
        uu, vv, jit = u[idx], v[idx], obj["part_jit"][idx]
        sub = np.zeros((idx.size, s, s), np.int8)
        for k, (kind, pu, pv, ru, rv, shade) in enumerate(_SHAPES[name]):
            j = jit[:, k]
            du = (uu - (pu + 0.12 * j[:, 0, None, None])) / (ru * (1 + 0.3 * j[:, 2, None, None]))
            dv = (vv - (pv + 0.12 * j[:, 1, None, None])) / (rv * (1 + 0.3 * j[:, 3, None, None]))
            if kind == 0:
                mask = (np.abs(du) <= 1) & (np.abs(dv) <= 1)
            else:
                rr = du * du + dv * dv
                mask = (rr <= 1) & (rr >= 0.52) if kind == 2 else rr <= 1
            sub[mask] = k + 1
            shades[idx, k + 1] = shade
        parts[idx] = sub

    body = obj["colour"][:, None, :] * shades[:, :, None]  # [n, P+1, 3]
    body = np.where(shades[:, :, None] == 0, _DARK, np.minimum(body, 1.0)).astype(np.float32)
    img = np.take_along_axis(body, parts.reshape(n, -1, 1).astype(np.intp), axis=1).reshape(n, s, s, 3)
    views = np.lib.stride_tricks.sliding_window_view(look.background, (s, s), axis=(0, 1))
    bg = views[obj["bg"][:, 0], obj["bg"][:, 1]].transpose(0, 2, 3, 1)  # [n,S,S,3]
    img = np.where((parts > 0)[..., None], img, bg)

    cond = conditions(spec, window_pos)
    _occlude(img, cond["occlusion"], rng)
    _blur(img, cond["blur"] + rng.uniform(-0.5, 0.5, n))
    night = cond["night"].astype(np.float32)[:, None, None, None]
    # Colour: the camera's cast, dimmed and shifted to blue at night.
    tint = look.cast[None, None, None, :] * (1 - 0.6 * night) * np.array([0.9, 0.95, 1.15], np.float32) ** night
    img *= tint
    fog = cond["fog"].astype(np.float32)[:, None, None, None]
    img += fog * (np.float32(0.75) * (1 - 0.7 * night) - img)
    sigma = cond["noise"].astype(np.float32)[:, None, None, None]
    img += rng.standard_normal(img.shape, dtype=np.float32) * sigma
    np.clip(img, 0, 1, out=img)
    return (img * 255 + 0.5).astype(np.uint8)


def _occlude(img: np.ndarray, prob: np.ndarray, rng: np.random.Generator) -> None:
    """Cover part of some crops with a flat-coloured rectangle from one edge (another object, a pole)."""
    n, s = img.shape[:2]
    hit = np.flatnonzero(rng.random(n) < prob)
    if hit.size == 0:
        return
    k = hit.size
    side = rng.integers(0, 4, k)
    depth = (rng.uniform(0.2, 0.45, k) * s).astype(int)
    lo = rng.integers(0, s // 2, k)
    hi = lo + (rng.uniform(0.4, 1.0, k) * s).astype(int)
    a = np.arange(s)
    along = (a[None, :] >= lo[:, None]) & (a[None, :] < hi[:, None])  # [k,S]
    into = np.where(side[:, None] % 2 == 0, a[None, :] < depth[:, None], a[None, :] >= s - depth[:, None])
    rows_along = side >= 2  # sides 0/1: band over rows (top/bottom), 2/3: over columns (left/right)
    m_rows = np.where(rows_along[:, None], along, into)  # which rows are covered
    m_cols = np.where(rows_along[:, None], into, along)
    mask = m_rows[:, :, None] & m_cols[:, None, :]
    colour = rng.uniform(0.05, 0.9, (k, 1, 1, 3)).astype(np.float32)
    img[hit] = np.where(mask[..., None], colour, img[hit])


def _blur(img: np.ndarray, level: np.ndarray) -> None:
    """Box blur in place, radius round(level) per crop (fog and rain soften edges)."""
    from scipy.ndimage import uniform_filter

    radius = np.clip(np.round(level), 0, 3).astype(int)
    for r in np.unique(radius):
        if r == 0:
            continue
        idx = np.flatnonzero(radius == r)
        img[idx] = uniform_filter(img[idx], size=(1, 2 * r + 1, 2 * r + 1, 1), mode="nearest")


def all_conditions_data(cameras: list[CameraStreamSpec], crops: int, salt: int = 1,
                        on_camera: Callable[[CameraStreamSpec], None] | None = None) -> WindowData:
    """About `crops` crops spread over a whole condition cycle of every camera (the golden model's
    training set: "all conditions"). Uses a different salt, so not the crops of the live windows.
    on_camera gets each camera as its last window is made (for progress)."""
    from trainer.streams.base import concat

    if not cameras:
        raise ValueError("need at least one camera")
    tasks: list[WindowTask] = []
    camera_done_at: dict[int, CameraStreamSpec] = {}  # the index of each camera's last task
    per_cam = max(1, crops // len(cameras))
    for spec in cameras:
        period = _PERIOD_WINDOWS / spec.drift_speed if spec.drift_speed > 0 else 1.0
        n_win = 10
        wins = sorted({round(i * period / n_win) for i in range(n_win)})
        per_win = max(1, per_cam // len(wins))
        tasks.extend((spec, w, salt, per_win) for w in wins)
        camera_done_at[len(tasks) - 1] = spec

    def on_done(index: int) -> None:
        if on_camera is not None and index in camera_done_at:
            on_camera(camera_done_at[index])
    return concat(generate_many(tasks, on_done), camera="all")
