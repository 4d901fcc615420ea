"""Several evaluation runs at once, one process per core (SPEC §9, evaluation throughput).

A small classifier does not keep two CPU cores busy from one process: half of each
step is single-threaded Python (batch draws, augmentation, the optimiser's loop), and
its convolutions are too small to split well over threads. Two single-threaded
processes, each training its own (arm, r, seed) run, finish more runs per minute
(measured in BENCHMARKS.md, "evaluation runs per minute"). Each run is a pure
function of the config, the data and its seed, so the rows do not depend on which
process trained them (up to float summation order across thread counts).

The parent sends every worker the config, the data and the arms once (one pickle),
then hands out (arm, r, seed) tasks and appends each finished row as it arrives, so
an interrupted evaluation keeps every finished run.
"""

from __future__ import annotations

import os
import pickle
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Callable, NamedTuple

import torch
import torch.multiprocessing

from genaug.config import Config
from genaug.errors import GenaugError
from genaug.progress import progress

# Starting a worker costs ~3 s (importing torch and timm, unpickling the data): below
# this many steps in all, the runs train in this process.
MIN_STEPS_FOR_WORKERS = 2000


class Task(NamedTuple):
    key: str  # the arm's row key (arm_key)
    arm: str  # the arm's name
    r: float
    seed: int
    save_to: Path | None
    meta: dict


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def resolve_workers(setting: int | str, *, runs: int, steps: int, processes: int = 1) -> int:
    """Processes to train ``runs`` runs of ``steps`` steps in all. ``auto``: one per core
    (at most 4 sharing one GPU) when there are two runs or more and enough steps to
    repay the start; 1 under ``accelerate launch``, whose processes already split the runs."""
    if processes > 1 or runs < 2:
        return 1
    if setting != "auto":
        return max(1, min(int(setting), runs))
    if steps < MIN_STEPS_FOR_WORKERS:
        return 1
    cores = min(usable_cores(), 4) if torch.cuda.is_available() else usable_cores()
    return max(1, min(cores, runs))


_STATE: dict = {}


def _init(blob: bytes, threads: int) -> None:
    torch.set_num_threads(threads)
    # The parent pickled these in memory (by value: passed as objects, torch would send
    # every tensor through a shared-memory file descriptor, thousands for the replace
    # arm's variant lists); never anything read from a file.
    cfg, ed, arms = pickle.loads(blob)
    _STATE.update(cfg=cfg, ed=ed, arms=arms)


def _run(task: Task) -> dict:
    from genaug.classify.trainer import train_once

    s = _STATE
    return train_once(s["cfg"], s["ed"], task.r, task.seed, save_to=task.save_to, save_meta=task.meta,
                      arm=s["arms"][task.key], quiet=True)


def run_in_workers(cfg: Config, ed, arms: dict, tasks: list[Task], workers: int,
                   on_row: Callable[[Task, dict], None]) -> None:
    """Train ``tasks`` over ``workers`` processes, calling ``on_row`` in this process as
    each finishes. A worker that dies (killed, out of memory) ends the evaluation with
    one line; rerunning the same command resumes from the rows already written."""
    threads = max(1, usable_cores() // workers)
    blob = pickle.dumps((cfg, ed, arms), protocol=pickle.HIGHEST_PROTOCOL)
    ctx = torch.multiprocessing.get_context("spawn")  # fork after OpenMP/oneDNN threads started can hang
    bar = progress(total=len(tasks), desc=f"eval runs ({workers} processes x {threads} threads)", unit="run")
    try:
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init, initargs=(blob, threads)) as pool:
            futures = {pool.submit(_run, t): t for t in tasks}
            for done in as_completed(futures):
                task, row = futures[done], done.result()
                on_row(task, row)
                bar.update(1)
                bar.set_postfix_str(f"{task.arm} r={task.r:g} seed={task.seed}: val {row['val_acc']:.3f}, "
                                    f"{row['steps']} steps")
    except BrokenProcessPool:
        raise GenaugError("an evaluation worker process died (killed or out of memory); rerun the same command to "
                          "resume: finished runs are kept (eval.workers=1 trains in this process)") from None
    finally:
        bar.close()
