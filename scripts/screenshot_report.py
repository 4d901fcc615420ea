"""Render a genaug report in headless Chromium and save a PNG screenshot (issue #7).

Needs Debian's chromium (``apt-get install chromium``) or any Chromium/Chrome on PATH.

    python scripts/screenshot_report.py runs/default/report.html /tmp/report.png [--height 6000]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")


def find_browser() -> str | None:
    return next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)


def screenshot(report: Path, out: Path, *, width: int = 1200, height: int = 6000, timeout: float = 120) -> Path:
    browser = find_browser()
    if browser is None:
        raise SystemExit("no Chromium found: apt-get install chromium")
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--window-size={width},{height}",
           f"--screenshot={out.resolve()}", report.resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0 or not out.is_file():
        raise SystemExit(f"chromium failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("report", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--width", type=int, default=1200)
    ap.add_argument("--height", type=int, default=6000)
    args = ap.parse_args(argv)
    print(screenshot(args.report, args.out, width=args.width, height=args.height))


if __name__ == "__main__":
    sys.exit(main())
