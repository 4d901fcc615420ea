"""Progress output that suits a terminal and a log file alike.

On a terminal, :func:`progress` is a plain tqdm bar. When the stream is not a terminal
(``genaug pipeline > log 2>&1``, CI, nohup), carriage-return redraws would fill the
log with hundreds of KB, so the bar instead prints one plain line whenever another
10% of the total is done or 30 s have passed, and a last line when it closes — the
tqdm/rich convention for non-interactive output.
"""

from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm

PLAIN_EVERY_S = 30.0


class PlainProgress(tqdm):
    """A tqdm bar that writes whole lines, at most one per 10% of the total or 30 s."""

    def __init__(self, *args: Any, **kwargs: Any):
        self._shown: tuple[int, float, int] | None = None  # (tenth of the total, time, n) of the last line
        kwargs["dynamic_ncols"] = False
        super().__init__(*args, **kwargs)

    def _tenth(self) -> int:
        return int(10 * self.n / self.total) if self.total else 0

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        if msg is not None:  # tqdm clearing or overriding a line: nothing to clear in a log
            return True
        now = self._time()
        if self._shown is not None and self._tenth() <= self._shown[0] and now - self._shown[1] < PLAIN_EVERY_S:
            return True
        self._write_line(now)
        return True

    def _write_line(self, now: float) -> None:
        self.fp.write(self.__str__().strip() + "\n")
        self.fp.flush()
        self._shown = (self._tenth(), now, self.n)

    def close(self) -> None:
        if self.disable:
            return
        if self._shown is None or self._shown[2] != self.n:  # the final count, once
            self._write_line(self._time())
        self.disable = True
        self._decr_instances(self)


def is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def progress(iterable: Any = None, **kwargs: Any) -> tqdm:
    """``tqdm(iterable, **kwargs)`` on a terminal, :class:`PlainProgress` otherwise."""
    stream = kwargs.get("file") or sys.stderr
    cls = tqdm if is_terminal(stream) else PlainProgress
    return cls(iterable, **kwargs)
