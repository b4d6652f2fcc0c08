"""Metrics against hand computation from their definitions."""
import pytest

from attnkit.evaluate import classification_metrics, tagging_metrics


def test_classification_metrics_from_definitions():
    y_true = [0, 0, 1, 1, 2, 2, 2]
    y_pred = [0, 1, 1, 1, 2, 0, 2]
    m = classification_metrics(y_true, y_pred, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(5 / 7)
    # class a: tp 1, fp 1, fn 1 -> p r f = .5; b: tp 2, fp 1, fn 0; c: tp 2, fp 0, fn 1
    pa, ra = 1 / 2, 1 / 2
    pb, rb = 2 / 3, 1.0
    pc, rc = 1.0, 2 / 3
    f = lambda p, r: 2 * p * r / (p + r)
    assert m["per_class"]["b"]["precision"] == pytest.approx(pb)
    assert m["macro_f1"] == pytest.approx((f(pa, ra) + f(pb, rb) + f(pc, rc)) / 3)
    assert m["micro_f1"] == pytest.approx(5 / 7)
    assert m["confusion_matrix"]["matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 2]]


def test_entity_f1_counts_whole_entities():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"], ["B-ORG", "O"]]
    m = tagging_metrics(gold, pred)
    # entities gold: PER(0-1), LOC(3), ORG(0); pred: PER(0-1), ORG(3), ORG(0): 2 correct of 3 and 3
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["per_class"]["LOC"]["recall"] == 0.0 and m["per_class"]["PER"]["f1"] == 1.0
    assert m["token_accuracy"] == pytest.approx(5 / 6)
    # a partially matched entity is wrong as a whole
    assert tagging_metrics([["B-PER", "I-PER"]], [["B-PER", "O"]])["f1"] == 0.0


def test_out_of_scope_metrics_from_definitions():
    names = ["a", "b", "oos"]
    y_true = [0, 0, 1, 2, 2, 2, 2]
    y_pred = [0, 1, 1, 2, 2, 0, 2]
    m = classification_metrics(y_true, y_pred, names, out_of_scope="oos")
    assert m["in_scope_accuracy"] == pytest.approx(2 / 3)  # in-scope: 0->0, 0->1, 1->1
    assert m["oos_recall"] == pytest.approx(3 / 4)
    assert m["oos_precision"] == pytest.approx(1.0)
    assert "oos_recall" not in classification_metrics(y_true, y_pred, names)
