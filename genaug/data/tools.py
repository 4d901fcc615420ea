"""`genaug data info` and `genaug data export`."""

from __future__ import annotations

from pathlib import Path

from genaug.progress import progress

from genaug.data.base import SPLITS, LabeledData
from genaug.data.images import array_to_pil
from genaug.errors import DataError
from genaug.io import atomic_write_bytes, class_dirs, safe_join


def describe(data: LabeledData) -> str:
    """Human-readable summary: classes, per-split counts, image size and mode."""
    mode = "L (grayscale)" if data.channels == 1 else "RGB"
    counts = {name: data.splits[name].counts(data.num_classes) for name in SPLITS}
    totals = {name: len(data.splits[name]) for name in SPLITS}
    width = max(5, *(len(c) for c in data.classes))
    lines = [
        f"source: {data.name}",
        f"classes ({data.num_classes}): {', '.join(data.classes)}",
        f"image: {data.image_size}x{data.image_size}, {data.channels} channel(s), mode {mode}",
        "splits: " + ", ".join(f"{n} {totals[n]}" for n in SPLITS)
        + f"; total {sum(totals.values())} images" + (" (official test split)" if data.official_test else ""),
        f"{'class':<{width}}  {'train':>6} {'val':>6} {'test':>6}",
    ]
    for c, name in enumerate(data.classes):
        lines.append(f"{name:<{width}}  " + " ".join(f"{counts[s][c]:>6}" for s in SPLITS))
    if data.unlabeled is not None:
        info = data.unlabeled_info
        lines.append(f"unlabeled pool: {len(data.unlabeled)} images from {info['source']} ({info['kind']}; "
                     f"{info['found']} found, {info['dropped_labeled']} dropped as labeled training images"
                     + (f", capped at {info['cap']}" if info.get("cap") else "") + ")")
    if data.skipped:
        lines.append(f"skipped {len(data.skipped)} unreadable file(s)")
    return "\n".join(lines)


def export_imagefolder(data: LabeledData, out: str | Path, split: str = "train") -> int:
    """Write ``split`` (or every split under ``out/<split>/`` when ``split == 'all'``)
    as PNGs in ImageFolder layout. Class names are sanitised into folder names
    (:func:`genaug.io.class_dirs`: "T-shirt/top" -> "T-shirt_top"), which every reader of
    a labeled folder for this data accepts."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise DataError(f"export folder is not empty: {out}")
    names, folders = list(SPLITS) if split == "all" else [split], class_dirs(data.classes)
    written = 0
    for name in names:
        s = data.splits[name]
        parts = (name,) if split == "all" else ()
        for i in progress(range(len(s)), desc=f"export {name}", unit="img", leave=False):
            label = int(s.labels[i])
            target = safe_join(out, *parts, folders[label], f"{i:06d}.png")
            buf = _png_bytes(s.images[i])
            atomic_write_bytes(target, buf)
            written += 1
    return written


def _png_bytes(arr) -> bytes:
    import io

    buf = io.BytesIO()
    array_to_pil(arr).save(buf, format="PNG")
    return buf.getvalue()
