"""Distribution statistics for drift and canary checks: binning, PSI, two-sample KS against an exact baseline
ECDF summary, chi-square with Cramér's V.

numpy only (the drift and scoring functions do not carry scipy). Every statistic is checked against scipy or a
textbook formula in tests/unit/test_reference_*.py; formulas, references and tolerances are in
docs/statistics.md.

Precision rule: values are compared as float64 on both sides (baseline profiles are computed from the float64
training values, captured traffic is float64) and binned by `bin_index` alone, so a value lands in the same
bin whichever side it comes from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

PSI_EPSILON = 1e-4

LUT_BUCKETS = 1 << 14
LUT_MAX_STEPS = 6
LUT_MIN_VALUES = 50_000


def _buckets(x: np.ndarray, low: float, scale: float) -> np.ndarray:
    """Bucket number 0..LUT_BUCKETS-1 of each value: a monotone non-decreasing function of the value (each
    operation is correctly rounded, hence monotone), so edges and values put through it keep their order.
    +inf, NaN and anything past the last edge land in the last bucket, -inf in the first; no int64 overflow."""
    with np.errstate(over="ignore", invalid="ignore"):
        scaled = np.subtract(x, low)
        scaled *= scale
    np.fmin(scaled, LUT_BUCKETS - 1, out=scaled)  # fmin maps NaN to the bound as well
    np.fmax(scaled, 0.0, out=scaled)
    return scaled.astype(np.int64)


@dataclass(frozen=True)
class _LookupTable:
    edges: np.ndarray  # strictly increasing, finite, followed by +inf as a sentinel
    low: float
    scale: float
    first: np.ndarray  # first[b]: number of edges in buckets below b
    steps: int  # most edges sharing one bucket


def _lookup_table(edges: np.ndarray) -> _LookupTable | None:
    """A bucket table over strictly increasing finite edges, or None when a binary search is the better (or the
    only exact) choice: fewer than two edges, non-finite or unordered edges, or edges so unevenly spread that
    one bucket holds more than LUT_MAX_STEPS of them."""
    if edges.size < 2 or not (np.isfinite(edges[0]) and np.isfinite(edges[-1])):
        return None
    if not np.all(edges[1:] > edges[:-1]):
        return None
    with np.errstate(over="ignore"):
        span = edges[-1] - edges[0]
    # Any positive scale keeps the bucket function monotone, which is all exactness needs; these two keep it
    # finite when the span overflows (edges near +-1.8e308) or is subnormal.
    scale = LUT_BUCKETS / span if np.isfinite(span) else (LUT_BUCKETS / 2) / (edges[-1] / 2 - edges[0] / 2)
    scale = min(float(scale), float(np.finfo(np.float64).max))
    edge_buckets = _buckets(edges, edges[0], scale)
    first = np.searchsorted(edge_buckets, np.arange(LUT_BUCKETS), side="left")
    steps = int(np.max(np.diff(np.append(first, edges.size))))
    if steps > LUT_MAX_STEPS:
        return None
    return _LookupTable(np.append(edges, np.inf), float(edges[0]), float(scale), first, steps)


def _locate(edges: np.ndarray, values: np.ndarray) -> np.ndarray | None:
    """np.searchsorted(edges, values, "left") through the bucket table, or None when the table does not apply.

    Exact by construction: an edge in a lower bucket than a value is below it and an edge in a higher bucket is
    above it (the bucket function is monotone), so the table gives the number of edges below the value's bucket
    and at most `steps` comparisons with the edges inside it finish the count. NaN goes past every edge, as in
    numpy's sort order."""
    table = _lookup_table(edges)
    if table is None:
        return None
    index = table.first[_buckets(values, table.low, table.scale)]
    padded = table.edges
    for _ in range(table.steps):
        index += padded[index] < values
    missing = np.isnan(values)
    if missing.any():
        index[missing] = edges.size
    return index


