"""The ``attnkit`` command line."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from . import __version__
from .errors import AttnkitError

app = typer.Typer(help="attnkit: programmable attention, models, training and deployment on PyTorch.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
console = Console(soft_wrap=True)  # long paths and messages stay on one line when piped
_state = {"debug": False}


def _escape(text) -> str:
    """``text`` with rich markup characters escaped (titles and messages may hold brackets)."""
    from rich.markup import escape

    return escape(str(text))


def _version(value: bool):
    if value:
        console.print(f"attnkit {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks of attnkit errors.")] = False,
):
    """attnkit command line."""
    _state["debug"] = debug


@app.command()
def demo(
    what: Annotated[str, typer.Argument(help="train (a model on embedded data) or attention (kernels vs float64).")]
    = "train",
    out: Annotated[Path | None, typer.Option("--out", help="Run directory for the trained demo model.")] = None,
):
    """Run a demo on embedded data (no download): train a BiLSTM + attention classifier, or
    check programmable attention against its float64 reference."""
    from .demos import run_attention_demo, run_training_demo
    from .errors import ConfigError

    if what == "train":
        run_training_demo(console, out)
    elif what == "attention":
        run_attention_demo(console)
    else:
        raise ConfigError(f"demo: unknown demo {what!r}; known: train, attention")


@app.command()
def train(
    config: Annotated[Path, typer.Argument(help="Run config (YAML): task, data, model, train.")],
    out: Annotated[Path | None, typer.Option("--out", help="Run directory (default: runs/<config name>).")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a config value: --set train.epochs=3 (repeatable).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out from its last checkpoint.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only read and check the data (as inspect-data does); "
                                                            "train nothing, write nothing.")] = False,
    nproc: Annotated[int, typer.Option("--nproc", help="Data-parallel ranks on this machine (torchrun, gloo on "
                                                       "CPU): each trains train.batch_size examples of every "
                                                       "step.", min=1)] = 1,
):
    """Train a model from a config; writes a run directory and prints its evaluation. The data
    is checked against the config first; nothing is written until it passes."""
    from .run import train as train_run
    from .train.distributed import launched_by_torchrun, world

    if dry_run:
        _print_data_report(config, set_ or [])
        return
    if nproc > 1 and not launched_by_torchrun():
        sys.exit(_torchrun(nproc, config, out, set_ or [], resume))
    result = train_run(config, out=out, overrides=set_ or [], resume=resume)
    if world().main:
        _print_result(result)


def _torchrun(nproc: int, config: Path, out: Path | None, overrides: list[str], resume: bool) -> int:
    """This very command line again under torchrun (``--standalone --nproc_per_node N``), after
    the checks that would fail on every rank alike (config, run directory, data) ran once
    here; the exit code (2 when a rank stopped on an attnkit error: it said why)."""
    import logging
    import shutil

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser
    from torch.distributed.run import run as torchrun

    from .run.training import check_before_launch, default_run_dir
    from .run_files import RunFiles

    run_dir = Path(out) if out is not None else default_run_dir(config)
    created = not run_dir.exists()
    check_before_launch(config, run_dir, overrides, resume)
    argv, skip = [], False
    for a in sys.argv[1:]:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            argv.append(a)
    logging.getLogger("torch.distributed.elastic").setLevel(logging.ERROR)  # its own notes on stopping ranks
    args = get_args_parser().parse_args(["--standalone", f"--nproc_per_node={nproc}", "--module", "attnkit", *argv])
    try:
        torchrun(args)
    except ChildFailedError as e:
        if created and not RunFiles(run_dir).last_checkpoint.exists():  # nothing trained: leave nothing behind
            shutil.rmtree(run_dir, ignore_errors=True)
        codes = {f.exitcode for f in e.failures.values()}
        if codes != {2}:  # not an error a rank explained (killed, out of memory ...)
            ranks = ", ".join(f"rank {r}: exit code {f.exitcode}" for r, f in sorted(e.failures.items()))
            console.print(f"[red]error:[/] training stopped ({_escape(ranks)})", highlight=False)
        return 2
    return 0


def _print_result(result) -> None:
    """A finished run's dev (and test) metrics and where it is."""
    from .evaluate import print_metrics

    print_metrics(console, result.dev, "dev")
    if result.test:
        print_metrics(console, result.test, "test")
    console.print(f"run directory: {result.run_dir}", highlight=False)


