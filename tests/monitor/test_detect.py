"""The index's arithmetic, the change detectors on series with known changes, and the drift
statistics against their formulas."""
import math

import numpy as np
import pytest
from scipy import stats

from attnkit.monitor import DETECTORS
from attnkit.monitor.drift import binned, bins, compare, psi
from attnkit.monitor.index import Point


def test_point_index_and_band_follow_the_multinomial_formula():
    p = Point("2026-01-01", n=50, positive=20, negative=10)
    assert p.index == pytest.approx(0.2)
    # Var(share+ - share-) = (p(1-p) + q(1-q) + 2pq) / n for multinomial shares p, q, here with
    # one pseudo-text of each kind (n + 3 texts)
    pp, qq = 21 / 53, 11 / 53
    assert p.se == pytest.approx(math.sqrt((pp * (1 - pp) + qq * (1 - qq) + 2 * pp * qq) / 53))
    one = Point("x", n=1, positive=1, negative=0).to_dict()
    assert one["low"] < 0.2 and one["high"] == 1.0  # one text: a wide band, not [1, 1]
    d = p.to_dict()
    assert d["low"] == pytest.approx(0.2 - 1.96 * p.se, abs=1e-4) and d["high"] == pytest.approx(0.2 + 1.96 * p.se,
                                                                                                   abs=1e-4)


def sampled(days: int, negative, n: int = 50, seed: int = 0, positive: float = 0.3) -> list[Point]:
    """Days of ``n`` texts: negative share ``negative(day)``, positive ``positive``, rest neutral."""
    rng = np.random.default_rng(seed)
    out = []
    for d in range(days):
        q = negative(d)
        counts = rng.multinomial(n, [positive, q, 1 - positive - q])
        out.append(Point(f"d{d:03d}", n, int(counts[0]), int(counts[1])))
    return out


@pytest.mark.parametrize("name, after", [("cusum", 0.45), ("zscore", 0.6)])
def test_a_shift_is_mostly_found_within_two_days_and_dated(name, after):
    # cusum: the 20% -> 45% negative (2.5 daily standard deviations at 50 texts a day);
    # a one-period z-score needs a larger jump (measured in benchmarks/monitor.py)
    # (a false alarm just before the shift starts a new regime whose baseline absorbs it: one
    # miss in 12 is allowed)
    delays, missed = [], 0
    for seed in range(12):
        alarms = [a for a in DETECTORS.get(name)(sampled(90, lambda d: 0.2 if d < 60 else after, seed=seed), 1.0)
                  if a.at >= 60]
        if not alarms:
            missed += 1
            continue
        first = alarms[0]
        assert first.direction == "down" and first.current < first.baseline and first.since <= first.at
        delays.append(first.at - 60)
    assert missed <= 1 and np.median(delays) <= 2 and max(delays) <= 10, (missed, delays)


@pytest.mark.parametrize("name", ["cusum", "zscore"])
def test_a_steady_stream_raises_few_false_alarms(name):
    total = sum(len(DETECTORS.get(name)(sampled(200, lambda d: 0.25, seed=s), 1.0)) for s in range(5))
    assert total <= 5  # at most 1 per 200 days on average (target: <= 1 per 100)


@pytest.mark.parametrize("name", ["cusum", "zscore"])
def test_higher_sensitivity_alarms_no_later(name):
    points = sampled(100, lambda d: 0.2 if d < 50 else 0.32, seed=3)
    first = {}
    for s in (0.5, 1.0, 2.0):
        hits = [a.at for a in DETECTORS.get(name)(points, s) if a.at >= 50]
        first[s] = hits[0] if hits else 10 ** 6
    assert first[2.0] <= first[1.0] <= first[0.5]


def test_an_upturn_is_up_and_one_lasting_shift_is_mostly_one_alert():
    extra = 0
    for seed in range(10):
        alarms = [a for a in DETECTORS.get("cusum")(sampled(150, lambda d: 0.4 if d < 50 else 0.1, seed=seed), 1.0)
                  if a.at >= 50]
        assert alarms[0].direction == "up"
        extra += len(alarms) - 1
    assert extra <= 3  # the new regime does not keep alarming (10 x 100 days after the turn)