def bin_index(edges: np.ndarray, values: np.ndarray) -> np.ndarray:
    """For each value, the number of edges strictly below it: identical to np.searchsorted(edges, values, "left")
    for every input (edges sorted ascending, as searchsorted requires), including values equal to an edge,
    huge or infinite values, and NaN (past every edge, like numpy). Bin i then holds edges[i-1] < x <= edges[i].

    Shapes: edges (m,), values any shape (float64; other dtypes are converted as searchsorted does); returns
    intp of values' shape. Large inputs (>= LUT_MIN_VALUES) go through a bucket table (`_locate`), several
    times faster than a binary search per value; duplicated edges are resolved on the distinct ones."""
    edges = np.asarray(edges, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    if values.size < LUT_MIN_VALUES or edges.size < 2:
        return np.searchsorted(edges, values, side="left")
    if np.all(edges[1:] > edges[:-1]):
        index = _locate(edges, values)
        return np.searchsorted(edges, values, side="left") if index is None else index
    if np.isfinite(edges).all() and np.all(edges[1:] >= edges[:-1]):
        distinct, first = np.unique(edges, return_index=True)
        index = _locate(distinct, values)
        if index is not None:
            # edges below v, counted with repeats = position of the first copy of the first distinct edge >= v
            return np.append(first, edges.size)[index]
    return np.searchsorted(edges, values, side="left")


def bin_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts per bin, shape (len(edges) + 1,); bin i holds edges[i-1] < x <= edges[i] (right-closed).

    Raises ValueError when `values` holds NaN: a missing value has no bin, so callers drop (and report) them."""
    values = np.asarray(values, dtype=np.float64)
    if np.isnan(values).any():
        raise ValueError(f"{int(np.isnan(values).sum())} NaN values: drop missing values before binning")
    return np.bincount(bin_index(edges, values).ravel(), minlength=np.asarray(edges).size + 1)


def psi(expected_counts: np.ndarray, actual_counts: np.ndarray) -> float:
    """Population stability index between two binned distributions over the same bins:
    sum_i (a_i - e_i) * ln(a_i / e_i) over bin shares, each share floored at PSI_EPSILON (1e-4) so an empty bin
    contributes a bounded term (Siddiqi, Credit Risk Scorecards, 2006; the floor is our convention).
    Counts: (bins,) each. Returns 0.0 when either side is empty (callers report that as not checked)."""
    e = np.asarray(expected_counts, dtype=np.float64)
    a = np.asarray(actual_counts, dtype=np.float64)
    if e.shape != a.shape:
        raise ValueError(f"PSI needs counts over the same bins, got {e.shape} and {a.shape}")
    if e.sum() == 0 or a.sum() == 0:
        return 0.0
    pe = np.clip(e / e.sum(), PSI_EPSILON, None)
    pa = np.clip(a / a.sum(), PSI_EPSILON, None)
    return float(np.sum((pa - pe) * np.log(pa / pe)))


def kolmogorov_sf(x: float) -> float:
    """P(K > x) for the Kolmogorov distribution (the limit law of sqrt(n) * D); matches scipy.stats.kstwobign."""
    if x <= 0:
        return 1.0
    if x < 0.3:
        # The alternating series converges slowly here; the complementary form is exact enough.
        total = 0.0
        for k in range(1, 50):
            total += math.exp(-((2 * k - 1) ** 2) * math.pi ** 2 / (8 * x * x))
        return max(0.0, min(1.0, 1.0 - math.sqrt(2 * math.pi) / x * total))
    total = 0.0
    for k in range(1, 101):
        term = 2 * (-1) ** (k - 1) * math.exp(-2 * k * k * x * x)
        total += term
        if abs(term) < 1e-16:
            break
    return max(0.0, min(1.0, total))


def ks_p_value(statistic: float, n: int, m: int) -> float:
    """Asymptotic two-sided p-value of a two-sample KS statistic D for samples of n and m values: Q_KS applied
    to (sqrt(e) + 0.12 + 0.11 / sqrt(e)) * D with e = n m / (n + m) (Stephens 1970; Numerical Recipes 3rd ed.
    §14.3.3). Exact-size behaviour and the agreement with scipy are in docs/statistics.md."""
    if n <= 0 or m <= 0:
        return 1.0
    en = math.sqrt(n * m / (n + m))
    return kolmogorov_sf((en + 0.12 + 0.11 / en) * statistic)


def ecdf_summary(values: np.ndarray, max_points: int = 999) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """An exact summary of a sample's ECDF at up to `max_points` points, for KS tests against it.

    values: (n,) float64 without NaN. Returns (points, at_or_below, below, exact): points strictly increasing;
    at_or_below[i] = #{x <= points[i]} and below[i] = #{x < points[i]} (exact integer counts); exact is True
    when points hold every distinct value (the ECDF is then known everywhere). Otherwise the points are the
    sample quantiles at levels k/(max_points+1) (inverted-CDF: actual sample values), so the ECDF rises by about
    1/(max_points+1) between consecutive points apart from ties, which the counts carry exactly."""
    ordered = np.sort(np.asarray(values, dtype=np.float64))
    distinct = np.unique(ordered)
    exact = distinct.size <= max_points
    if exact:
        points = distinct
    else:
        levels = np.arange(1, max_points + 1) / (max_points + 1)
        points = np.unique(np.quantile(ordered, levels, method="inverted_cdf"))
    at_or_below = np.searchsorted(ordered, points, side="right")
    below = np.searchsorted(ordered, points, side="left")
    return points, at_or_below, below, exact


def ecdf_counts(points: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Counts of `values` at or below and strictly below each point, from ONE pass over the values.

    points: (m,) strictly increasing finite; values: (n,) float64, NaN allowed. Returns (at_or_below (m,),
    below (m,), missing): counts exclude NaN, reported as `missing`."""
    points = np.asarray(points, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64).ravel()
    code = bin_index(points, values)
    equal = np.take(np.append(points, np.nan), code) == values
    # Cell 2i: points[i-1] < v < points[i]; cell 2i+1: v == points[i]; cell 2m: above the last point (and NaN).
    np.left_shift(code, 1, out=code)
    code += equal
    cells = np.bincount(code, minlength=2 * points.size + 2)
    missing = int(np.count_nonzero(np.isnan(values))) if values.size else 0
    cumulative = np.cumsum(cells)
    return cumulative[1:2 * points.size:2], cumulative[0:2 * points.size:2], missing


@dataclass(frozen=True)
class KsResult:
    """Two-sample KS figures. `statistic` is sup|F_base - F_cur| evaluated exactly where the baseline summary
    knows F_base (a lower bound of the true D, equal to it when the summary is exact); `upper_bound` is a proven
    upper bound of the true D; `p_value` comes from `statistic` (see `ks_p_value`)."""

    statistic: float
    upper_bound: float
    p_value: float


def ks_against_ecdf(points: np.ndarray, base_at_or_below: np.ndarray, base_below: np.ndarray, base_n: int,
                    cur_at_or_below: np.ndarray, cur_below: np.ndarray, cur_n: int) -> KsResult:
    """Two-sample Kolmogorov-Smirnov test of the current sample against a baseline known through
    `ecdf_summary`, with the current sample's counts at the same points (`ecdf_counts`).

    Both ECDFs are right-continuous steps; at every point p we know F(p) and F(p-) for both exactly, so
    |F_base - F_cur| there is exact (statistic = the largest of those). Between consecutive points the baseline
    ECDF is only known to lie between F_base(p_i) and F_base(p_{i+1}-), and the current one between F_cur(p_i)
    and F_cur(p_{i+1}-); the largest gap those ranges allow is the upper bound. When the summary holds every
    distinct baseline value (ties, discrete features) F_base is constant between points and the two coincide:
    the statistic then equals scipy.stats.ks_2samp's D exactly. Raises ValueError when a side has no values
    (no figure rather than a D of 0 that reads as stability)."""
    if base_n <= 0 or cur_n <= 0:
        raise ValueError(f"KS needs values on both sides, got {base_n} baseline and {cur_n} current values")
    fb_le = np.asarray(base_at_or_below, dtype=np.float64) / base_n
    fb_lt = np.asarray(base_below, dtype=np.float64) / base_n
    fc_le = np.asarray(cur_at_or_below, dtype=np.float64) / cur_n
    fc_lt = np.asarray(cur_below, dtype=np.float64) / cur_n
    statistic = float(max(np.max(np.abs(fb_le - fc_le), initial=0.0), np.max(np.abs(fb_lt - fc_lt), initial=0.0)))
    # Open intervals: below the first point, between consecutive points, above the last one.
    lo_b = np.concatenate([[0.0], fb_le])
    hi_b = np.concatenate([fb_lt, [1.0]])
    lo_c = np.concatenate([[0.0], fc_le])
    hi_c = np.concatenate([fc_lt, [1.0]])
    gaps = np.maximum(hi_b - lo_c, hi_c - lo_b)
    upper = float(min(1.0, max(statistic, np.max(gaps))))
    return KsResult(statistic, upper, ks_p_value(statistic, base_n, cur_n))


@dataclass(frozen=True)
class NumericShift:
    """PSI and KS of one numeric feature's current values against its baseline profile. `psi_p_value` is the
    significance of the PSI bins' difference (`pooled_chi_square` on the same counts, `psi_bins` categories
    after pooling); rows and missing count the current values used and the NaN dropped; `counts` (bins,) are the
    current values' counts in the PSI bins (`bin_counts(present values, psi_edges)`, from the same binning)."""

    psi: float
    psi_p_value: float
    psi_bins: int
    ks: KsResult
    rows: int
    missing: int
    counts: np.ndarray


def numeric_shift(points: np.ndarray, base_at_or_below: np.ndarray, base_below: np.ndarray, base_n: int,
                  psi_edges: np.ndarray, psi_counts: np.ndarray, current: np.ndarray) -> NumericShift:
    """PSI on the baseline's decile edges and KS against its ECDF summary from ONE binning of `current`
    (the profile picks its decile edges among the ECDF points; edges that are not among them, which no profile
    written here has, are binned separately). NaN in `current` is dropped and counted."""
    points = np.asarray(points, dtype=np.float64)
    psi_edges = np.asarray(psi_edges, dtype=np.float64)
    cur_le, cur_lt, missing = ecdf_counts(points, current)
    n = int(np.asarray(current).size) - missing
    positions = np.searchsorted(points, psi_edges, side="left")
    if positions.size and (positions.max() >= points.size or not np.array_equal(points[positions], psi_edges)):
        values = np.asarray(current, dtype=np.float64)
        actual = bin_counts(values[~np.isnan(values)], psi_edges)
    else:
        actual = np.diff(np.concatenate([[0], cur_le[positions], [n]]))
    expected = np.asarray(psi_counts)
    _, bins_p_value, bins = pooled_chi_square(expected, actual, first_row_fixed=True)  # deciles: fixed counts
    ks = ks_against_ecdf(points, base_at_or_below, base_below, base_n, cur_le, cur_lt, n)
    return NumericShift(psi(expected, actual), bins_p_value, bins, ks, n, missing, np.asarray(actual))


def _upper_gamma_regularized(a: float, x: float) -> float:
    """Q(a, x) = Gamma(a, x) / Gamma(a): series below a+1, continued fraction above (Numerical Recipes §6.2)."""
    if x <= 0:
        return 1.0
    log_prefix = -x + a * math.log(x) - math.lgamma(a)
    if x < a + 1:
        term = total = 1.0 / a
        ap = a
        for _ in range(1000):
            ap += 1
            term *= x / ap
            total += term
            if abs(term) < abs(total) * 1e-15:
                break
        return max(0.0, 1.0 - total * math.exp(log_prefix))
    tiny = 1e-300
    b = x + 1 - a
    c = 1 / tiny
    d = 1 / b
    h = d
    for i in range(1, 1000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        delta = d * c
        h *= delta
        if abs(delta - 1) < 1e-15:
            break
    return min(1.0, math.exp(log_prefix) * h)


def chi2_sf(statistic: float, dof: int) -> float:
    """P(X >= statistic) for X chi-square with `dof` degrees of freedom; matches scipy.stats.chi2.sf."""
    if not statistic == statistic:
        return float("nan")
    return _upper_gamma_regularized(dof / 2.0, statistic / 2.0) if dof > 0 else 1.0


def chi_square_against_frequencies(expected_counts: np.ndarray, actual_counts: np.ndarray
                                   ) -> tuple[float, float, float]:
    """Pearson chi-square homogeneity test of two count vectors over the same categories (the 2 x k table,
    categories empty on both sides left out, no continuity correction), as scipy.stats.chi2_contingency.
    Returns (statistic, p-value, Cramér's V = sqrt(chi2 / (N * (min(2, k) - 1))), N the table total, as
    scipy.stats.contingency.association). Fewer than two non-empty categories or an empty side: (0, 1, 0)."""
    table = np.vstack([np.asarray(expected_counts, np.float64), np.asarray(actual_counts, np.float64)])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 0.0, 1.0, 0.0
    total = table.sum()
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / total
    stat = float(((table - expected) ** 2 / expected).sum())
    dof = table.shape[1] - 1
    cramers_v = math.sqrt(stat / (total * min(table.shape[0] - 1, table.shape[1] - 1)))
    return stat, chi2_sf(stat, dof), cramers_v


MIN_EXPECTED = 5.0


def pooled_chi_square(expected_counts: np.ndarray, actual_counts: np.ndarray, min_expected: float = MIN_EXPECTED,
                      *, first_row_fixed: bool = False) -> tuple[float, float, int]:
    """Pearson chi-square homogeneity test of two count vectors after pooling sparse categories, so the
    chi-square approximation holds (Cochran 1954: expected counts of at least 5).

    A category is sparse when its expected count in the smaller sample is below `min_expected`, the expected
    count being the table's own: row total * column total / N, the column total summing both samples (the
    standard expected count of a contingency table, as in scipy.stats.chi2_contingency). Sparse categories are
    merged into one, and if that pool is itself sparse it joins the remaining category with the smallest column
    total. Under the null hypothesis the column totals carry no information about the difference between the
    two rows (they are the sufficient statistic of the common shares), so choosing cells by them leaves the
    test's size intact; choosing by one row's counts alone does not: with a small baseline, categories whose
    baseline count happened to be high escape pooling and their small traffic counts inflate the statistic
    (55 categories, 640 baseline and 500 traffic rows, one distribution: 7% alarms at p < 0.01 when judged on
    the baseline, 0.6% on the column totals, 0.5% for scipy on the raw table; bench/false_alarms.py). When
    pooling would leave fewer than two categories (a 2 x 2 table with a rare cell, say) the table is tested as
    it is and the caller's effect-size floor decides.

    p-value: with no sparse category, the chi-square distribution's; with any, the **Monte Carlo conditional
    p-value** (Hope 1968; R's chisq.test(simulate.p.value = TRUE)): MONTE_CARLO_TABLES tables with the same row and
    column totals drawn from their exact null distribution (the second row multivariate hypergeometric given the
    column totals), each pooled the same way (pooling depends only on the column totals), and p = (1 + tables
    whose statistic reaches the observed one) / (1 + MONTE_CARLO_TABLES). Its size is exact at any sample size,
    where the chi-square approximation of a pooled table is not: PSI deciles at 50 traffic rows false-alarmed in
    3.5% of checks at a 1% p-value, a 55-level categorical at 20 rows in 4.7% (bench/false_alarms.py). The draws
    are seeded from the counts, so a check is reproducible; drawing stops at the MONTE_CARLO_EXCEEDANCES-th table
    reaching the observed statistic (Besag & Clifford 1991: p = 40 / tables drawn), so a null table costs about a
    hundred draws. The smallest p-value it can give is 1 / (1 + MONTE_CARLO_TABLES) = 2e-4.

    `first_row_fixed`: the first row's counts are fixed by construction, not sampled: the PSI bins are the
    baseline's own deciles, so each holds a tenth of it exactly. The column totals then vary only with the
    traffic, and choosing cells by them (or simulating given them) selects on the traffic (3% false alarms at 50
    rows and a 1% p-value). Instead a category is sparse when the second row's expected count under the first
    row's shares is below `min_expected` (a fixed rule), and the Monte Carlo tables keep the first row and draw
    the second as Multinomial(its total, the first row's shares).

    Counts: (k,) each, non-negative. Returns (statistic, p-value, categories tested); with nothing pooled it
    equals `chi_square_against_frequencies`."""
    table = np.vstack([np.asarray(expected_counts, np.float64), np.asarray(actual_counts, np.float64)])
    table = table[:, table.sum(axis=0) > 0]
    rows = table.sum(axis=1)
    if table.shape[1] < 2 or (rows == 0).any():
        return 0.0, 1.0, int(table.shape[1])
    columns = table.sum(axis=0)
    if first_row_fixed:  # judged on the fixed row's shares: the second row's expected counts under them
        columns = rows[1] * table[0] / rows[0]
        floor = min_expected
    else:
        floor = min_expected * rows.sum() / rows.min()  # column total below which the smaller row expects < min
    sparse = columns < floor
    # Which tested cell each category lands in: the same for every table with these column totals.
    cells = np.arange(columns.size)
    if sparse.any() and np.count_nonzero(~sparse) >= 2 - (columns[sparse].sum() >= floor):
        kept = np.flatnonzero(~sparse)
        cells[kept] = np.arange(kept.size)
        if kept.size and columns[sparse].sum() < floor:
            cells[sparse] = int(np.argmin(columns[kept]))
        else:
            cells[sparse] = kept.size
    tested = int(cells.max()) + 1
    pooled = np.zeros((2, tested))
    np.add.at(pooled, (slice(None), cells), table)
    stat, p_value, _ = chi_square_against_frequencies(pooled[0], pooled[1])
    if sparse.any():
        p_value = _monte_carlo_p_value(table, cells, tested, stat, first_row_fixed)
    return stat, p_value, tested


MONTE_CARLO_TABLES = 4_999
# Sequential stopping (Besag & Clifford 1991, Biometrika 78:301): a clearly null table stops after about
# MONTE_CARLO_EXCEEDANCES / p draws instead of all of them; the p-value stays valid.
MONTE_CARLO_EXCEEDANCES = 40
_MONTE_CARLO_FIRST = 100
_MONTE_CARLO_CHUNK = 1_000


def _monte_carlo_p_value(table: np.ndarray, cells: np.ndarray, tested: int, observed: float,
                         first_row_fixed: bool = False) -> float:
    """`pooled_chi_square`'s Monte Carlo p-value: tables with the row and column totals of `table` [2, k] (or,
    `first_row_fixed`, its first row and a multinomial second row of the same total), pooled into `tested` cells
    by `cells`, their Pearson statistics against the observed one (1e-9 relative slack for ties in floating
    point)."""
    import hashlib

    columns = np.rint(table.sum(axis=0)).astype(np.int64)
    second = int(round(table[1].sum()))
    seed = int.from_bytes(hashlib.blake2b(np.rint(table).astype(np.int64).tobytes(), digest_size=8).digest(),
                          "little")
    rng = np.random.default_rng(seed)
    total = columns.sum()
    first = np.bincount(cells, weights=table[0], minlength=tested)
    shares = table[0] / table[0].sum()
    pooled_columns = np.bincount(cells, weights=columns, minlength=tested)
    expected_second = pooled_columns * second / total
    expected_first = pooled_columns - expected_second
    reached = drawn_so_far = 0
    size = _MONTE_CARLO_FIRST
    while drawn_so_far < MONTE_CARLO_TABLES:
        size = min(size, MONTE_CARLO_TABLES - drawn_so_far)
        drawn = rng.multinomial(second, shares, size=size) if first_row_fixed else \
            rng.multivariate_hypergeometric(columns, second, size=size)
        in_cells = np.zeros((size, tested))
        np.add.at(in_cells, (slice(None), cells), drawn)
        if first_row_fixed:  # the column totals follow the drawn row
            sums = first + in_cells
            expected_second = sums * second / total
            expected_first = sums - expected_second
            with np.errstate(divide="ignore", invalid="ignore"):
                stats = np.nansum((in_cells - expected_second) ** 2 / expected_second
                                  + (first - expected_first) ** 2 / expected_first, axis=1)
        else:
            stats = ((in_cells - expected_second) ** 2 / expected_second).sum(axis=1) + \
                ((pooled_columns - in_cells - expected_first) ** 2 / expected_first).sum(axis=1)
        exceed = np.flatnonzero(stats >= observed * (1 - 1e-9))
        if reached + exceed.size >= MONTE_CARLO_EXCEEDANCES:
            # Besag & Clifford (1991): stop at the h-th table reaching the observed statistic; p = h / tables drawn.
            return MONTE_CARLO_EXCEEDANCES / (drawn_so_far + int(exceed[MONTE_CARLO_EXCEEDANCES - reached - 1]) + 1)
        reached += exceed.size
        drawn_so_far += size
        size = _MONTE_CARLO_CHUNK
    return (1 + reached) / (1 + MONTE_CARLO_TABLES)


def equal_weight_cramers_v(expected_counts: np.ndarray, actual_counts: np.ndarray) -> float:
    """Cramér's V of the 2 x k table with both rows rescaled to the same total: sqrt(1/2 * sum_j (p_j - q_j)^2 /
    (p_j + q_j)) over the two sides' category shares p and q. It is the V the same two distributions give with
    equal sample sizes (0 identical, 1 disjoint), so it measures the shift alone; the classic V of the same change
    of shares shrinks about as sqrt(n / N) as a baseline of N values outgrows n values of traffic. 0.0 when a
    side is empty."""
    e = np.asarray(expected_counts, np.float64)
    a = np.asarray(actual_counts, np.float64)
    if e.sum() == 0 or a.sum() == 0:
        return 0.0
    p, q = e / e.sum(), a / a.sum()
    both = (p + q) > 0
    return math.sqrt(min(1.0, 0.5 * float(np.sum((p[both] - q[both]) ** 2 / (p[both] + q[both])))))