@app.command()
def distill(
    teacher: Annotated[Path, typer.Option("--teacher", help="A trained run (any engine) whose class distribution "
                                                            "the student learns.")],
    student: Annotated[Path, typer.Option("--student", help="The student's run config (YAML), e.g. a BiLSTM.")],
    out: Annotated[Path | None, typer.Option("--out", help="Run directory (default: runs/<config name>).")] = None,
    temperature: Annotated[float | None, typer.Option("--temperature", help="Softening T (default 2).")] = None,
    alpha: Annotated[float | None, typer.Option("--alpha", help="Weight of the teacher's term (default 0.5).")]
    = None,
    augment: Annotated[int | None, typer.Option("--augment", help="Transfer set: up to N new texts per training "
                                                                  "text (masked, swapped, cut words), labelled by "
                                                                  "the teacher (default 0).")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a config value (repeatable).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out from its last checkpoint.")] = False,
):
    """Train a student model on a teacher run's softened predictions and the labels
    (the same as `attnkit train CONFIG --set train.distill.teacher=RUN`)."""
    from .run import train as train_run

    # quoted (an override's value is read as YAML: a path like `2024` or `a#b` would change) and
    # absolute (a resumed run may start from another directory)
    overrides = [f"train.distill.teacher={json.dumps(str(teacher.resolve()))}"]
    overrides += [f"train.distill.temperature={temperature}"] if temperature is not None else []
    overrides += [f"train.distill.alpha={alpha}"] if alpha is not None else []
    overrides += [f"train.distill.augment={augment}"] if augment is not None else []
    _print_result(train_run(student, out=out, overrides=overrides + list(set_ or []), resume=resume))


@app.command()
def vectors(
    teacher: Annotated[Path, typer.Option("--teacher", help="A run on a pretrained backbone (e.g. fine-tuned MiniLM).")],
    student: Annotated[Path, typer.Option("--student", help="The student's run config (YAML): its training words "
                                                            "get vectors.")],
    out: Annotated[Path, typer.Option("--out", help="Word-vector text file to write.")],
    corpus: Annotated[list[Path] | None, typer.Option("--corpus", help="Unlabelled text file (.gz too) whose words "
                                                                       "get vectors as well (repeatable).")] = None,
    tokenizer: Annotated[str | None, typer.Option("--tokenizer", help="How corpus lines split into words: words "
                                                                      "or whitespace (default: the student's "
                                                                      "data.tokenizer).")] = None,
    lowercase: Annotated[bool, typer.Option("--lowercase", help="Lower-case corpus words (always done when the "
                                                               "student's data.lowercase is on).")] = False,
    min_count: Annotated[int, typer.Option("--min-count", help="Corpus words seen fewer times are left out.",
                                           min=1)] = 2,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a student config value (repeatable).")]
    = None,
):
    """Write word vectors from a backbone run's encoder for a student model from blocks: each
    word read alone, the mean of its word pieces' last-layer states. Use them with
    model.embedding.vectors (and extend_vocab: true for the corpus words)."""
    from .run.vectors import teacher_vectors

    done = teacher_vectors(teacher, student, out, corpus=corpus or (), tokenizer=tokenizer, lowercase=lowercase,
                           min_count=min_count, overrides=list(set_ or []))
    console.print(f"word vectors: {done['out']} ({done['words']:,} words: {done['training_words']:,} of the "
                  f"training split, {done['corpus_words']:,} more from the corpus; {done['dim']} numbers each; "
                  f"{done['seconds']:.0f} s)", highlight=False, markup=False)
    console.print(f"use them: --set model.embedding.dim={done['dim']} --set model.embedding.vectors={done['out']}"
                  + (" --set model.embedding.extend_vocab=true --set model.embedding.freeze=true"
                     if done["corpus_words"] else ""), highlight=False, markup=False)


FormatOpt = Annotated[str | None, typer.Option("--format", help="tsv, csv, jsonl, json, conll, files (one file per "
                                                                 "class), folders (one folder per class); default: "
                                                                 "as the run was trained / from the suffix.")]
EncodingOpt = Annotated[str | None, typer.Option("--encoding", help="auto (detect), utf-8, cp1252, latin-1, ...; "
                                                                     "default: as the run was trained.")]
TextColumnOpt = Annotated[str | None, typer.Option("--text-column", help="Column / JSON key of the text.")]
LabelColumnOpt = Annotated[str | None, typer.Option("--label-column", help="Column / JSON key of the label.")]
PrecisionOpt = Annotated[str, typer.Option("--precision", help="fp32, bf16 (autocast) or auto (bf16 only where a "
                                                                "cached probe measures it faster on this CPU).")]
EngineOpt = Annotated[str | None, typer.Option("--engine", help="torch or onnxruntime (default: the run's "
                                                                "engine.json, written by export/compress; else torch).")]


def _data_options(fmt, encoding, text_column, label_column) -> dict:
    """The ``data:`` keys given on the command line (unset ones left out)."""
    given = {"format": fmt, "encoding": encoding, "text_column": text_column, "label_column": label_column}
    return {k: v for k, v in given.items() if v is not None}


@app.command()
def evaluate(
    run: Annotated[Path, typer.Argument(help="A run directory written by `attnkit train`.")],
    data: Annotated[str, typer.Option("--data", help="Labelled data: a file, a glob of class files, a folder of "
                                                     "class folders.")],
    fmt: FormatOpt = None,
    encoding: EncodingOpt = None,
    text_column: TextColumnOpt = None,
    label_column: LabelColumnOpt = None,
    engine: EngineOpt = None,
    precision: PrecisionOpt = "fp32",
    attack: Annotated[str | None, typer.Option("--attack", help="pgd: score under a PGD attack on the token "
                                                                "embeddings (text models).")] = None,
    epsilon: Annotated[float, typer.Option("--epsilon", help="--attack: L2 radius per example.", min=0.0)] = 1.0,
    attack_steps: Annotated[int, typer.Option("--attack-steps", help="--attack: PGD steps.", min=1)] = 10,
):
    """Evaluate a trained run on labelled data (read with the run's data options unless given)."""
    from .errors import ConfigError
    from .evaluate import print_metrics
    from .run import evaluate as evaluate_run

    if attack not in (None, "pgd"):
        raise ConfigError(f"evaluate --attack: unknown attack {attack!r}; known: pgd")
    metrics = evaluate_run(run, data, data_options=_data_options(fmt, encoding, text_column, label_column),
                           engine=engine, precision=precision,
                           attack=(epsilon, attack_steps) if attack else None)
    print_metrics(console, metrics, str(data) + (f" (under attack: {metrics['attack']})" if attack else ""))


@app.command("inspect-data")
def inspect_data(
    source: Annotated[str, typer.Argument(help="A run config (YAML), or a data file / glob / folder.")],
    task: Annotated[str, typer.Option("--task", help="With a data file: the task that reads it.")]
    = "text_classification",
    fmt: FormatOpt = None,
    encoding: EncodingOpt = None,
    text_column: TextColumnOpt = None,
    label_column: LabelColumnOpt = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a config value (repeatable).")] = None,
):
    """Read data the way a config says and print what was found: format, encoding, columns,
    counts, labels, lengths, what would be skipped, and every mismatch with the config."""
    from .tasks.inspection import is_config_path

    config: object = Path(source) if is_config_path(source) else {"task": task, "data": {"train": source}}
    _print_data_report(config, list(set_ or []), _data_options(fmt, encoding, text_column, label_column))


def _print_data_report(config, overrides: list[str], data_options: dict | None = None) -> None:
    from .run.training import resolve_config
    from .tasks import inspect_data as inspect

    report = inspect(resolve_config(config, overrides).with_data(data_options))
    for line in report.lines():
        style = "red" if line.startswith("problem") else "yellow" if line.startswith("warning") else None
        bold = not line.startswith((" ", "problem", "warning", "ok"))
        console.print(line, style=style or ("bold" if bold else None), highlight=False, markup=False)
    if not report.ok:
        console.print(f"{len(report.problems)} problem(s): training would stop", style="red", highlight=False)
        raise report.error()


@app.command()
def predict(
    run: Annotated[Path, typer.Argument(help="A run directory written by `attnkit train`.")],
    texts: Annotated[list[str] | None, typer.Argument(help="Texts to classify or tag.")] = None,
    input_: Annotated[Path | None, typer.Option("--input", help="A file with one text per line, or a table (tsv, "
                                                               "csv, jsonl, json) whose text column is read.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    fmt: Annotated[str | None, typer.Option("--format", help="--input's format: lines, tsv, csv, jsonl, json "
                                                             "(default: from the suffix; else lines).")] = None,
    encoding: Annotated[str, typer.Option("--encoding", help="--input's encoding: auto (detect), utf-8, cp1252, "
                                                             "...")] = "auto",
    text_column: Annotated[str | None, typer.Option("--text-column", help="--input table's text column (default: "
                                                                         "the run's data.text_column).")] = None,
    engine: EngineOpt = None,
    precision: PrecisionOpt = "fp32",
):
    """Predict labels (or tags) for texts."""
    from .deploy import attach_engine
    from .run import load_run
    from .run.prediction import read_texts

    loaded = attach_engine(load_run(run), engine)
    items = list(texts or [])
    if input_ is not None:
        items += read_texts(input_, encoding=encoding, fmt=fmt, text_column=text_column or loaded.cfg.data.text_column)
    _print_predictions(loaded, items, as_json, "predict", "TEXT", precision)


def _print_predictions(loaded, items: list[str], as_json: bool, command: str, what: str,
                       precision: str = "fp32") -> None:
    """The run's predictions of ``items``, one terminal line (or JSON object) each."""
    import json

    from .errors import ConfigError
    from .run import predict as predict_run

    if not items:
        raise ConfigError(f"{command}: give {what} arguments or --input FILE")
    for p in predict_run(loaded, items, precision=precision):
        if as_json:
            print(json.dumps(p, ensure_ascii=False))
        else:
            console.print(loaded.task.render_prediction(p), highlight=False)


@app.command()
def translate(
    run: Annotated[Path, typer.Argument(help="A translation run directory written by `attnkit train`.")],
    texts: Annotated[list[str] | None, typer.Argument(help="Sentences to translate.")] = None,
    input_: Annotated[Path | None, typer.Option("--input", help="A file with one sentence per line.")] = None,
    beam: Annotated[int | None, typer.Option("--beam", help="Beam size (1 = greedy); default the run's "
                                                            "model.search.beam.", min=1)] = None,
    nbest: Annotated[int | None, typer.Option("--nbest", help="Hypotheses shown per sentence.", min=1)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    encoding: Annotated[str, typer.Option("--encoding", help="--input's encoding: auto (detect), utf-8, ...")] = "auto",
):
    """Translate sentences with a translation run (beam search)."""
    import dataclasses

    from .errors import ConfigError
    from .run import load_run
    from .run.prediction import read_texts

    loaded = load_run(run)
    if not loaded.task.writes_text:
        raise ConfigError(f"translate: {run} is a {loaded.cfg.task} run, not a translation run; use "
                          f"`attnkit predict {run} TEXT`")
    search = loaded.model.search
    if beam is not None or nbest is not None:
        k = beam or search.beam
        loaded.model.search = dataclasses.replace(search, beam=k, nbest=min(nbest or search.nbest, k))
    items = list(texts or [])
    if input_ is not None:
        items += read_texts(input_, encoding=encoding, fmt="lines", text_column="text")
    _print_predictions(loaded, items, as_json, "translate", "SENTENCE")


@app.command()
def recommend(
    run: Annotated[Path, typer.Argument(help="A recommendation run directory written by `attnkit train`.")],
    user: Annotated[str, typer.Option("--user", help="The user's id, as in the ratings files.")],
    top: Annotated[int, typer.Option("--top", help="How many items to list.", min=1)] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
):
    """The items a recommendation run ranks highest for a user (items the user rated are left
    out), each with the rated item it attended to most."""
    from .run.recommend import recommend as recommend_run

    rec = recommend_run(run, user, top)
    if as_json:
        print(json.dumps(rec, ensure_ascii=False))
        return
    if rec["fallback"]:
        console.print(f"[yellow]{_escape(rec['fallback'])}[/]", highlight=False)
        for n, it in enumerate(rec["items"], 1):
            console.print(f"{n:2d}. {_escape(it['title'])}  [dim](item {_escape(it['item'])}, {it['ratings']} ratings)[/]",
                          highlight=False)
        return
    console.print(f"user {_escape(rec['user'])}: {rec['rated']} rated items; the {len(rec['items'])} unrated items ranked "
                  f"highest", highlight=False)
    for n, it in enumerate(rec["items"], 1):
        why = it.get("because")
        reason = (f" because you rated [italic]{_escape(why['title'])}[/] {why['rating']:g} (attention "
                  f"{why['attention']:.2f})" if why else "")
        console.print(f"{n:2d}. [bold]{_escape(it['title'])}[/] [dim](item {_escape(it['item'])})[/] predicted "
                      f"{it['rating']:.1f}{reason}", highlight=False)


@app.command()
def merge(
    run: Annotated[Path, typer.Argument(help="A LoRA (or IA3) run directory.")],
    out: Annotated[Path, typer.Option("--out", help="Where the merged run directory goes.")],
):
    """Fold a LoRA/IA3 run's adapter weights into its backbone: a plain run for deployment."""
    from .run import merge_run

    merged = merge_run(run, out)
    console.print(f"merged run: {merged} ({_dir_size(merged):.1f} MiB; no PEFT needed to load it)")


def _dir_size(path: Path, names: tuple[str, ...] | None = None) -> float:
    """MiB of the files in a directory (only ``names`` when given)."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and (names is None or p.name in names)) / 2**20


@app.command()
def export(
    run: Annotated[Path, typer.Argument(help="A run directory written by `attnkit train` (or merge).")],
    out: Annotated[Path, typer.Option("--out", help="Where the exported run directory goes (new).")],
    fmt: Annotated[str, typer.Option("--format", help="Export format: onnx.")] = "onnx",
):
    """Export a run's model as an ONNX graph (LoRA merged first), checked against PyTorch at
    several batch sizes and lengths; the new run predicts on ONNX Runtime by default."""
    from .deploy import export_run, read_engine

    exported = export_run(run, out, fmt)
    spec = read_engine(exported)
    worst = max(spec["parity"]["max_abs_diff"].values())
    console.print(f"exported: {exported / spec['graph']} ({_dir_size(exported, (spec['graph'],)):.1f} MiB; inputs "
                  f"{', '.join(spec['inputs'])}; max |difference| from PyTorch {worst:.2g} at "
                  f"{len(spec['parity']['shapes'])} batch shapes)")
    console.print(f"predict with it: attnkit predict {exported} TEXT (engine onnxruntime; --engine torch for PyTorch)")


@app.command()
def compress(
    run: Annotated[Path, typer.Argument(help="A run directory (trained, merged or exported).")],
    out: Annotated[Path, typer.Option("--out", help="Where the compressed run directory goes (new).")],
    int8: Annotated[bool, typer.Option("--int8", help="Dynamic int8 quantization of the weights (ONNX Runtime).")]
    = False,
):
    """Make a run smaller and faster: --int8 quantizes its ONNX graph's weights to int8."""
    from .deploy import compress_run, read_engine

    done = compress_run(run, out, int8=int8)
    spec = read_engine(done)
    drift = spec["int8_drift"]
    console.print(f"compressed: {done / spec['graph']} ({_dir_size(done, (spec['graph'],)):.1f} MiB, fp32 weights "
                  f"{_dir_size(done, ('model.safetensors',)):.1f} MiB); logits moved by at most "
                  f"{drift['max_abs_logit_diff']:.3g}, top class changed on {drift['top_class_changed']} check "
                  f"inputs; measure it: attnkit evaluate {done} --data FILE")


@app.command()
def prune(
    run: Annotated[Path, typer.Argument(help="A fine-tuned Transformer run (model.pretrained).")],
    out: Annotated[Path, typer.Option("--out", help="Where the pruned run directory goes (new).")],
    heads: Annotated[float, typer.Option("--heads", help="Fraction of attention heads to remove (least important "
                                                         "first; every layer keeps one).")] = 0.0,
    ffn: Annotated[float, typer.Option("--ffn", help="Fraction of feed-forward neurons to remove.")] = 0.0,
    data: Annotated[Path | None, typer.Option("--data", help="Labelled file to measure importance on (default: "
                                                             "the run's training split).")] = None,
    examples: Annotated[int, typer.Option("--examples", help="Examples importance is measured on.", min=1)] = 1024,
    recover_epochs: Annotated[int, typer.Option("--recover-epochs", help="Then fine-tune the pruned model this many "
                                                "epochs on the run's training split (0: no fine-tuning).")] = 0,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a training value for the recovery "
                                                   "fine-tuning: --set train.optimizer.lr=2e-5 (repeatable).")] = None,
):
    """Remove the least important attention heads and feed-forward neurons physically
    (importance: |gradient| of a gate on each, Michel et al. 2019), optionally fine-tuning
    the smaller model afterwards (--recover-epochs); measure the result with `attnkit evaluate`."""
    from .rundir import read_meta
    from .run.pruning import prune as prune_and_recover

    done = prune_and_recover(run, out, heads=heads, ffn=ffn, data=data, examples=examples,
                             recover_epochs=recover_epochs, overrides=list(set_ or []))
    meta = read_meta(done)
    rec = meta["pruned"]
    b, a = rec["before"], rec["after"]
    console.print(f"pruned: {done} (heads {b['heads']} -> {a['heads']}, feed-forward neurons {b['ffn']:,} -> "
                  f"{a['ffn']:,}; importance from {rec['measured_on']:,} examples)")
    recovered = meta.get("recovered")
    if recovered:
        metric = recovered["metric"]
        console.print(f"recovered: {recovered['epochs']} epoch(s) of fine-tuning; dev {metric} "
                      f"{recovered['dev_before'].get(metric, float('nan')):.4f} -> {recovered['dev_after'][metric]:.4f}")
    else:
        console.print(f"measure it: attnkit evaluate {done} --data FILE")


