"""Before/after of a speed change: bench_speed cases run against the genaug of an earlier
commit and against this checkout, alternately (before, after, after, before, ...), so slow
spells of a shared machine hit both sides alike.

    python scripts/bench_before_after.py --before f919780 [--repeats 3] [--write BENCHMARKS.md]

The earlier commit is checked out into a temporary git worktree and put first on
PYTHONPATH for its runs; both sides run this checkout's bench_speed.py, so they are timed
and counted (images/s, host reads per step) the same way. The table gives each side's
median and range, and the median of the paired after / before ratios.
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import bench_speed  # noqa: E402

ROOT = Path(__file__).parents[1]
DEFAULT_CASES = ["gan_train_genaug", "diffusion_train_genaug", "classifier_train_genaug"]


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()


def run_side(case: str, args, pythonpath: str | None) -> dict | None:
    """One bench_speed child run of ``case``, with ``pythonpath`` (the earlier checkout) first."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return bench_speed.child(case, args, env | ({"PYTHONPATH": pythonpath} if pythonpath else {}))


def table(results: dict, args, before: str, after: str) -> str:
    def cell(rows):
        v = [r["img_s"] for r in rows]
        return f"{statistics.median(v):.1f} ({min(v):.1f}-{max(v):.1f})" if v else "—"

    def reads(rows):
        return "/".join(str(c) for c in sorted({r["host_reads"] for r in rows if "host_reads" in r})) or "—"

    lines = [
        f"Device: {bench_speed.device_name()}. Date: {datetime.date.today().isoformat()}. Runs: {args.repeats} per side, "
        f"alternating. B = {args.batch_size}, {args.steps} timed steps. Command: `python scripts/bench_before_after.py "
        f"--before {args.before} --repeats {args.repeats} --steps {args.steps} --batch-size {args.batch_size}` "
        f"(before = {before}, after = {after})",
        "",
        "| step | before images/s | after images/s | after / before (median of pairs) | host reads before | host reads after |",
        "|---|---|---|---|---|---|",
    ]
    for case in args.cases:
        b, a = results[case]["before"], results[case]["after"]
        pairs = [x["img_s"] / y["img_s"] for x, y in zip(a, b)]
        ratio = f"{statistics.median(pairs):.2f}x ({min(pairs):.2f}-{max(pairs):.2f})" if pairs else "—"
        lines.append(f"| {case} | {cell(b)} | {cell(a)} | {ratio} | {reads(b)} | {reads(a)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True, help="the earlier commit (any git revision)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--cases", nargs="+", default=DEFAULT_CASES, choices=bench_speed.CASES)
    ap.add_argument("--write", default=None, help="markdown file whose bench_before_after_<cpu|gpu> section is replaced")
    args = ap.parse_args(argv)
    child_args = argparse.Namespace(steps=args.steps, batch_size=args.batch_size, samples=8, precision="no",
                                    channels_last=False, compile=False)
    before, after = git("rev-parse", "--short", args.before), git("rev-parse", "--short", "HEAD")
    after += "+changes" if git("status", "--porcelain", "--untracked-files=no") else ""
    results = {case: {"before": [], "after": []} for case in args.cases}
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "before"
        git("worktree", "add", "--detach", str(tree), before)
        try:
            for rep in range(args.repeats):
                sides = [("before", str(tree)), ("after", None)]
                for side, path in sides if rep % 2 == 0 else sides[::-1]:  # neither side always goes first
                    for case in args.cases:
                        row = run_side(case, child_args, path)
                        if row:
                            results[case][side].append(row)
                            print(f"run {rep + 1}/{args.repeats} {side} {case}: {row['img_s']:.1f} img/s, "
                                  f"{row.get('host_reads')} host reads", file=sys.stderr)
        finally:
            git("worktree", "remove", "--force", str(tree))
    text = table(results, args, before, after)
    print(text)
    if args.write:
        device = "gpu" if bench_speed.torch.cuda.is_available() else "cpu"
        bench_speed.write_section(Path(args.write), text, f"bench_before_after_{device}")
    return text


if __name__ == "__main__":
    os.environ.setdefault("TQDM_DISABLE", "1")
    main(sys.argv[1:])
