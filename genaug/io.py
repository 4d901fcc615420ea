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

import numpy as np

from genaug.errors import GenaugError
from genaug.faults import fault_point


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
            fault_point("write", path=path)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_save_tensors(path: str | Path, tensors: dict, metadata: dict[str, str] | None = None) -> None:
    """safetensors weights, written atomically (a full disk leaves no partial file)."""
    from safetensors.torch import save

    atomic_write_bytes(path, save({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, metadata=metadata))


def load_tensors(path: str | Path, device: str = "cpu") -> dict:
    """safetensors weights; a file that is not safetensors (a pickle, a truncated
    download) is a one-line error and is never unpickled."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device=device)
    except (SafetensorError, OSError) as exc:
        raise GenaugError(f"{path} is not a readable safetensors file ({exc}); genaug never unpickles weights") from None


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
    """Append one JSON line and fsync. A torn last line left by a crash is cut off
    first, so the new row starts on a line of its own (and is not lost with it);
    :func:`read_jsonl` drops a torn line that is still there."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(row) + "\n").encode("utf-8")
    with open(path, "a+b") as f:
        _cut_torn_tail(f)
        size = f.tell()
        try:
            half = len(line) // 2
            f.write(line[:half])
            fault_point("append", flush=f, path=path)  # a kill here leaves exactly such a torn line
            f.write(line[half:])
            f.flush()
            os.fsync(f.fileno())
        except OSError:  # e.g. disk full: take the partial line back out
            f.truncate(size)
            raise


def _cut_torn_tail(f) -> None:
    """Truncate an append-mode binary file back to its last newline."""
    size = f.seek(0, os.SEEK_END)
    if size == 0:
        return
    f.seek(size - 1)
    if f.read(1) == b"\n":
        return
    f.seek(0)
    keep = f.read().rfind(b"\n") + 1  # 0 when the only line is torn
    f.truncate(keep)
    f.seek(0, os.SEEK_END)


TEMP_PATTERNS = (".*.tmp", "*.tmp", ".tmp_*", ".*.tmp.png", ".*.old")


def sweep_temp(root: str | Path) -> int:
    """Clear what a crash can leave under ``root``: temp files and directories
    (``.name.<random>.tmp``, ``name.tmp``, checkpoint ``.tmp_step_N``, staging
    ``.name.tmp``) are removed; a ``.name.old`` directory whose ``name`` is missing (a
    crash between :func:`replace_dir`'s two renames) is renamed back, else removed.
    Returns how many entries it cleared. Call it before a stage writes, never while
    another process writes there."""
    root, cleared = Path(root), 0
    if not root.is_dir():
        return 0
    found = {p for pattern in TEMP_PATTERNS for p in root.rglob(pattern)}
    for p in sorted(found, key=lambda p: len(p.parts)):  # parents first; children go with them
        if not (p.exists() or p.is_symlink()) or (p.is_dir() and not p.name.startswith(".")):
            continue  # gone with its parent, or a folder such as a class named "x.tmp" (ours start with ".")
        target = p.with_name(p.name[1:-4])
        if p.name.endswith(".old") and p.is_dir() and not target.exists():
            p.rename(target)  # the old contents were complete; the new ones never landed
        elif p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        cleared += 1
    return cleared


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


def class_dirs(classes: list[str]) -> list[str]:
    """Safe, unique folder names of ``classes`` (``'a/b'`` and ``'a_b'`` would collide:
    suffix the index). Every folder genaug writes per class is named by this, and every
    class folder it reads may carry either the class name or this name."""
    names = [safe_name(c) for c in classes]
    seen: dict[str, int] = {}
    for n in names:
        seen[n.lower()] = seen.get(n.lower(), 0) + 1
    return [f"{n}_{i}" if seen[n.lower()] > 1 else n for i, n in enumerate(names)]


def safe_join(root: str | Path, *parts: str) -> Path:
    """Join sanitised components under ``root`` and check the result stays inside."""
    root = Path(root).resolve()
    out = root.joinpath(*(safe_name(p) for p in parts)).resolve()
    if root != out and root not in out.parents:
        raise GenaugError(f"refusing to write outside {root}: {out}")
    return out


def content_hash(images: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor) -> str:
    """Hash of the decoded pixels and labels: a changed image changes it, a renamed file does not."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(np.asarray(images)).tobytes())
    h.update(np.asarray(labels, dtype=np.int64).tobytes())
    return h.hexdigest()[:16]