@app.command()
def explain(
    run: Annotated[Path, typer.Argument(help="A run directory written by `attnkit train`.")],
    texts: Annotated[list[str], typer.Argument(help="Texts to explain.")],
    method: Annotated[str, typer.Option("--method", help="attention, saliency (gradient x input) or ig (integrated "
                                                         "gradients).")] = "attention",
    target: Annotated[str | None, typer.Option("--target", help="Class (or tag) to explain; default the prediction.")]
    = None,
    word: Annotated[int | None, typer.Option("--word", help="Taggers: index of the word whose tag is explained.")]
    = None,
    steps: Annotated[int, typer.Option("--steps", help="Integrated-gradients steps.", min=1)] = 50,
    html_out: Annotated[Path | None, typer.Option("--html", help="Also write the explanations as an HTML page.")]
    = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per text (scores as numbers).")] = False,
):
    """Show which words drove a prediction: coloured tokens (green for, red against)."""
    import json

    from .explain import alignments
    from .explain import explain as explain_run
    from .explain.render import explanation_html, tokens_rich
    from .files import atomic_write

    aligned = alignments(run, texts)
    if aligned is not None:  # a translation run: what each written word attended to
        _show_alignments(aligned, html_out, as_json, run)
        return
    results = explain_run(run, texts, method=method, target=target, word=word, steps=steps)
    for text, e in zip(texts, results):
        if as_json:
            print(json.dumps({"text": text, **e.to_dict()}, ensure_ascii=False))
            continue
        at = f" at word {e.word} ({e.tokens[e.word]})" if e.word is not None else ""
        console.print(f"[bold]{e.label}[/] (p={e.probability:.3f}) {method}, explaining {e.target}{at}",
                      highlight=False)
        console.print(tokens_rich(e.tokens, e.scores))
        console.print("  " + "  ".join(f"{t} {s:+.3f}" for t, s in zip(e.tokens, e.scores)), highlight=False,
                      style="dim")
    if html_out is not None:
        page = explanation_html(results, f"attnkit explain: {run} ({method})")
        atomic_write(html_out, lambda f: f.write(page.encode("utf-8")))
        console.print(f"wrote {html_out}", highlight=False)


