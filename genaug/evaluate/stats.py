"""Means with 95% t-intervals, and paired differences (SPEC §5)."""

from __future__ import annotations

import math

from scipy import stats


def t_interval(values: list[float], level: float = 0.95) -> dict:
    """mean, sample std and the two-sided t-interval of the mean (None bounds for n < 2)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return {"mean": mean, "std": None, "lo": None, "hi": None, "n": n}
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = stats.t.ppf(0.5 + level / 2, n - 1) * std / math.sqrt(n)
    return {"mean": mean, "std": std, "lo": mean - half, "hi": mean + half, "n": n}


def paired_gain(base: dict[int, float], other: dict[int, float]) -> dict:
    """t-interval of ``other[s] - base[s]`` over the seeds both have."""
    seeds = sorted(set(base) & set(other))
    if not seeds:
        raise ValueError("no common seeds to pair")
    return t_interval([other[s] - base[s] for s in seeds])


def fmt(ci: dict, digits: int = 4, signed: bool = False) -> str:
    sign = "+" if signed else ""
    if ci["lo"] is None:
        return f"{ci['mean']:{sign}.{digits}f}"
    return f"{ci['mean']:{sign}.{digits}f} [{ci['lo']:{sign}.{digits}f}, {ci['hi']:{sign}.{digits}f}]"
