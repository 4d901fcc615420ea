"""Small file helpers: atomic writes, hashing, safe path components.

Every output genaug writes goes through a temp file in the same directory followed by
``os.replace``, so a crash never leaves a half-written file behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from genaug.errors import GenaugError


def _file_mode() -> int:
    """0o666 minus the process umask: what open() would give (mkstemp gives 0o600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


FILE_MODE = _file_mode()


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file + rename (atomic on POSIX)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def staging_dir(target: str | Path) -> Path:
    """An empty temp directory beside ``target`` to build its new contents in."""
    target = Path(target)
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def replace_dir(staged: Path, target: str | Path) -> None:
    """Swap a fully written ``staged`` directory in for ``target`` by renames, so readers
    see the old or the new directory, never a half-written one."""
    target = Path(target)
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)  # left over from a crash between the renames
    if target.exists():
        target.rename(old)
    staged.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def append_jsonl(path: str | Path, row: dict) -> None:
    """Append one JSON line and fsync; a line is either fully written or not at all
    visible to :func:`read_jsonl`, which drops a trailing partial line."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: str | Path) -> list[dict]:
    """Read a JSON-lines file, ignoring a torn last line left by a crash."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def stable_hash(obj: Any) -> str:
    """Short sha256 of a JSON-serialisable object (sorted keys)."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


_UNSAFE = re.compile(r"[\x00-\x1f/\\:*?\"<>|]")


def safe_name(name: str) -> str:
    """Turn a class or run name into a single safe path component.

    Removes path separators, NUL and control characters, and leading dots, so the
    result can never escape the directory it is joined to.
    """
    cleaned = _UNSAFE.sub("_", str(name)).strip()
    cleaned = cleaned.lstrip(".")
    if not cleaned:
        cleaned = "_"
    return cleaned[:200]


def safe_join(root: str | Path, *parts: str) -> Path:
    """Join sanitised components under ``root`` and check the result stays inside."""
    root = Path(root).resolve()
    out = root.joinpath(*(safe_name(p) for p in parts)).resolve()
    if root != out and root not in out.parents:
        raise GenaugError(f"refusing to write outside {root}: {out}")
    return out
