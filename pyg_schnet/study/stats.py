"""Statistics of a study report: paired differences with t-intervals and
log-log slopes (pure Python, no SciPy)."""

from __future__ import annotations

import math
from typing import Any, Dict, Sequence, Tuple

#: Two-sided 95% quantiles of Student's t by degrees of freedom (1-30).
_T975 = (
    12.706,
    4.303,
    3.182,
    2.776,
    2.571,
    2.447,
    2.365,
    2.306,
    2.262,
    2.228,
    2.201,
    2.179,
    2.160,
    2.145,
    2.131,
    2.120,
    2.110,
    2.101,
    2.093,
    2.086,
    2.080,
    2.074,
    2.069,
    2.064,
    2.060,
    2.056,
    2.052,
    2.048,
    2.045,
    2.042,
)


def t_quantile_975(df: int) -> float:
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom."""
    if df < 1:
        return float("nan")
    return _T975[df - 1] if df <= len(_T975) else 1.960 + 2.4 / df  # within 0.3% beyond 30


def mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def std(xs: Sequence[float]) -> float:
    """Sample standard deviation (n - 1); NaN below two values."""
    if len(xs) < 2:
        return float("nan")
    m = mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def paired_difference(variant: Dict[int, float], reference: Dict[int, float]) -> Dict[str, Any]:
    """Mean of ``variant[s] - reference[s]`` over the seeds both have, its
    sample std, the 95% t-interval of the mean, how many seeds agree in sign
    with the mean, and the ratio of the means."""
    seeds = sorted(set(variant) & set(reference))
    d = [variant[s] - reference[s] for s in seeds]
    n = len(d)
    m, s = mean(d), std(d)
    half = t_quantile_975(n - 1) * s / math.sqrt(n) if n >= 2 else float("nan")
    sign = 1 if m > 0 else -1 if m < 0 else 0
    agree = sum(1 for x in d if (x > 0) - (x < 0) == sign) if n else 0
    ratio = (
        mean([variant[k] for k in seeds]) / mean([reference[k] for k in seeds])
        if n
        else float("nan")
    )
    return {
        "n": n,
        "seeds": seeds,
        "diff_mean": m,
        "diff_std": s,
        "ci_low": m - half,
        "ci_high": m + half,
        "agree": agree,
        "ratio": ratio,
    }


def loglog_slope(sizes: Sequence[float], values: Sequence[float]) -> Tuple[float, float]:
    """Least-squares slope of log(value) against log(size), and its standard
    error (NaN with fewer than three points)."""
    xs = [math.log(x) for x in sizes]
    ys = [math.log(y) for y in values]
    n = len(xs)
    if n < 2:
        return float("nan"), float("nan")
    mx, my = mean(xs), mean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=False)) / sxx
    if n < 3:
        return slope, float("nan")
    resid = sum((y - my - slope * (x - mx)) ** 2 for x, y in zip(xs, ys, strict=False))
    return slope, math.sqrt(resid / (n - 2) / sxx)
