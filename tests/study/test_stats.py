"""The report's statistics (pyg_schnet.study.stats) against known values."""

import math

import pytest

from pyg_schnet.study.stats import (
    _T975,
    equivalence,
    holm,
    paired_difference,
    reading,
    t_quantile,
    t_sf,
    two_sided_p,
)


@pytest.mark.parametrize("df", [1, 2, 3, 4, 9, 30])
def test_t_quantiles_match_the_printed_table(df):
    assert t_quantile(0.975, df) == pytest.approx(_T975[df - 1], abs=6e-4)


@pytest.mark.parametrize(
    "df, q95",  # one-sided 95% quantiles (printed tables)
    [(1, 6.314), (2, 2.920), (4, 2.132), (10, 1.812), (30, 1.697)],
)
def test_one_sided_quantiles(df, q95):
    assert t_quantile(0.95, df) == pytest.approx(q95, abs=6e-4)
    assert t_sf(q95, df) == pytest.approx(0.05, abs=2e-4)
    assert t_sf(0.0, df) == pytest.approx(0.5) and t_sf(-q95, df) == pytest.approx(0.95, abs=2e-4)


def _diff(variant, reference):
    return paired_difference(dict(enumerate(variant)), dict(enumerate(reference)))


def test_equivalence_needs_the_90_percent_interval_inside_the_margin():
    d = _diff([10.2, 10.1, 10.3], [10.0, 10.0, 10.0])  # +0.2 +- 0.1
    inside = equivalence(d, margin=1.0)
    half = t_quantile(0.95, 2) * 0.1 / math.sqrt(3)
    assert inside["eq_low"] == pytest.approx(0.2 - half) and inside["equivalent"] is True
    assert inside["eq_p"] < 0.05
    outside = equivalence(d, margin=0.3)  # the interval reaches past 0.3
    assert outside["equivalent"] is False and outside["eq_p"] > 0.05
    wide = equivalence(_diff([12.0, 8.0, 10.5], [10.0, 10.0, 10.0]), margin=1.0)
    assert wide["equivalent"] is False  # no difference seen, yet not shown equivalent
    assert equivalence(_diff([1.0], [0.0]), margin=5.0)["equivalent"] is False  # one seed


def test_holm_steps_down_over_the_family():
    strong = _diff([5.0, 6.0, 5.5], [1.0, 1.0, 1.0])
    weak = _diff([1.0, 1.5, 0.8], [0.9, 1.2, 1.0])
    p_strong, p_weak = two_sided_p(strong), two_sided_p(weak)
    out = holm([weak, strong])
    assert out[1]["holm_p"] == pytest.approx(2 * p_strong)  # smallest p: times m = 2
    assert out[0]["holm_p"] == pytest.approx(max(2 * p_strong, p_weak))  # then times 1
    # the weak one's step has level alpha / 1: its interval is the plain 95% one
    assert out[0]["holm_low"] == pytest.approx(weak["ci_low"], abs=1e-3)  # table vs computed t
    # the strong one's has alpha / 2: wider than its plain 95% interval
    assert out[1]["holm_low"] < strong["ci_low"] and out[1]["holm_high"] > strong["ci_high"]


def test_parallel_curves_are_a_paired_slope_test_per_seed():
    """Per seed the slope of log(MAE ratio) against log(size); a constant
    ratio is parallel (slope 0, equivalent within the margin), a ratio that
    grows as size^0.3 is not."""
    import math
    from types import SimpleNamespace

    from pyg_schnet.study.report import parallel

    sizes = [1000, 2000, 5000, 10000]
    spec = SimpleNamespace(
        train_sizes=sizes,
        targets=["U0"],
        variants=["a", "flat", "steep"],
        reference="a",
        contrasts={},
        slope_margin=0.1,
    )
    rows = []
    for seed, wobble in enumerate((1.0, 1.02, 0.99)):
        for n in sizes:
            base = 100.0 * n**-0.5 * wobble
            for v, mae in (
                ("a", base),
                ("flat", 2.0 * base * (1 + 0.01 * seed * math.log(n))),
                ("steep", 2.0 * base * (n / 1000) ** 0.3),
            ):
                rows.append(dict(target="U0", variant=v, size=n, seed=seed, test_mae=mae))
    got = {r["variant"]: r for r in parallel(spec, rows)}
    assert set(got) == {"flat", "steep"} and got["flat"]["n"] == 3
    assert abs(got["flat"]["diff_mean"]) < 0.05 and got["flat"]["equivalent"] is True
    assert got["steep"]["diff_mean"] == pytest.approx(0.3, abs=1e-9)
    assert got["steep"]["equivalent"] is False and got["steep"]["p"] < 0.01
    spec.train_sizes = sizes[:2]  # two sizes give no slope test
    assert parallel(spec, rows) == []


def test_only_a_time_budget_makes_a_slow_run_slow():
    """A run below 0.9 of its variant's fastest speed saw fewer steps under a
    time budget (marked slow); under a budget in epochs it saw the same steps."""
    from pyg_schnet.study.report import is_slow, relative_speed

    rows = [
        dict(target="U0", variant="a", size=1, molecules_per_second=1000.0, timed=True),
        dict(target="U0", variant="a", size=1, molecules_per_second=700.0, timed=True),
        dict(target="U0", variant="b", size=1, molecules_per_second=1000.0, timed=False),
        dict(target="U0", variant="b", size=1, molecules_per_second=700.0, timed=False),
    ]
    speeds = relative_speed(rows)
    assert speeds == [1.0, 0.7, 1.0, 0.7]
    assert [is_slow(r, v) for r, v in zip(rows, speeds, strict=True)] == [False, True, False, False]


def test_a_contrast_reads_by_its_fixed_rules():
    """``reading``: differs (Holm p below 5%), equivalent (TOST), both,
    undecided (neither), one seed (no interval)."""

    def row(variant, reference, margin):
        d = _diff(variant, reference)
        d.update(holm([d])[0])
        d.update(equivalence(d, margin) if margin else {"equivalent": ""})
        return d

    base = [10.0, 10.0, 10.0, 10.0, 10.0]
    assert reading(row([15.1, 14.9, 15.2, 14.8, 15.0], base, 3.0)) == "differs"
    assert reading(row([10.1, 9.9, 10.2, 9.8, 10.0], base, 3.0)) == "equivalent"
    assert reading(row([11.0, 11.1, 10.9, 11.0, 11.05], base, 3.0)) == "differs, within the margin"
    assert reading(row([14.0, 7.0, 12.0, 9.0, 11.0], base, 3.0)) == "undecided"
    assert reading(row([10.1, 9.9, 10.2, 9.8, 10.0], base, None)) == "undecided"  # no margin
    assert reading(row([15.0], [10.0], 3.0)) == "one seed"
