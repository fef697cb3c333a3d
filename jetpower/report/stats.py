"""Small statistics: batch-means confidence intervals and Student t quantiles (no scipy).

Power samples and latencies are autocorrelated (the sensor re-reads one conversion for ~7 ms;
latencies drift with temperature), so the naive standard error is too small.  The method used
throughout is *non-overlapping batch means*: the series, in time order, is cut into ``k``
contiguous batches; the batch means are treated as independent and the interval is
``mean +- t(0.975, k-1) * sd(batch means) / sqrt(k)``.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

#: default number of batches
N_BATCHES = 20
#: confidence level of every interval
LEVEL = 0.95

# two-sided 95 % Student t quantiles, t(0.975, df) for df = 1..30
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def t975(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom."""
    if df < 1:
        return math.inf
    if df <= len(_T975):
        return _T975[df - 1]
    return 1.960 + 2.4 / df  # within 0.2 % of the exact value for df > 30


def batch_means_halfwidth(x: npt.ArrayLike, n_batches: int = N_BATCHES) -> float:
    """Half-width of the 95 % interval of the mean of a time-ordered series, by batch means.

    NaN where there are fewer than 2 values.  With fewer than ``2 * n_batches`` values the batches
    shrink to 2 values each (fewer batches, a wider t quantile).
    """
    a = np.asarray(x, dtype=np.float64)
    n = a.size
    if n < 2:
        return math.nan
    k = max(2, min(n_batches, n // 2))
    ids = (np.arange(n, dtype=np.int64) * k) // n
    means = np.bincount(ids, a, k) / np.bincount(ids, None, k)
    return float(t975(k - 1) * means.std(ddof=1) / math.sqrt(k))


def ratio_batch_halfwidth(
    sums: npt.NDArray[np.float64], counts: npt.NDArray[np.int64], n_batches: int = N_BATCHES
) -> float:
    """Batch-means half-width of ``sum(sums) / sum(counts)`` for time-ordered groups.

    Each group (one layer window) holds ``counts[i]`` samples whose values add to ``sums[i]``.
    Groups are cut into ``k`` contiguous batches of about equal sample counts, never splitting a
    group, so samples of one window (strongly correlated) stay in one batch.
    """
    keep = counts > 0
    s = sums[keep]
    c = counts[keep]
    if s.size < 2:
        return math.nan
    k = max(2, min(n_batches, s.size // 2))
    cum_before = np.cumsum(c) - c
    ids = np.minimum((cum_before * k) // int(c.sum()), k - 1)
    bs = np.bincount(ids, s, k)
    bc = np.bincount(ids, c, k)
    ok = bc > 0
    means = bs[ok] / bc[ok]
    kk = means.size
    if kk < 2:
        return math.nan
    return float(t975(kk - 1) * means.std(ddof=1) / math.sqrt(kk))
