"""Statistics of a study report: paired differences with t-intervals,
equivalence tests against a margin, Holm's correction across a study's
contrasts, and log-log slopes (pure Python, no SciPy)."""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

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
    ref_mean = mean([reference[k] for k in seeds])
    ratio = mean([variant[k] for k in seeds]) / ref_mean if n and ref_mean else float("nan")
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


# -- Student's t beyond the table: CDF and quantiles --------------------------------------


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularised incomplete beta (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)), None):
            if aa is None:
                aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function :math:`I_x(a, b)`."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_sf(t: float, df: int) -> float:
    """:math:`P(T > t)` for Student's t with ``df`` degrees of freedom."""
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return tail if t >= 0 else 1.0 - tail


def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile of Student's t (bisection on :func:`t_sf`)."""
    if df < 1 or not 0.0 < p < 1.0:
        return float("nan")
    lo, hi = -1e4, 1e4
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if 1.0 - t_sf(mid, df) < p:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


# -- equivalence and multiplicity -----------------------------------------------------------


def equivalence(diff: Dict[str, Any], margin: float, alpha: float = 0.05) -> Dict[str, Any]:
    """Two one-sided tests (TOST) of ``|true difference| < margin`` at level
    ``alpha`` for a :func:`paired_difference`: equivalent when the
    ``1 - 2 alpha`` t-interval lies inside ``(-margin, margin)``. Returns that
    interval, the larger of the two one-sided p-values and the verdict."""
    n, m, s = diff["n"], diff["diff_mean"], diff["diff_std"]
    if n < 2 or not math.isfinite(s):
        nan = float("nan")
        return {"eq_low": nan, "eq_high": nan, "eq_p": nan, "equivalent": False}
    se = s / math.sqrt(n)
    half = t_quantile(1.0 - alpha, n - 1) * se
    if se > 0:
        p = max(t_sf((m + margin) / se, n - 1), t_sf((margin - m) / se, n - 1))
    else:
        p = 0.0 if abs(m) < margin else 1.0
    low, high = m - half, m + half
    return {
        "eq_low": low,
        "eq_high": high,
        "eq_p": p,
        "equivalent": -margin < low and high < margin,
    }


def two_sided_p(diff: Dict[str, Any]) -> float:
    """The paired t-test's two-sided p-value of a :func:`paired_difference`."""
    n, m, s = diff["n"], diff["diff_mean"], diff["diff_std"]
    if n < 2 or not math.isfinite(s):
        return float("nan")
    if s == 0:
        return 0.0 if m != 0 else 1.0
    return min(1.0, 2.0 * t_sf(abs(m) / (s / math.sqrt(n)), n - 1))


def holm(diffs: Sequence[Dict[str, Any]], alpha: float = 0.05) -> List[Dict[str, Optional[float]]]:
    """Holm's step-down correction across a family of paired differences:
    per difference its adjusted p-value and an interval at the level of its
    step (the one ranked ``i``-th smallest of ``m`` p-values gets a
    ``1 - alpha / (m - i + 1)`` t-interval), so a family-wise error rate of
    ``alpha`` holds across the family's contrasts."""
    ps = [two_sided_p(d) for d in diffs]
    order = sorted((i for i in range(len(ps)) if math.isfinite(ps[i])), key=lambda i: ps[i])
    m = len(order)
    out: List[Dict[str, Optional[float]]] = [
        {"holm_p": float("nan"), "holm_low": float("nan"), "holm_high": float("nan")} for _ in diffs
    ]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * ps[i]))
        d = diffs[i]
        level = alpha / (m - rank)
        half = t_quantile(1.0 - level / 2.0, d["n"] - 1) * d["diff_std"] / math.sqrt(d["n"])
        out[i] = {
            "holm_p": running,
            "holm_low": d["diff_mean"] - half,
            "holm_high": d["diff_mean"] + half,
        }
    return out


def reading(row: Dict[str, Any], alpha: float = 0.05) -> str:
    """What a contrast row (a :func:`paired_difference` with :func:`holm` and,
    where the spec gives a margin, :func:`equivalence`) shows, by fixed rules
    (the margin is the spec's, written before its runs): ``"differs"`` when
    Holm's adjusted p-value is below
    ``alpha``; ``"equivalent"`` when the two one-sided tests hold;
    ``"differs, within the margin"`` when both; ``"undecided"`` when neither
    (no difference claimed, and none ruled out); ``"one seed"`` without an
    interval."""
    if row["n"] < 2 or not math.isfinite(row["holm_p"]):
        return "one seed"
    differs = row["holm_p"] < alpha
    equivalent = row.get("equivalent") is True
    if differs and equivalent:
        return "differs, within the margin"
    return "differs" if differs else "equivalent" if equivalent else "undecided"