def _show_alignments(aligned: list[dict], html_out: Path | None, as_json: bool, run: Path) -> None:
    """Each translation with, per written subword, the source subword it attended to most."""
    import html
    import json

    from .explain.render import alignment_figure, figure_uri, page
    from .files import atomic_write

    for a in aligned:
        if as_json:
            print(json.dumps({k: (v.round(4).tolist() if k == "matrix" else v) for k, v in a.items()},
                             ensure_ascii=False))
            continue
        console.print(f"[bold]{a['translation']}[/]", highlight=False)
        console.print("  " + "  ".join(f"{w}<-{a['source'][int(row.argmax())]} {float(row.max()):.2f}"
                                       for w, row in zip(a["written"], a["matrix"])), highlight=False, style="dim")
    if html_out is not None:
        body = "".join(f"<h2>{html.escape(a['text'])}</h2><p>{html.escape(a['translation'])}</p>"
                       f"<img alt=alignment src=\"{figure_uri(alignment_figure(a['matrix'], a['written'], a['source']))}\">"
                       for a in aligned)
        atomic_write(html_out, lambda f: f.write(page(f"attnkit explain: {run} (alignment)", body).encode("utf-8")))
        console.print(f"wrote {html_out}", highlight=False)


@app.command("tune-oos")
def tune_oos(
    run: Annotated[Path, typer.Argument(help="An intent classifier trained with data.out_of_scope.")],
    dev: Annotated[Path | None, typer.Option("--dev", help="Labelled dev file (default: the run's data.dev).")]
    = None,
    test: Annotated[Path | None, typer.Option("--test", help="Labelled test file to report on (default: the "
                                                             "run's data.test).")] = None,
    min_in_scope_accuracy: Annotated[float | None, typer.Option(
        "--min-in-scope-accuracy", help="Highest out-of-scope recall keeping dev in-scope accuracy >= this.",
        min=0, max=1)] = None,
    max_accuracy_drop: Annotated[float, typer.Option(
        "--max-accuracy-drop", help="Highest out-of-scope recall costing at most this much dev in-scope accuracy "
                                    "(the default criterion).", min=0, max=1)] = 0.02,
    balanced: Annotated[bool, typer.Option("--balanced", help="Maximise dev in-scope accuracy + out-of-scope "
                                                               "recall instead.")] = False,
    score: Annotated[str | None, typer.Option("--score", help="msp, margin or not_oos (default: the best on "
                                                              "dev).")] = None,
):
    """Tune the out-of-scope confidence threshold on dev and save it in RUN/out_of_scope.json
    (the router hands queries below it to a person)."""
    from .errors import ConfigError
    from .evaluate.out_of_scope import tune_out_of_scope

    if balanced and min_in_scope_accuracy is not None:
        raise ConfigError("tune-oos: --balanced and --min-in-scope-accuracy are two criteria; give one")
    criterion = ("balanced" if balanced else min_in_scope_accuracy if min_in_scope_accuracy is not None
                 else f"drop:{max_accuracy_drop:g}")
    out = tune_out_of_scope(run, dev, test, criterion, score)
    areas = ", ".join(f"{k} {v}" for k, v in out["dev_area_by_score"].items())
    console.print(f"criterion {out['criterion']}; score {out['score']} (dev area: {areas}), threshold "
                  f"{out['threshold']:.4f}", highlight=False)
    for split in ("dev", "test"):
        if split in out:
            m, u = out[split], out[split]["untuned"]
            console.print(f"{split}: in-scope accuracy {m['in_scope_accuracy']:.4f} (untuned {u['in_scope_accuracy']:.4f}),"
                          f" out-of-scope recall {m['oos_recall']:.4f} (untuned {u['oos_recall']:.4f})",
                          highlight=False)
    console.print(f"wrote {Path(run) / 'out_of_scope.json'}", highlight=False)
    if (Path(run) / "report.html").is_file():
        from .report import write_report

        console.print(f"updated {write_report(run)} (out-of-scope curve)", highlight=False)


