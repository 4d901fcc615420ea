"""How long each evaluation row trains (SPEC §5, "converged, selected on val").

Two protocols, both testing the best-val weights:

* **converged** (the default, ``eval.steps`` unset): warm up, then a constant learning
  rate; every ``eval_every`` steps the val accuracy (of the weights' EMA, ``eval.ema``)
  is measured; ``patience``
  evaluations without a new best make a plateau, which cuts the learning rate 10x
  (``lr_cuts`` times) and then stops the row. A row never trains past its cap,
  ``epochs`` passes over its own data (real + extra images), clamped to
  ``[min_steps, max_steps]``: a row with more data may train longer, so the extra data
  is never starved by a budget sized for the real images alone.
* **fixed** (``eval.steps: N``): exactly N steps on a cosine schedule, no early stop.
* ``eval.schedule: cosine`` (converged, measured against the plateau rule in
  ``scripts/bench_budget.py``): cosine over the cap, stop on the first plateau.
* a FixMatch row (an unlabeled stream): cosine over its whole cap, no early stop (as
  the paper trains); its cap counts the pool's images.

README ("How long a row trains") gives the measurements that chose the defaults.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from genaug.config import EvalConfig


@dataclass(frozen=True)
class Budget:
    cap: int  # most optimisation steps
    fixed: bool  # True: exactly ``cap`` steps, cosine schedule, no early stop
    eval_every: int
    patience: int  # evaluations without a new best val accuracy that make a plateau
    lr_cuts: int  # plateaus that cut the learning rate 10x before the next one stops the row
    warmup: int
    schedule: str = "plateau"  # "plateau": constant lr cut on plateaus; "cosine": cosine over the cap


def row_budget(ec: EvalConfig, n_images: int, semi_supervised: bool = False) -> Budget:
    """The budget of a row that trains on ``n_images`` distinct images (real + extra, and
    the pool for a FixMatch row). A ``semi_supervised`` row (FixMatch) trains its whole
    cap on a cosine schedule, as the paper does, never stopped by a plateau: its val
    accuracy stalls for hundreds of steps while confident pseudo-labels spread through
    the pool (measured: the plateau rule stopped it at step 1,200 with its best at 200;
    trained on, its val accuracy rose from 0.775 to 0.797). Its best-val weights are
    tested like every row's."""
    if ec.steps is not None:
        return Budget(ec.steps, True, ec.eval_every, 0, 0, min(ec.warmup_steps, ec.steps - 1), "cosine")
    lo, hi = min(ec.min_steps, ec.max_steps), ec.max_steps
    cap = min(hi, max(lo, math.ceil(ec.epochs * n_images / ec.batch_size)))
    if semi_supervised:
        return Budget(cap, True, ec.eval_every, 0, 0, min(ec.warmup_steps, cap - 1), "cosine")
    cuts = ec.lr_cuts if ec.schedule == "plateau" else 0  # cosine anneals by itself
    return Budget(cap, False, ec.eval_every, ec.patience, cuts, min(ec.warmup_steps, cap - 1), ec.schedule)


class Plateau:
    """Early stopping with learning-rate cuts on a val plateau (the converged protocol).

    ``update(acc)`` after each evaluation returns ``"best"`` (a new best: keep these
    weights), ``"cut"`` (a plateau: the learning rate drops 10x), ``"stop"`` (a plateau
    after every cut) or ``""``. A fixed budget never cuts nor stops."""

    def __init__(self, budget: Budget):
        self.budget, self.best, self.stale, self.cuts = budget, -1.0, 0, 0

    def update(self, acc: float) -> str:
        if acc > self.best:
            self.best, self.stale = acc, 0
            return "best"
        if self.budget.fixed:
            return ""
        self.stale += 1
        if self.stale < self.budget.patience:
            return ""
        self.stale = 0
        if self.cuts < self.budget.lr_cuts:
            self.cuts += 1
            return "cut"
        return "stop"

    @property
    def lr_scale(self) -> float:
        return 0.1**self.cuts
