"""The statistics of the benchmarks, in one place: pure functions of numbers, no training.

Summaries (mean_std) and the tests `bench.py claims` decides by: Student's t quantile (written out,
scipy is not a dependency), the binomial standard error of an accuracy on a finite test list, the
paired t interval, superiority and non-inferiority against a stated effect, and Spearman's rho.
How the claims program combines them is its RULE (experiments/claims.py).
"""
import functools
import math
import statistics

LEVEL = 0.95            # two-sided confidence level of every interval (ours)
MIN_EFFECT = 5.0        # points of top-1: a smaller difference is "not shown", however sure (ours)
NI_MARGIN = 5.0         # claim (d): MGDA may sit at most this many points below constant lambda (ours)


def mean_std(values):
    """{"mean", "std", "n"} of the values that are not None; std: sample std (n - 1), None for n < 2."""
    v = [x for x in values if x is not None]
    return {"mean": statistics.mean(v) if v else None, "std": statistics.stdev(v) if len(v) > 1 else None,
            "n": len(v)}


@functools.lru_cache(maxsize=None)
def t_quantile(p: float, df: int) -> float:
    """The p-quantile (0.5 <= p < 1) of Student's t with df degrees of freedom, without scipy: the CDF
    1/2 + integral_0^t of the density by Simpson's rule (2000 panels), inverted by bisection."""
    if not (0.5 <= p < 1 and df >= 1):
        raise ValueError(f"t_quantile: needs 0.5 <= p < 1 and df >= 1, got p={p}, df={df}")
    c = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)
    density = lambda x: c * (1 + x * x / df) ** (-(df + 1) / 2)

    def cdf(t, m=2000):
        h = t / m
        return 0.5 + h / 3 * (density(0) + density(t) + sum((4 if i % 2 else 2) * density(i * h) for i in range(1, m)))

    lo, hi = 0.0, 1.0
    while cdf(hi) < p:
        lo, hi = hi, 2 * hi
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf(mid) < p else (lo, mid)
    return (lo + hi) / 2


def binomial_se(top1: float, videos: int) -> float:
    """The binomial standard error, in points, of a top-1 (%) measured on `videos` test videos:
    sqrt(p (1 - p) / n), with p = (hits + 1) / (n + 2) so that 0 % and 100 % keep a spread. What one
    run's number would vary by if its test list were drawn again."""
    p = (top1 / 100 * videos + 1) / (videos + 2)
    return 100 * math.sqrt(p * (1 - p) / videos)


def paired_interval(diffs, floor: float = 0.0, level: float = LEVEL):
    """The mean of paired differences (or of any per-seed values) and its two-sided t interval,
    with the per-seed standard deviation floored at `floor`. None for fewer than 2 values."""
    n = len(diffs)
    if n < 2:
        return None
    mean, sd = statistics.mean(diffs), statistics.stdev(diffs)
    half = t_quantile(1 - (1 - level) / 2, n - 1) * max(sd, floor) / math.sqrt(n)
    return {"mean": mean, "sd": sd, "floor": floor, "n": n, "lo": mean - half, "hi": mean + half}


def superiority(iv, min_effect: float = MIN_EFFECT) -> str:
    """'A > B': holds when the interval lies above 0 and the mean difference is >= min_effect;
    reversed when it lies below 0 and the mean is <= -min_effect; else not shown."""
    if iv["lo"] > 0 and iv["mean"] >= min_effect:
        return "holds"
    if iv["hi"] < 0 and iv["mean"] <= -min_effect:
        return "reversed"
    return "not shown"


def noninferiority(iv, margin: float = NI_MARGIN) -> str:
    """'A >= B' within a margin: holds when the whole interval lies above -margin (A is not worse
    by more than the margin); reversed when it lies below -margin (A is worse by more); else not shown."""
    return "holds" if iv["lo"] > -margin else "reversed" if iv["hi"] < -margin else "not shown"


def spearman(pairs):
    """Spearman's rho of (x, y) pairs: Pearson's r of their ranks (ties share their mean rank); None
    for fewer than 3 pairs or a constant coordinate. Unlike Pearson's r, one outlying epoch (a
    validation-loss spike) moves it by one rank, not by its size."""
    def ranks(v):
        order = sorted(range(len(v)), key=v.__getitem__)
        out = [0.0] * len(v)
        i = 0
        while i < len(v):
            j = i
            while j + 1 < len(v) and v[order[j + 1]] == v[order[i]]:
                j += 1
            for k in order[i:j + 1]:
                out[k] = (i + j) / 2 + 1
            i = j + 1
        return out
    if len(pairs) < 3:
        return None
    try:
        return statistics.correlation(ranks([p[0] for p in pairs]), ranks([p[1] for p in pairs]))
    except statistics.StatisticsError:      # a constant coordinate
        return None