def _model_args(items: list[str]) -> dict[str, str]:
    """``RUN`` or ``NAME=RUN`` arguments -> {name: run}; a bare run is named after its folder."""
    from .errors import ConfigError

    models: dict[str, str] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep:
            path = item
            name = "".join(c if c.isalnum() or c in "-_." else "-" for c in Path(item).resolve().name) or "model"
        if name in models:
            raise ConfigError(f"serve: model name {name!r} given twice (name them: NAME=RUN)")
        models[name] = path
    return models


@app.command()
def serve(
    runs: Annotated[list[str], typer.Argument(help="Run directories to serve: RUN (named after its folder) or "
                                                   "NAME=RUN; the first is the default (router).")],
    host: Annotated[str, typer.Option("--host", help="Address to listen on (other machines reach it only if you "
                                                     "say so, e.g. 0.0.0.0).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option("--workers", help="Server processes, each with its own batcher and "
                                                           "compute threads (cores / workers).", min=1)] = 1,
    engine: EngineOpt = None,
    precision: PrecisionOpt = "fp32",
    max_batch_size: Annotated[int, typer.Option("--max-batch-size", help="Texts per micro-batch at most.", min=1)] = 32,
    max_wait_ms: Annotated[float, typer.Option("--max-wait-ms", help="Longest wait for a micro-batch to fill "
                                                                     "(only while requests come faster than this).",
                                               min=0)] = 5.0,
    no_batching: Annotated[bool, typer.Option("--no-batching", help="Run every request alone.")] = False,
    max_queue: Annotated[int, typer.Option("--max-queue", help="Texts waiting at most per model; more get 503 "
                                                               "with Retry-After.", min=1)] = 1024,
    max_texts: Annotated[int, typer.Option("--max-texts", help="Texts per request at most (413).", min=1)] = 64,
    max_chars: Annotated[int, typer.Option("--max-chars", help="Characters per text at most (422).", min=1)] = 2000,
    max_body: Annotated[int, typer.Option("--max-body-bytes", help="Request body size cap (413).", min=1)] = 1 << 20,
    timeout_s: Annotated[float, typer.Option("--timeout-s", help="Answer 504 after this many seconds.", min=0.001)]
    = 30.0,
    api_key: Annotated[str | None, typer.Option("--api-key", envvar="ATTNKIT_API_KEY",
                                                help="Require `Authorization: Bearer KEY` (all but the health "
                                                     "endpoints and the page); default $ATTNKIT_API_KEY.")] = None,
    router: Annotated[Path | None, typer.Option("--router", help="A routing table (YAML) for POST /v1/route.")]
    = None,
    no_swap: Annotated[bool, typer.Option("--no-swap", help="Refuse PUT /v1/models/NAME (model swaps).")] = False,
    threads: Annotated[int, typer.Option("--threads", help="Torch threads per worker (0: cores / workers).", min=0)]
    = 0,
):
    """Serve runs over HTTP: predictions, explanations and routing, micro-batched, with health
    checks and Prometheus metrics (docs/serving.md)."""
    from .errors import ConfigError
    from .serve import ServeSettings
    from .serve import serve as run_service
    from .serve.router import read_table

    if router is not None:
        read_table(router)  # a bad table is one error now, not a failed readiness later
    models = _model_args(runs)
    for name, path in models.items():
        if not Path(path).is_dir():
            raise ConfigError(f"serve: model {name!r}: run directory {path} not found")
    settings = ServeSettings(models=models, engine=engine, precision=precision, batching=not no_batching,
                             max_batch_size=max_batch_size, max_wait_ms=max_wait_ms, max_queue=max_queue,
                             max_texts=max_texts, max_chars=max_chars, max_body_bytes=max_body, timeout_s=timeout_s,
                             api_key=api_key, router=str(router) if router else None, workers=workers,
                             threads=threads, allow_swap=not no_swap)
    console.print(f"serving {', '.join(f'{k}={v}' for k, v in models.items())} on http://{host}:{port} "
                  f"(docs: /docs, ready: /health/ready)", highlight=False)
    run_service(settings, host=host, port=port)