def test_psi_matches_its_formula():
    e, a = np.array([10.0, 20, 30, 40]), np.array([40.0, 30, 20, 10])
    pe, pa = (e + 0.5) / (e.sum() + 2), (a + 0.5) / (a.sum() + 2)
    assert psi(e, a) == pytest.approx(sum((x - y) * math.log(x / y) for x, y in zip(pa, pe)))
    assert psi(e, e) == pytest.approx(0.0)


def test_bins_are_reference_deciles_and_counts_cover_every_value():
    ref = np.arange(100.0)
    edges = bins(ref)
    assert len(edges) == 9
    counts = binned(ref, edges)
    assert counts.sum() == 100 and counts.min() >= 9


def reference(rng, n=1000):
    return {"confidence": rng.uniform(0.5, 1.0, n).tolist(), "words": rng.integers(10, 30, n).tolist(),
            "unknown": rng.uniform(0, 0.05, n).tolist(), "pieces": rng.uniform(1.0, 1.3, n).tolist(),
            "label": rng.choice(["neg", "pos", "neu"], n, p=[0.2, 0.3, 0.5]).tolist()}


def test_compare_flags_a_changed_feature_and_not_a_same_distribution_period():
    rng = np.random.default_rng(0)
    ref = reference(rng)
    same = compare(ref, reference(np.random.default_rng(1), 250), ["neg", "pos", "neu"])
    assert same["drift"] == [] and same["n"] == 250
    longer = reference(np.random.default_rng(2), 250)
    longer["words"] = (np.asarray(longer["words"]) * 3).tolist()
    out = compare(ref, longer, ["neg", "pos", "neu"])
    assert out["drift"] == ["words"]
    # the p-value: per predicted class, Bonferroni over the classes
    shorter = reference(np.random.default_rng(3), 250)
    shorter["words"] = (np.asarray(shorter["words"]) - 5).tolist()
    ps = []
    for c in ("neg", "pos", "neu"):
        r = [w for w, lab in zip(ref["words"], ref["label"]) if lab == c]
        n = [w for w, lab in zip(shorter["words"], shorter["label"]) if lab == c]
        ps.append(stats.ks_2samp(r, n).pvalue)
    got = compare(ref, shorter, ["neg", "pos", "neu"])["features"]["words"]["p"]
    assert got == pytest.approx(min(1.0, 3 * min(ps)), rel=1e-9)


def test_a_class_mix_change_with_class_dependent_features_is_not_drift():
    # negative texts are longer and scored less confidently; a period that is mostly negative
    # has longer, less confident texts without any change in what the inputs look like
    def texts(n, neg_share, seed):
        r = np.random.default_rng(seed)
        lab = np.where(r.random(n) < neg_share, "neg", "pos")
        return {"label": lab.tolist(), "words": np.where(lab == "neg", r.integers(25, 40, n), r.integers(8, 20, n)).tolist(),
                "confidence": np.where(lab == "neg", r.uniform(0.5, 0.8, n), r.uniform(0.8, 1.0, n)).tolist(),
                "unknown": r.uniform(0, 0.05, n).tolist(), "pieces": r.uniform(1.0, 1.3, n).tolist()}
    ref = texts(2000, 0.2, 1)
    turned = texts(300, 0.8, 2)
    out = compare(ref, turned, ["neg", "pos"])
    assert out["drift"] == [] and out["class_mix"]["psi"] > 1
    assert out["features"]["words"]["psi"] < 0.1 and out["features"]["confidence"]["psi"] < 0.1


def test_compare_does_not_alert_on_a_small_period_or_on_the_class_mix_alone():
    rng = np.random.default_rng(0)
    ref = reference(rng)
    small = reference(np.random.default_rng(5), 10)
    small["words"] = [500] * 10
    assert compare(ref, small, ["neg", "pos", "neu"])["drift"] == []
    turned = reference(np.random.default_rng(6), 300)
    turned["label"] = ["neg"] * 300
    out = compare(ref, turned, ["neg", "pos", "neu"])
    assert out["drift"] == [] and out["class_mix"]["psi"] > 1 and out["class_mix"]["shares"]["neg"] == 1.0
