"""The statistics of the benchmarks, in one place: pure functions of numbers, no training.

A run of the claims benchmark either learns its task or stays near chance, so a row is summarised
first by its successes (k of n seeds at a stated threshold, the median, the mean over successes) and
two rows are compared by Fisher's exact test on those counts; only where both rows succeed reliably
is the paired t interval of their per-seed differences the test. Power comes from resampling the
observed per-seed outcomes (a bootstrap), not from a Gaussian. Also here: mean_std, Student's t
quantile and Spearman's rho (written out: scipy is not a dependency), and the binomial standard
error of an accuracy on a finite test list. How the claims program combines them is its RULE
(experiments/claims.py).
"""
import functools
import math
import random
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


# --- outcomes that are bimodal: successes, Fisher's exact test, resampled power -----------------
def successes(values, threshold: float):
    """A row's runs as successes: {"k": runs >= threshold, "n": runs, "threshold", "median": of all
    runs, "mean_success": mean over the successes (None without one)}; values that are None are left
    out. For outcomes that fall into two clusters the mean and its spread describe neither."""
    v = [x for x in values if x is not None]
    won = [x for x in v if x >= threshold]
    return {"k": len(won), "n": len(v), "threshold": threshold, "median": statistics.median(v) if v else None,
            "mean_success": statistics.mean(won) if won else None}


@functools.lru_cache(maxsize=None)
def fisher_exact(k1: int, n1: int, k2: int, n2: int) -> float:
    """Two-sided p of Fisher's exact test that k1 successes of n1 and k2 of n2 come from one rate.

    Given both margins (n1, n2 runs; K = k1 + k2 successes), the successes of the first row follow the
    hypergeometric law P(x) = C(n1, x) C(n2, K - x) / C(n1 + n2, K); p sums P over every x no more
    likely than the observed k1. The weights are integers, so the comparison and the sum are exact."""
    if not (0 <= k1 <= n1 and 0 <= k2 <= n2 and n1 + n2 > 0):
        raise ValueError(f"fisher_exact: needs 0 <= k <= n for both rows, got {k1}/{n1} and {k2}/{n2}")
    K = k1 + k2
    weights = [math.comb(n1, x) * math.comb(n2, K - x) for x in range(max(0, K - n2), min(n1, K) + 1)]
    observed = math.comb(n1, k1) * math.comb(n2, K - k1)
    return sum(w for w in weights if w <= observed) / math.comb(n1 + n2, K)


def fisher_verdict(k1: int, n1: int, k2: int, n2: int, level: float = LEVEL) -> str:
    """'A succeeds more often than B': holds when Fisher's p < 1 - level and A's rate is the higher,
    reversed when p < 1 - level and it is the lower, else not shown."""
    if fisher_exact(k1, n1, k2, n2) >= 1 - level:
        return "not shown"
    return "holds" if k1 * n2 > k2 * n1 else "reversed"


def resampled_power(pairs, decide, target: str, seeds: int = 0, trials: int = 2000, seed: int = 0) -> float:
    """The share of `trials` simulated experiments in which decide(sample) returns `target`; each
    sample is `seeds` (default: as many as observed) per-seed results drawn with replacement from the
    observed `pairs` (a bootstrap: the outcome of a new seed distributed as the seeds run so far,
    successes and failures in their observed proportions, not as a Gaussian). Seeded: the same
    inputs give the same figure."""
    rng = random.Random(seed)
    m = seeds or len(pairs)
    return sum(decide([rng.choice(pairs) for _ in range(m)]) == target for _ in range(trials)) / trials


# --- a dose-response: does the outcome move with the dose? --------------------------------------
def trend_test(groups, level: float = LEVEL):
    """A trend over ordered doses: groups = [(dose, [outcomes of its runs])] in increasing dose.
    Spearman's rho between each run's dose rank and its outcome, over all runs; its two-sided p from
    the normal approximation z = rho sqrt(n - 1) (good from about 10 runs; the ties of the dose ranks
    are in rho already). {"rho", "p", "n", "verdict": "rises" / "falls" / "no trend" at p < 1 - level};
    None for fewer than 3 runs or outcomes that never vary."""
    pairs = [(i, y) for i, (_, ys) in enumerate(groups) for y in ys if y is not None]
    rho = spearman(pairs)
    if rho is None:
        return None
    p = math.erfc(abs(rho) * math.sqrt(len(pairs) - 1) / math.sqrt(2))
    verdict = "no trend" if p >= 1 - level else "rises" if rho > 0 else "falls"
    return {"rho": rho, "p": p, "n": len(pairs), "verdict": verdict}


def trend_power(groups, target: str, runs_per_dose: int = 0, trials: int = 2000, seed: int = 0) -> float:
    """The share of `trials` simulated dose-responses in which trend_test's verdict is `target`; each
    draws `runs_per_dose` runs (default: as many as observed) with replacement from each dose's own
    observed outcomes (a bootstrap within each dose, not a Gaussian). Seeded."""
    rng = random.Random(seed)
    hits = 0
    for _ in range(trials):
        sample = [(d, [rng.choice(ys) for _ in range(runs_per_dose or len(ys))]) for d, ys in groups if ys]
        t = trend_test(sample)
        hits += (t["verdict"] if t else "no trend") == target
    return hits / trials
