"""Distillation: the loss against its formula in float64, the teacher's rows in the student's
order, a student that demonstrably learns from the teacher (a teacher trained on flipped
labels pulls it away from the labels), and one clear error per misuse."""
import pytest
import torch
from typer.testing import CliRunner

from attnkit.cli import app
from attnkit.errors import ConfigError
from attnkit.run import evaluate, train
from attnkit.train import DistillConfig, WithTeacher, distillation_loss


def test_the_loss_is_the_formula():
    torch.manual_seed(1)
    for b, c, t, alpha in ((4, 2, 2.0, 0.5), (7, 5, 1.0, 0.9), (3, 3, 4.0, 0.0)):
        s, te = torch.randn(b, c, dtype=torch.float64), torch.randn(b, c, dtype=torch.float64)
        labels = torch.randint(0, c, (b,))

        class M:
            def loss(self, out, batch):
                return torch.nn.functional.cross_entropy(out["logits"], batch["labels"])

        got = distillation_loss(M(), DistillConfig(teacher="x", temperature=t, alpha=alpha))(
            {"logits": s}, {"labels": labels, "teacher": torch.log_softmax(te, -1)})
        pt, ps = torch.softmax(te / t, -1), torch.softmax(s / t, -1)
        soft = (pt * (pt.log() - ps.log())).sum(-1).mean() * t * t
        hard = -torch.log_softmax(s, -1)[torch.arange(b), labels].mean()
        assert got.item() == pytest.approx((alpha * soft + (1 - alpha) * hard).item(), rel=1e-5)


def test_batches_carry_the_teachers_rows():
    class Data:
        lengths = [3, 1, 2]

        def __len__(self):
            return 3

        def collate(self, idx):
            return {"labels": torch.tensor(idx)}

    rows = torch.arange(6.0).view(3, 2)
    data = WithTeacher(Data(), rows)
    batch = data.collate([2, 0])
    assert torch.equal(batch["teacher"], rows[[2, 0]]) and data.lengths == [3, 1, 2] and len(data) == 3
    with pytest.raises(ValueError, match="2 teacher rows for 3"):
        WithTeacher(Data(), rows[:2])


def flipped(files, tmp_path):
    out = {}
    for split, path in files.items():
        lines = path.read_text(encoding="utf-8").splitlines()
        swap = {"pos": "neg", "neg": "pos"}
        body = [f"{t}\t{swap[y]}" for t, y in (ln.rsplit("\t", 1) for ln in lines[1:])]
        out[split] = tmp_path / f"flipped-{split}.tsv"
        out[split].write_text("\n".join([lines[0], *body]) + "\n", encoding="utf-8")
    return out


def student_config(files, **distill):
    return {"task": "text_classification",
            "data": {"train": str(files["train"]), "dev": str(files["dev"]), "text_column": "sentence"},
            "model": {"embedding": {"dim": 16}, "encoder": {"type": "textcnn", "channels": 16, "kernel_sizes": [1, 2]}, "pooler": {"type": "max"}},
            "train": {"epochs": 4, "batch_size": 16, "report": False, "optimizer": {"name": "adam", "lr": 0.01},
                      "distill": {"precision": "fp32", **distill}}}  # scored in fp32: compared with fp32 below


def test_the_student_learns_from_the_teacher(text_files_s, tmp_path):
    wrong = flipped(text_files_s, tmp_path)
    teacher = tmp_path / "teacher"
    train({**student_config(wrong), "model": {"embedding": {"dim": 16}, "encoder": {"type": "lstm", "hidden": 16}}},
          out=teacher, progress=False)
    assert evaluate(teacher, text_files_s["test"])["accuracy"] < 0.3  # it learnt the flipped labels
    plain = train(student_config(text_files_s), out=tmp_path / "plain", progress=False)
    pulled = train(student_config(text_files_s, teacher=str(teacher), alpha=1.0), out=tmp_path / "pulled",
                   progress=False)
    assert plain.dev["accuracy"] > 0.8
    # the best epoch is picked on the true labels, so look at the last epoch: the teacher won
    from attnkit.run_files import RunFiles

    last = [r for r in RunFiles(tmp_path / "pulled").read_metrics() if r.get("kind") == "epoch"][-1]
    accuracy = last.get("dev_accuracy", last.get("dev", {}).get("accuracy"))
    assert accuracy is not None and accuracy < 0.3, "a student on the teacher's term alone follows the teacher"


def test_the_teacher_is_scored_in_the_students_label_order(text_run, text_files_s):
    from attnkit.run import resolve_config
    from attnkit.run.distill import open_teacher, teacher_log_probs
    from attnkit.tasks import get_task

    cfg = resolve_config(student_config(text_files_s, teacher=str(text_run)))
    teacher = open_teacher(cfg, get_task(cfg.task))
    a = teacher_log_probs(teacher, cfg, ["neg", "pos"], 300)
    b = teacher_log_probs(teacher, cfg, ["pos", "neg"], 300)
    assert a.shape == (300, 2) and torch.equal(a, b.flip(1))
    assert torch.allclose(a.exp().sum(1), torch.ones(300), atol=1e-5)
    with pytest.raises(ConfigError, match=r"does not know the student's label\(s\) \['maybe'\]"):
        teacher_log_probs(teacher, cfg, ["neg", "maybe"], 300)


