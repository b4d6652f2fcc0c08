"""Model health on the stream: each period's inputs and outputs compared with a reference (the
run's dev data, scored by the same model) by the population stability index (PSI) and a
two-sample test (Kolmogorov-Smirnov for the features, within each predicted class;
chi-square for the predicted-class mix).

A period drifts when an input feature (length, unknown-word rate, word pieces per word, model
confidence) has PSI >= ``psi_limit`` (0.25: the usual "major shift") and its test's p-value
is below ``p_limit`` (1e-4: four features tested every period): PSI alone is noisy on a small period, a p-value alone flags shifts too
small to matter on a large one. The predicted-class mix is shown but does not raise a drift
alert by itself: a sentiment turn changes it, and that is the sentiment detector's alert."""
from __future__ import annotations

import numpy as np
from scipy import stats

from .scoring import HEALTH

MIN_TEXTS = 30


def bins(reference: np.ndarray, n: int = 10) -> np.ndarray:
    """Inner bin edges at the reference's deciles (repeated edges merged)."""
    return np.unique(np.quantile(reference, np.linspace(0, 1, n + 1)[1:-1]))


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of two count vectors over the same bins (half a count added
    to every bin, so an empty bin is finite)."""
    e = (expected + 0.5) / (expected.sum() + 0.5 * len(expected))
    a = (actual + 0.5) / (actual.sum() + 0.5 * len(actual))
    return float(np.sum((a - e) * np.log(a / e)))


def binned(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts of ``values`` in the bins the inner ``edges`` make, closed on the right
    (``(-inf, e1], (e1, e2], ...``): a reference whose values are all 0 (no unknown words)
    still tells 0 from more."""
    return np.bincount(np.searchsorted(edges, values, side="left"), minlength=len(edges) + 1)


def compare(reference: dict, period: dict, labels: list[str], psi_limit: float = 0.25,
            p_limit: float = 1e-4) -> dict:
    """One period's drift against the reference: ``{feature: {psi, p}}``, the class mix's,
    ``n`` and ``drift`` (the features that drifted; empty when none or the period has fewer
    than :data:`MIN_TEXTS` texts).

    Features are compared within each predicted class: the reference's histogram is the mix of
    its per-class histograms in the period's class proportions, and the p-value is the
    smallest per-class KS p-value times the classes tested (Bonferroni). A sentiment turn
    changes the class mix, and with it length and confidence (negative news is written and
    scored differently): compared as a whole, that would read as drift."""
    ref_labels, now_labels = np.asarray(reference["label"]), np.asarray(period["label"])
    out: dict = {"n": len(now_labels), "features": {}, "drift": []}
    for name in HEALTH:
        ref, now = np.asarray(reference[name], float), np.asarray(period[name], float)
        edges = bins(ref)
        expected, pvalues = np.zeros(len(edges) + 1), []
        for label in labels:
            r, c = ref[ref_labels == label], now[now_labels == label]
            if not len(c):
                continue
            if len(r):  # the reference's shape for this class, at the period's count
                expected += binned(r, edges) / len(r) * len(c)
            if len(r) >= 5 and len(c) >= 5:
                pvalues.append(float(stats.ks_2samp(r, c).pvalue))
        p = min(1.0, min(pvalues) * len(pvalues)) if pvalues else 1.0
        out["features"][name] = {"psi": round(psi(expected, binned(now, edges)), 4), "p": p,
                                 "mean": round(float(now.mean()), 4) if len(now) else None,
                                 "reference_mean": round(float(ref.mean()), 4)}
    ref_mix = np.array([reference["label"].count(k) for k in labels], float)
    mix = np.array([period["label"].count(k) for k in labels], float)
    expected = (ref_mix + 0.5) / (ref_mix.sum() + 0.5 * len(labels)) * mix.sum()
    p = float(stats.chisquare(mix, expected).pvalue) if mix.sum() else 1.0
    out["class_mix"] = {"psi": round(psi(ref_mix, mix), 4), "p": p,
                        "shares": {k: round(float(v / max(mix.sum(), 1)), 4) for k, v in zip(labels, mix)}}
    if out["n"] >= MIN_TEXTS:
        out["drift"] = [name for name, f in out["features"].items() if f["psi"] >= psi_limit and f["p"] < p_limit]
    return out
