"""ImageFolder input: ``root/<class_name>/*.png|jpg|...`` (SPEC §2).

A root whose sub-folders are ``train/`` (and optionally ``val/``, ``test/``) is read
as pre-split ImageFolders; genaug carves only the splits that are missing. Class order
is the sorted folder names of ``train`` (or of the root).
"""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image
from genaug.progress import progress

from genaug.config import DataConfig
from genaug.data.base import SPLITS, Split
from genaug.data.images import GRAY_MODES, is_image_file, open_image, to_array
from genaug.data.registry import RawSource
from genaug.errors import DataError
from genaug.io import class_dirs


def _class_dirs(root: Path) -> list[Path]:
    return sorted((d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")), key=lambda d: d.name)


def _list_files(class_dir: Path) -> list[Path]:
    """Image files under a class folder (recursively, following no symlink loops)."""
    files, seen = [], set()
    stack = [class_dir]
    while stack:
        d = stack.pop()
        try:
            real = d.resolve(strict=True)
        except (OSError, RuntimeError):
            continue
        if real in seen:
            continue
        seen.add(real)
        for p in sorted(d.iterdir()):
            if p.name.startswith("."):
                continue
            if p.is_dir():
                stack.append(p)
            elif is_image_file(p) and p.is_file():
                files.append(p)
    return sorted(files)


def scan(root: Path, classes: list[str] | None = None) -> tuple[list[str], list[tuple[Path, int]]]:
    """Find (path, label) pairs; errors name the folder that is wrong."""
    dirs = _class_dirs(root)
    if not dirs:
        raise DataError(f"no class folders in {root} (expected {root}/<class_name>/<image files>)")
    names = [d.name for d in dirs]
    if classes is not None:
        unknown = sorted(set(names) - set(classes))
        if unknown:
            raise DataError(f"{root} has class folders not in train/: {unknown}")
    classes = classes or names
    items = []
    for d in dirs:
        files = _list_files(d)
        if not files:
            raise DataError(f"class folder '{d.name}' has no images: {d}")
        items += [(f, classes.index(d.name)) for f in files]
    return classes, items


def _probe(paths: list[Path]) -> tuple[int, int]:
    """Pick (channels, size) when the config leaves them open: RGB if any image is
    coloured, and the most common shorter side."""
    colour, sides = False, Counter()
    for p in paths[:2000]:
        try:
            with Image.open(p) as img:
                colour |= img.mode not in GRAY_MODES
                sides[min(img.size)] += 1
        except Exception:  # unreadable files are reported by _decode
            continue
    if not sides:
        raise DataError(f"none of the {len(paths)} image files could be read, e.g. {paths[0]}")
    return (3 if colour else 1), sides.most_common(1)[0][0]


def _decode(items, root: Path, channels: int, size: int, skip_bad: bool, skipped: list[str]) -> Split:
    arrays, labels, ids = [], [], []
    for path, label in progress(items, desc=f"reading {root.name}", unit="img", leave=False, disable=len(items) < 2000):
        try:
            with warnings.catch_warnings():  # open_image enforces its own pixel limit (MAX_PIXELS)
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                img = open_image(path)
        except Exception as exc:  # PIL raises many types for bad files
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if not skip_bad:
                raise DataError(f"unreadable image {path}: {reason} (set data.skip_bad_images=true to skip such files)") from None
            skipped.append(f"{path}: {reason}")
            continue
        arrays.append(to_array(img, channels=channels, size=size))
        labels.append(label)
        ids.append(str(path.relative_to(root.parent if root.name in SPLITS else root)))
    if not arrays:
        raise DataError(f"no readable images in {root}")
    return Split(np.stack(arrays), np.asarray(labels), ids)


def load_imagefolder(cfg: DataConfig) -> RawSource:
    root = Path(cfg.source).expanduser()
    if not root.exists():
        raise DataError(f"data folder not found: {root}")
    if not root.is_dir():
        raise DataError(f"data source is not a folder: {root}")
    presplit = (root / "train").is_dir() and all(d.name in SPLITS for d in _class_dirs(root))
    roots = {s: root / s for s in SPLITS if (root / s).is_dir()} if presplit else {"train": root}
    classes, found = scan(roots["train"])
    scans = {"train": found}
    for name, sroot in roots.items():
        if name != "train":
            scans[name] = scan(sroot, classes)[1]
    channels, size = _probe([p for p, _ in found])
    channels, size = cfg.channels or channels, cfg.image_size or size
    skipped: list[str] = []
    pools = {name: _decode(items, roots[name], channels, size, cfg.skip_bad_images, skipped) for name, items in scans.items()}
    present = set(np.unique(pools["train"].labels).tolist())
    empty = [classes[c] for c in range(len(classes)) if c not in present]
    if empty:
        raise DataError(f"class folder(s) {empty} have no readable images in {roots['train']}")
    return RawSource(classes, pools, skipped)


def read_labeled_folder(root: str | Path, classes: list[str], *, channels: int, size: int, what: str) -> Split:
    """An ImageFolder of extra labeled images (a synthetic set from any generator, extra
    real images for the oracle) for data with ``classes``: its class folders must be
    exactly those names; images are decoded and resized like the data's own."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"{what} folder not found: {root}")
    names = [d.name for d in _class_dirs(root)]
    folders = _folder_names(names, classes)
    extra, missing = sorted(set(names) - set(folders)), [c for c, f in zip(classes, folders) if f not in names]
    if extra or missing:
        raise DataError(f"{what} folder {root} does not match the data's classes: "
                        + "; ".join(p for p in (f"extra class folders {extra}" if extra else "",
                                                f"missing class folders {missing}" if missing else "") if p))
    _, items = scan(root, folders)
    return _decode(items, root, channels, size, False, [])


def _folder_names(names: list[str], classes: list[str]) -> list[str]:
    """Per class, the folder that holds it: its own name, or the safe folder name genaug
    writes for it (``data export``, ``sample``: "T-shirt/top" -> "T-shirt_top")."""
    safe = class_dirs(classes)
    return [c if c in names else s for c, s in zip(classes, safe)]
