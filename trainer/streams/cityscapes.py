"""Cityscapes -> object-crop manifest: each city is a camera, its frames in sequence order.

Reads gtFine polygon JSONs (ROOT/gtFine/SPLIT/CITY/CITY_SEQ_FRAME_gtFine_polygons.json) and the
matching ROOT/leftImg8bit/SPLIT/CITY/CITY_SEQ_FRAME_leftImg8bit.png, crops each object's polygon
bounding box (with a small margin) for the six classes, and writes OUT/crops/CITY/*.png plus
OUT/manifest.csv (see trainer.streams.folder). Frames are ordered by (sequence, frame) and given
timestamps frame_rank / fps. Cityscapes has no tracks across annotated frames, so every crop is its
own track. Plain json + PIL: cityscapesscripts is not needed for the polygon format.
"""

from __future__ import annotations

import io
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from common.atomic import atomic_write_bytes
from trainer.streams.base import CLASSES
from trainer.streams.folder import write_manifest

# Cityscapes label -> our class. Groups (cargroup, persongroup) and riders are skipped: riders are
# part of the bicycle/motorcycle crops in the original's labelling.
LABEL_MAP: dict[str, str] = {c: c for c in CLASSES}
_NAME = re.compile(r"^(?P<city>[a-z_]+)_(?P<seq>\d+)_(?P<frame>\d+)_gtFine_polygons\.json$")


class CityscapesError(ValueError):
    pass


@dataclass
class PrepareStats:
    cities: int
    frames: int
    crops: int
    skipped_small: int
    manifest: Path


def prepare_cityscapes(root: str | os.PathLike[str], out: str | os.PathLike[str],
                       splits: tuple[str, ...] = ("train", "val"), min_size: int = 16, margin: float = 0.1,
                       fps: float = 1.0) -> PrepareStats:
    from PIL import Image

    root, out = Path(root), Path(out)
    gt = root / "gtFine"
    if not gt.is_dir():
        raise CityscapesError(f"{root} is not a Cityscapes root: {gt} not found")
    rows: list[dict[str, object]] = []
    frames = skipped = 0
    cities: set[str] = set()
    for split in splits:
        split_dir = gt / split
        if not split_dir.is_dir():
            continue
        for city_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            city = city_dir.name
            found = []
            for f in city_dir.iterdir():
                m = _NAME.match(f.name)
                if m:
                    found.append((int(m["seq"]), int(m["frame"]), f, m))
            for rank, (_seq, _frame, f, m) in enumerate(sorted(found, key=lambda t: (t[0], t[1]))):
                stem = f"{m['city']}_{m['seq']}_{m['frame']}"
                img_path = root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png"
                if not img_path.is_file():
                    raise CityscapesError(f"image missing for {f}: expected {img_path}")
                try:
                    ann = json.loads(f.read_text(encoding="utf-8"))
                except ValueError as exc:
                    raise CityscapesError(f"{f}: not valid JSON ({exc})") from exc
                cities.add(city)
                frames += 1
                with Image.open(img_path) as im:
                    image = im.convert("RGB")
                    w, h = image.size
                    for k, obj in enumerate(ann.get("objects", [])):
                        cls = LABEL_MAP.get(str(obj.get("label", "")))
                        poly = obj.get("polygon") or []
                        if cls is None or len(poly) < 3:
                            continue
                        xs, ys = [p[0] for p in poly], [p[1] for p in poly]
                        x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
                        if min(x1 - x0, y1 - y0) < min_size:
                            skipped += 1
                            continue
                        mx, my = margin * (x1 - x0), margin * (y1 - y0)
                        box = (max(0, int(x0 - mx)), max(0, int(y0 - my)), min(w, int(x1 + mx) + 1),
                               min(h, int(y1 + my) + 1))
                        buf = io.BytesIO()
                        image.crop(box).save(buf, format="PNG")
                        rel = Path("crops") / city / f"{stem}_{k:03d}.png"
                        atomic_write_bytes(out / rel, buf.getvalue())
                        rows.append({"path": rel.as_posix(), "camera": city, "timestamp": f"{rank / fps:g}",
                                     "label": cls, "track_id": "", "frame_index": rank})
    if not frames:
        raise CityscapesError(f"no *_gtFine_polygons.json found under {gt} for splits {list(splits)}")
    manifest = write_manifest(out / "manifest.csv", rows)  # last: its presence means complete
    return PrepareStats(len(cities), frames, len(rows), skipped, manifest)
