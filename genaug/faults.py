"""Named fault points for the crash tests (issue #9; tests/README.md lists them).

``GENAUG_FAULT=<point>[@<n>][:<kind>]`` makes the n-th pass (default: the first)
through ``fault_point("<point>")`` in this process fail:

* ``kill`` (the default) sends SIGKILL to the process itself: the hardest crash, no
  ``finally`` or ``atexit`` runs, exactly what an OOM killer or a pulled plug does;
* ``enospc`` / ``erofs`` raise the ``OSError`` a full disk / a read-only file system
  would, at the same place.

The points sit where a crash hurts most: ``write`` (an atomic write, temp file
written but not yet renamed), ``append`` (half of a JSON line written), ``checkpoint``
(a checkpoint saved to its temp directory, not yet renamed), ``step`` (between two
optimisation steps), ``finalise`` (synthetic PNGs moved, manifest not yet rewritten)
and ``stage`` (a pipeline stage finished, not yet recorded). Unset, a point costs one
environment lookup.
"""

from __future__ import annotations

import errno
import os
import signal
from typing import IO

_passes: dict[str, int] = {}
_ERRORS = {"enospc": errno.ENOSPC, "erofs": errno.EROFS}


def fault_point(name: str, *, flush: IO | None = None, path: str | os.PathLike | None = None) -> None:
    """Fail here if ``GENAUG_FAULT`` names this point and pass; ``flush`` is an open
    file to flush first, so a kill leaves on disk what was written so far; ``path``
    is the file an injected ``OSError`` names."""
    spec = os.environ.get("GENAUG_FAULT")
    if not spec:
        return
    where, _, kind = spec.partition(":")
    point, _, nth = where.partition("@")
    if point != name:
        return
    _passes[name] = _passes.get(name, 0) + 1
    if _passes[name] != int(nth or 1):
        return
    if flush is not None:
        flush.flush()
        os.fsync(flush.fileno())
    if kind in ("", "kill"):
        os.kill(os.getpid(), signal.SIGKILL)
    code = _ERRORS[kind]
    raise OSError(code, os.strerror(code), None if path is None else os.fspath(path))