def test_the_transfer_set_is_labelled_by_the_teacher(text_run, text_files_s, tmp_path):
    from attnkit.run import resolve_config
    from attnkit.run.distill import open_teacher, teacher_log_probs, with_transfer_set
    from attnkit.tasks import get_task, prepare

    cfg = resolve_config(student_config(text_files_s, teacher=str(text_run), augment=2))
    task = get_task(cfg.task)
    prepared = prepare(cfg)
    fz, n = prepared.featurized, len(prepared.train)
    teacher = open_teacher(cfg, task)
    rows = teacher_log_probs(teacher, cfg, fz.labels, n)
    data, both = with_transfer_set(teacher, cfg, task, fz, prepared.train, rows)
    assert n < len(data) <= 3 * n and len(both) == len(data)
    assert torch.equal(both[:n], rows)  # the training split first, unchanged, in its order
    first = data.collate(list(range(n)))
    assert torch.equal(first["labels"], prepared.train.collate(list(range(n)))["labels"])
    extra = data.collate(list(range(n, len(data))))
    # a new text's label is the teacher's top class, and its row is the teacher's on that text
    assert torch.equal(extra["labels"], both[n:].argmax(-1))
    from attnkit.data.augment import transfer_texts
    from attnkit.tasks.prediction import stack_batches

    new = transfer_texts(task.read_splits(cfg)[0].texts, 2, seed=cfg.train.seed)
    assert len(new) == len(data) - n
    # rows spread over the whole set, the last included: each is the teacher's on its own text
    picks = sorted({0, 1, len(new) // 3, len(new) // 2, len(new) - 2, len(new) - 1})
    probe = stack_batches([e.batch for e in teacher.task.encode_inputs(teacher.featurized, [new[i] for i in picks])])
    with torch.no_grad():
        direct = torch.log_softmax(teacher.model(probe)["logits"].float(), -1)
    order = [teacher.featurized.labels.index(name) for name in fz.labels]
    assert torch.allclose(both[[n + i for i in picks]], direct[:, order], atol=1e-4)
    # a student trained with it runs end to end
    result = train(student_config(text_files_s, teacher=str(text_run), augment=1), out=tmp_path / "s",
                   progress=False)
    assert result.dev["accuracy"] > 0.6


def test_an_empty_transfer_set_leaves_the_training_split(text_run, text_files_s, monkeypatch):
    import attnkit.run.distill as D
    from attnkit.run import resolve_config
    from attnkit.tasks import get_task, prepare

    monkeypatch.setattr(D, "transfer_texts", lambda *a, **k: [])  # every draft dropped (one-word texts)
    cfg = resolve_config(student_config(text_files_s, teacher=str(text_run), augment=2))
    task, prepared = get_task(cfg.task), prepare(cfg)
    teacher = D.open_teacher(cfg, task)
    rows = D.teacher_log_probs(teacher, cfg, prepared.featurized.labels, len(prepared.train))
    data, both = D.with_transfer_set(teacher, cfg, task, prepared.featurized, prepared.train, rows)
    assert data is prepared.train and both is rows


def test_a_transfer_set_needs_texts(image_run, tmp_path):
    import yaml

    cfg = yaml.safe_load((image_run / "config.yaml").read_text())
    cfg["train"]["distill"] = {"teacher": str(image_run), "augment": 2}
    with pytest.raises(ConfigError, match="train.distill.augment: .*task image_classification has none"):
        train(cfg, out=tmp_path / "s", progress=False)
    assert not (tmp_path / "s").exists()


def test_misuse_is_one_clear_error(text_files_s, tagger_run, tmp_path):
    with pytest.raises(ConfigError, match="train.distill.teacher: .*no such run directory"):
        train(student_config(text_files_s, teacher=str(tmp_path / "none")), out=tmp_path / "a", progress=False)
    with pytest.raises(ConfigError, match="is a token_classification run; the student is text_classification"):
        train(student_config(text_files_s, teacher=str(tagger_run)), out=tmp_path / "b", progress=False)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_distill_command(text_run, text_files_s, tmp_path):
    import yaml

    cfg = tmp_path / "student.yaml"
    cfg.write_text(yaml.safe_dump(student_config(text_files_s)))
    r = CliRunner().invoke(app, ["distill", "--teacher", str(text_run), "--student", str(cfg), "--out",
                                 str(tmp_path / "s"), "--temperature", "3", "--augment", "1", "--set", "train.epochs=1"])
    assert r.exit_code == 0, r.output
    assert "run directory:" in r.output
    saved = yaml.safe_load((tmp_path / "s" / "config.yaml").read_text())
    assert saved["train"]["distill"] == {"teacher": str(text_run), "temperature": 3.0, "alpha": 0.5,
                                         "augment": 1, "precision": "fp32"}