@app.command()
def tune(
    config: Annotated[Path, typer.Argument(help="A run config with a tune: section (config path -> distribution).")],
    trials: Annotated[int, typer.Option("--trials", help="Finished trials the study should have (all processes "
                                                         "together).", min=1)] = 20,
    study: Annotated[Path | None, typer.Option("--study", help="The SQLite study (default: OUT/study.sqlite); give "
                                                               "the same file to several processes.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Folder for the trials' runs, trials.csv and best.yaml "
                                                           "(default: runs/CONFIG-tune).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="The TPE sampler's seed.")] = 0,
    timeout_s: Annotated[float | None, typer.Option("--timeout-s", help="Stop starting trials after this long.",
                                                    min=1)] = None,
):
    """Search hyperparameters with Optuna (TPE, median pruning on the dev metric, the study in
    SQLite so a killed search resumes); writes OUT/trials.csv and OUT/best.yaml (docs/training.md)."""
    from rich.table import Table

    from .run.tune import tune as run_tune

    res = run_tune(config, trials=trials, study=study, out=out, seed=seed, timeout_s=timeout_s)
    metric = res["metric"]
    params = list(res["best"]["params"])
    table = Table(title=f"{len(res['trials'])} trials ({res['direction']} dev {metric})")
    for name in ("trial", "state", metric, "epochs", *params):
        table.add_column(name, justify="right" if name != "state" else "left")
    key = (lambda r: -(r[metric] or float("-inf"))) if res["direction"] == "maximize" else \
        (lambda r: r[metric] if r[metric] is not None else float("inf"))
    for r in sorted(res["trials"], key=key):
        table.add_row(*(("" if r.get(c) is None else f"{r[c]:.4g}" if isinstance(r.get(c), float) else str(r[c]))
                        for c in ("trial", "state", metric, "epochs", *params)))
    console.print(table)
    b = res["best"]
    console.print(f"best: trial {b['trial']}, dev {metric} {b['value']:.4f} ("
                  + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in b["params"].items())
                  + ")", highlight=False)
    console.print(f"wrote {res['files']['trials']}, {res['files']['best']} (train it: attnkit train "
                  f"{res['files']['best']})", highlight=False)


@app.command()
def monitor(
    run: Annotated[Path, typer.Argument(help="A text classifier with positive and negative classes.")],
    stream: Annotated[Path, typer.Option("--stream", help="Texts with a timestamp (CSV, TSV or JSON lines), "
                                                          "optionally an entity and a source; may keep growing.")],
    out: Annotated[Path | None, typer.Option("--out", help="Folder for state.sqlite, alerts.jsonl and "
                                                           "dashboard.html (default: STREAM-monitor next to it).")]
    = None,
    state: Annotated[Path | None, typer.Option("--state", help="The SQLite state (default: OUT/state.sqlite).")]
    = None,
    period: Annotated[str, typer.Option("--period", help="hour, day or week.")] = "day",
    detector: Annotated[str, typer.Option("--detector", help="cusum or zscore.")] = "cusum",
    sensitivity: Annotated[float, typer.Option("--sensitivity", help="Higher: earlier alerts, more false ones.")]
    = 1.0,
    reference: Annotated[Path | None, typer.Option("--reference", help="Texts like the training data, for drift "
                                                                       "(default: the run's dev data).")] = None,
    positive: Annotated[str | None, typer.Option("--positive", help="The positive label (default: found by "
                                                                    "name).")] = None,
    negative: Annotated[str | None, typer.Option("--negative", help="The negative label.")] = None,
    time_column: Annotated[str, typer.Option("--time-column")] = "timestamp",
    text_column: Annotated[str, typer.Option("--text-column")] = "text",
    entity_column: Annotated[str, typer.Option("--entity-column")] = "entity",
    source_column: Annotated[str, typer.Option("--source-column")] = "source",
    encoding: Annotated[str, typer.Option("--encoding", help="The stream's text encoding.")] = "utf-8",
    follow: Annotated[bool, typer.Option("--follow", help="Keep watching the file for new lines (Ctrl-C stops; "
                                                          "nothing scored is lost).")] = False,
    poll_s: Annotated[float, typer.Option("--poll-s", help="Seconds between looks at the file with --follow.",
                                          min=0.1)] = 5.0,
):
    """Score a stream of texts once, keep the state in SQLite, and write a sentiment index per
    entity, change and drift alerts (explained) and an HTML dashboard (docs/monitoring.md)."""
    import signal
    import time

    from .monitor import Columns, Monitor, MonitorSettings

    settings = MonitorSettings(columns=Columns(time_column, text_column, entity_column, source_column),
                               encoding=encoding, period=period, detector=detector, sensitivity=sensitivity,
                               positive=positive, negative=negative, reference=reference)
    mon = Monitor(run, stream, out, state, settings)
    before = signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # each scored batch is committed: stopping is safe
    try:
        while True:
            summary = mon.step()
            if summary.new_texts or summary.new_alerts or not follow:
                _say_monitor(summary)
            if not follow:
                break
            time.sleep(poll_s)
    except KeyboardInterrupt:
        console.print("stopped; everything scored is in the state", highlight=False)
    finally:
        mon.close()
        signal.signal(signal.SIGTERM, before)


def _say_monitor(summary) -> None:
    """New texts, the latest index per entity, new alerts and the files written."""
    console.print(f"{summary.new_texts:,} new text(s) scored ({summary.total_texts:,} in the state"
                  + (f"; {summary.duplicates} already there" if summary.duplicates else "")
                  + (f"; {summary.skipped} line(s) skipped" if summary.skipped else "") + ")", highlight=False)
    for entity, points in sorted(summary.index.items()):
        last = points[-1]
        console.print(f"  {entity}: {last['period']} index {last['index']:+.3f} [{last['low']:+.3f}, "
                      f"{last['high']:+.3f}] ({last['n']} texts)", highlight=False)
    for a in summary.new_alerts:
        if a["kind"] == "sentiment":
            words = "; ".join(", ".join(t["words"]) for t in a["texts"][:3])
            console.print(f"[red]alert[/] {a['entity']} {a['period']}: sentiment {a['direction']} since {a['since']} "
                          f"({a['index_before']:+.2f} -> {a['index_since']:+.2f}); words: {words}", highlight=False)
        else:
            console.print(f"[red]drift[/] {a['period']}: " + ", ".join(f"{k} PSI {v['psi']:.2f}" for k, v in
                                                                      a["features"].items()), highlight=False)
    console.print("wrote " + ", ".join(summary.files.values()), highlight=False)


@app.command()
def report(
    run: Annotated[Path, typer.Argument(help="A run directory written by `attnkit train`.")],
    examples: Annotated[int, typer.Option("--examples", help="Right and wrong dev examples shown (each).", min=0)]
    = 6,
):
    """Write RUN/report.html: config, training curves, metrics, confusion matrix, explained
    dev examples and attention maps, in one self-contained file."""
    from .report import write_report

    path = write_report(run, examples=examples)
    console.print(f"wrote {path}", highlight=False)


@app.command()
def backends():
    """List the registered scores, masks, modifiers and backends."""
    from .attention import list_backends, list_masks, list_mods, list_scores

    for name, items in (("scores", list_scores()), ("masks", list_masks()), ("mods", list_mods()),
                        ("backends", list_backends())):
        console.print(f"[bold]{name}[/]: {', '.join(items)}")


def run() -> None:
    """Entry point: attnkit errors print as one line (traceback only with --debug); usage
    errors as typer/click show them (exit code 2)."""
    try:
        app()  # standalone mode: usage errors print and exit by themselves
    except AttnkitError as e:
        if _state["debug"]:
            raise
        from .train.distributed import world

        # escaped: a message may hold brackets ("[low, high]", "data.json#train") that are not markup
        rank = world().rank
        where = f"(rank {rank}) " if rank else ""  # a data-parallel rank other than 0 says which it is
        Console(stderr=True, soft_wrap=True).print(f"[red]error:[/] {where}{_escape(e)}", highlight=False)
        sys.exit(2)
