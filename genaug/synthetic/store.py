"""``gen_dataset/<run>/`` on disk (SPEC §4, §8) and the filter decisions.

Layout::

    images/<class_dir>/<id>.png     kept images (what eval-classifier trains on)
    rejected/<class_dir>/<id>.png   every other generated image (for filter and report)
    manifest.jsonl                  one line per generated image, kept or not
    fidelity.json                   per-class FID/KID before/after filtering, thresholds
    sample.json                     what produced the images (generator, sampler, seed)

Paths are always rebuilt from the class index and the image id (``c0003_0000042``),
never taken from a manifest line, and class names pass through :func:`safe_name`, so
nothing a manifest, checkpoint or folder name says can move a write outside the root.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from PIL import Image

from genaug.config import SampleConfig
from genaug.errors import GenaugError
from genaug.io import atomic_write_bytes, atomic_write_text, class_dirs, read_jsonl, safe_join, safe_name

KEPT, REJECTED = "images", "rejected"
MANIFEST, FIDELITY, HEADER = "manifest.jsonl", "fidelity.json", "sample.json"
ID_RE = re.compile(r"^c(\d{4})_(\d{7})$")
SCORES = ("confidence", "judge_pred", "feature_distance", "nn_distance", "seed")
REASONS = ("judge_disagrees", "low_confidence", "unrealistic", "near_copy", "surplus", "class_short", "class_fid")


def image_id(label: int, index: int) -> str:
    return f"c{label:04d}_{index:07d}"


def image_seed(base: int, label: int, index: int) -> int:
    """Per-image seed: unique for (base seed, class, candidate index); < 2**63."""
    return (base << 40) + (label << 24) + index


class Store:
    def __init__(self, root: str | Path, classes: list[str]):
        self.root = Path(root)
        self.classes = classes
        self.dirs = class_dirs(classes)

    def path(self, label: int, iid: str, kept: bool) -> Path:
        if not ID_RE.match(iid):
            raise GenaugError(f"invalid image id {iid!r} in {self.root / MANIFEST}")
        return safe_join(self.root, KEPT if kept else REJECTED, self.dirs[label], iid + ".png")

    def rel(self, label: int, iid: str, kept: bool) -> str:
        return f"{KEPT if kept else REJECTED}/{self.dirs[label]}/{iid}.png"

    def locate(self, label: int, iid: str) -> Path | None:
        for kept in (True, False):
            p = self.path(label, iid, kept)
            if p.is_file():
                return p
        return None

    def write_png(self, image, label: int, iid: str, kept: bool) -> None:
        """``image``: uint8 (C, H, W) tensor; written atomically."""
        import io

        arr = image.permute(1, 2, 0).numpy()
        buf = io.BytesIO()
        Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr).save(buf, format="PNG")
        atomic_write_bytes(self.path(label, iid, kept), buf.getvalue())

    def read_png(self, label: int, iid: str):
        """uint8 (C, H, W) tensor, or None when missing or unreadable."""
        import numpy as np
        import torch

        p = self.locate(label, iid)
        if p is None:
            return None
        try:
            with Image.open(p) as img:
                img.load()
                arr = np.array(img)
        except (OSError, ValueError, SyntaxError):
            return None
        arr = arr[:, :, None] if arr.ndim == 2 else arr
        return torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)

    def read_rows(self, *, scored: bool = False) -> list[dict]:
        """Manifest rows, last line per id winning; rows with an id or label that does
        not fit this data set (or, with ``scored``, without numeric scores) are dropped;
        a torn last line is dropped by read_jsonl."""
        rows: dict[str, dict] = {}
        for row in read_jsonl(self.root / MANIFEST):
            m = ID_RE.match(str(row.get("id", "")))
            if scored and not all(isinstance(row.get(k), (int, float)) for k in SCORES):
                continue
            if m and int(m.group(1)) == row.get("label") and 0 <= row["label"] < len(self.classes):
                row["index"] = int(m.group(2))
                rows[row["id"]] = row
        return sorted(rows.values(), key=lambda r: (r["label"], r["index"]))

    def write_rows(self, rows: list[dict]) -> bool:
        """Rewrite the manifest atomically; False (and no write) when unchanged."""
        text = "".join(json.dumps(r) + "\n" for r in rows)
        path = self.root / MANIFEST
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            return False
        atomic_write_text(path, text)
        return True

    def move(self, row: dict) -> None:
        """Put the row's PNG where its kept flag says (a rename, atomic)."""
        target = self.path(row["label"], row["id"], row["kept"])
        if target.is_file():
            self.path(row["label"], row["id"], not row["kept"]).unlink(missing_ok=True)
            return
        source = self.path(row["label"], row["id"], not row["kept"])
        if source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            source.replace(target)

    def clean(self, rows: list[dict]) -> int:
        """Remove temp files left by a crash and PNGs no manifest line owns."""
        known = {(r["label"], r["id"]) for r in rows}
        removed = 0
        for sub in (KEPT, REJECTED):
            for label, d in enumerate(self.dirs):
                folder = self.root / sub / d
                if not folder.is_dir():
                    continue
                for f in folder.iterdir():
                    orphan = f.suffix == ".png" and (label, f.stem) not in known
                    if f.name.endswith(".tmp") or orphan:
                        f.unlink(missing_ok=True)
                        removed += 1
        return removed


def image_reason(row: dict, sc: SampleConfig) -> str | None:
    """Why a single image is rejected by the per-image filters, or None."""
    if row["judge_pred"] != row["label"]:
        return "judge_disagrees"
    if row["confidence"] < sc.min_confidence:
        return "low_confidence"
    if row["realism"] is not None and row["realism"] < 1.0:  # None: realism off for the class
        return "unrealistic"
    if row["nn_distance"] < sc.near_copy_distance:
        return "near_copy"
    return None


def realism(radius: float | None, feature_distance: float) -> float | None:
    """radius / distance (>= 1: inside the real class's region); None when the class has no radius."""
    return None if radius is None else round(radius / max(feature_distance, 1e-12), 6)


def decide(rows: list[dict], radii: list[float | None], sc: SampleConfig, *, filtering: bool) -> list[int]:
    """Set ``realism``, ``kept`` and ``reason`` on every row (sorted by label, index).
    Per class the first ``per_class`` passing images are kept; a class with fewer is
    kept not at all (``class_short``). Returns the labels of short classes."""
    short, by_class = [], {}
    for row in rows:
        by_class.setdefault(row["label"], []).append(row)
    for label in range(len(radii)):
        passing = []
        for row in by_class.get(label, []):
            row["realism"] = realism(radii[label], row["feature_distance"])
            reason = image_reason(row, sc) if filtering else None
            if reason is None and len(passing) >= sc.per_class:
                reason = "surplus"
            if reason is None:
                passing.append(row)
            row["kept"], row["reason"] = reason is None, reason
        if len(passing) < sc.per_class:
            short.append(label)
            for row in passing:
                row["kept"], row["reason"] = False, "class_short"
    return short


def passing_count(rows: list[dict], label: int, radius: float | None, sc: SampleConfig, *, filtering: bool) -> int:
    n = 0
    for row in rows:
        if row["label"] == label:
            row["realism"] = realism(radius, row["feature_distance"])
            n += (not filtering) or image_reason(row, sc) is None
    return n
