"""Sample statistics and paired t-intervals against hand values."""

import math

import pytest

from train.stats import paired_interval, summarize, t_cdf, t_quantile

# t quantiles at 0.975 from printed tables (df 1, 2, 3, 7, 30)
T975 = {1: 12.7062047, 2: 4.3026527, 3: 3.1824463, 7: 2.3646243, 30: 2.0422725}


@pytest.mark.parametrize("df,value", sorted(T975.items()))
def test_t_quantiles_match_the_tables(df, value):
    assert t_quantile(0.975, df) == pytest.approx(value, abs=1e-6)
    assert t_cdf(value, df) == pytest.approx(0.975, abs=1e-7)  # tables round to 1e-7
    assert t_quantile(0.025, df) == pytest.approx(-value, abs=1e-6)


def test_summary_uses_the_sample_standard_deviation():
    summary = summarize([1.0, 2.0, 3.0, 6.0])
    assert summary.mean == 3.0 and summary.n == 4
    assert summary.std == pytest.approx(math.sqrt((4 + 1 + 0 + 9) / 3))  # ddof = 1
    assert summarize([5.0]).std is None


def test_paired_interval_by_hand():
    first = {1: 11.0, 2: 12.0, 3: 13.0, 4: 14.0, 9: 50.0}  # seed 9 has no partner: left out
    second = {1: 10.0, 2: 10.0, 3: 10.0, 4: 10.0}
    interval = paired_interval(first, second)  # differences 1, 2, 3, 4
    half = 3.1824463 * math.sqrt(5 / 3) / 2  # t(0.975, 3) * sd / sqrt(n)
    assert interval.seeds == (1, 2, 3, 4) and interval.n == 4 and interval.mean == 2.5
    assert interval.low == pytest.approx(2.5 - half) and interval.high == pytest.approx(2.5 + half)
    assert interval.excludes_zero is True  # 0.446 .. 4.554
    spread = paired_interval({1: 1.0, 2: -1.0}, {1: 0.0, 2: 0.0})
    assert spread.excludes_zero is False and spread.low < 0 < spread.high
    single = paired_interval({1: 3.0}, {1: 1.0})
    assert single.mean == 2.0 and single.low is None and single.excludes_zero is None
    assert paired_interval({1: 1.0}, {2: 1.0}) is None
