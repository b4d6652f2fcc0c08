"""Translation speed on Multi30k, every contender in one run:

* training: target tokens/s of attnkit's Transformer encoder-decoder vs a plain PyTorch loop
  over ``torch.nn.Transformer`` of the same size (pre-LN, d=256, 3+3 layers, 4 heads, ff 1024,
  tied embeddings, label smoothing 0.1), on the same token-budget batches in the same order,
  with the same optimiser; rounds interleaved, the order rotated each round, the first round a
  warm-up. Target: attnkit >= 1.0x.
* decoding test2016 with beam 5: cached incremental decoding vs recomputing the whole prefix
  at every step (target >= 3x), and batched beams vs one sentence at a time (target >= 3x),
  in sentences/s, with a trained run (``--run``; default: the quality benchmark's run) so
  that hypotheses end where a real model ends them.

    python benchmarks/translation_speed.py [--run RUN] [--steps 30] [--rounds 4] [--sentences 200]
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import row, write_results

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "multi30k"
DEFAULT_RUN = Path("/tmp/attnkit-quality/multi30k-transformer_de_en")
D, LAYERS, HEADS, FF, MAX_TOKENS = 256, 3, 4, 1024, 2500


def plain_model(vocab: int):
    """The contender: embedding * sqrt(d) + sinusoidal positions -> nn.Transformer (pre-LN) -> tied output."""
    import torch
    from torch import nn

    from attnkit.nn import sinusoidal_positions

    class Plain(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(vocab, D, padding_idx=0)
            nn.init.normal_(self.emb.weight, 0, D ** -0.5)
            self.register_buffer("pos", sinusoidal_positions(256, D), persistent=False)
            self.tf = nn.Transformer(D, HEADS, LAYERS, LAYERS, FF, dropout=0.1, batch_first=True, norm_first=True)
            self.out = nn.Linear(D, vocab, bias=False)
            self.out.weight = self.emb.weight

        def forward(self, src, src_len, tgt_in):
            s = self.emb(src) * math.sqrt(D) + self.pos[:src.shape[1]]
            t = self.emb(tgt_in) * math.sqrt(D) + self.pos[:tgt_in.shape[1]]
            pad = torch.arange(src.shape[1])[None] >= src_len[:, None]
            causal = nn.Transformer.generate_square_subsequent_mask(tgt_in.shape[1], dtype=s.dtype)
            h = self.tf(s, t, tgt_mask=causal, src_key_padding_mask=pad, memory_key_padding_mask=pad,
                        tgt_is_causal=True)
            return self.out(h)

    return Plain()


def training_rows(steps: int, rounds: int) -> list[dict]:
    """Target tokens/s of both contenders on the same batches."""
    import torch
    import torch.nn.functional as F

    from attnkit.data import (
        SubwordModel,
        TranslationData,
        read_parallel,
        token_budget_batches,
    )
    from attnkit.models import ModelConfig, Translator

    pairs = read_parallel(DATA / "train.de", DATA / "train.en")
    sw = SubwordModel.train(pairs.sources + pairs.targets, 8000)
    data = TranslationData.from_pairs(pairs, sw)
    batches = token_budget_batches(data.lengths, MAX_TOKENS, seed=0, epoch=0)[:steps]
    collated = [data.collate(b) for b in batches]
    tokens = sum(int((b["tgt_out"] != -100).sum()) for b in collated)
    torch.manual_seed(0)
    cfg = ModelConfig(embedding={"dim": D}, encoder={"type": "transformer", "dim": D, "layers": LAYERS,
                                                     "ff_dim": FF, "attention": {"heads": HEADS}},
                      decoder={"type": "transformer", "layers": LAYERS, "ff_dim": FF, "attention": {"heads": HEADS}})
    ours, plain = Translator(cfg, len(sw)), plain_model(len(sw))

    def run_ours():
        opt = torch.optim.AdamW(ours.parameters(), 5e-4)
        for b in collated:
            loss = ours.loss(ours(b), b)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    def run_plain():
        opt = torch.optim.AdamW(plain.parameters(), 5e-4)
        for b in collated:
            logits = plain(b["src"], b["src_lengths"], b["tgt_in"])
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), b["tgt_out"].reshape(-1), ignore_index=-100,
                                   label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    contenders = {"attnkit Translator": run_ours, "torch.nn.Transformer loop": run_plain}
    times = {k: [] for k in contenders}
    names = list(contenders)
    for r in range(rounds + 1):
        for name in names[r % 2:] + names[:r % 2]:
            t0 = time.perf_counter()
            contenders[name]()
            if r:  # round 0 warms up
                times[name].append(time.perf_counter() - t0)
    rate = {k: tokens / statistics.median(v) for k, v in times.items()}
    params = {"attnkit Translator": sum(p.numel() for p in ours.parameters()),
              "torch.nn.Transformer loop": sum(p.numel() for p in plain.parameters())}
    rows = [row(f"train/{k}", "target_tokens_per_s", round(v), None, "higher", "tok/s", parameters=params[k],
                rounds_s=[round(t, 2) for t in times[k]]) for k, v in rate.items()]
    rows.append(row("train/attnkit vs torch.nn.Transformer", "speedup",
                    round(rate["attnkit Translator"] / rate["torch.nn.Transformer loop"], 3), 1.0, "higher", "x",
                    steps=len(collated), target_tokens=tokens, max_tokens=MAX_TOKENS))
    return rows


class Recompute:
    """A model whose ``step`` runs the decoder over the whole prefix again (no self-attention
    cache): the contender of cached incremental decoding."""

    def __init__(self, m):
        self.m, self.bos_id, self.eos_id, self.max_target_len = m, m.bos_id, m.eos_id, m.max_target_len

    def start(self, batch):
        import torch

        state = self.m.start(batch)
        state["prefix"] = torch.zeros(batch["src"].shape[0], 0, dtype=torch.long)
        return state

    def step(self, tokens, state, need_weights=False):
        import torch

        prefix = torch.cat([state["prefix"], tokens[:, None]], 1)
        rest = {k: v for k, v in state.items() if k != "prefix"}
        h, _ = self.m.decoder(self.m.tgt_embedding(prefix) * self.m.scale, rest)
        logp = torch.log_softmax(self.m.out(h[:, -1]), -1)
        return logp, {**state, "prefix": prefix}, None


def decoding_rows(run_dir: Path, sentences: int, batch_size: int) -> list[dict]:
    """Sentences/s of beam 5 on test2016: cached vs recomputed, batched vs one at a time."""
    import torch

    from attnkit.data import read_parallel
    from attnkit.models import SearchConfig, beam_search
    from attnkit.rundir import load_run
    from attnkit.tasks import get_task, stack_batches

    run = load_run(run_dir)
    task = get_task("translation")
    pairs = read_parallel(DATA / "test_2016_flickr.de", DATA / "test_2016_flickr.en")
    enc = task.encode_inputs(run.featurized, pairs.sources[:sentences])
    cfg = SearchConfig(beam=5, alpha=0.6, max_len_a=1.5, max_len_b=10)
    m = run.model.eval()

    def batched(model):
        out = []
        for i in range(0, len(enc), batch_size):
            out += beam_search(model, stack_batches([e.batch for e in enc[i:i + batch_size]]), cfg)
        return out

    def one_by_one():
        return [beam_search(m, e.batch, cfg)[0] for e in enc]

    timings = {}
    results = {}
    with torch.no_grad():
        for name, fn in (("cached, batched", lambda: batched(m)), ("recomputed prefix, batched", lambda: batched(Recompute(m))),
                         ("cached, one sentence at a time", one_by_one)):
            t0 = time.perf_counter()
            results[name] = fn()
            timings[name] = time.perf_counter() - t0
    same = [h[0].tokens for h in results["cached, batched"]] == [h[0].tokens for h in results["recomputed prefix, batched"]]
    rate = {k: len(enc) / v for k, v in timings.items()}
    rows = [row(f"decode/{k}", "sentences_per_s", round(v, 1), None, "higher", "sent/s") for k, v in rate.items()]
    rows.append(row("decode/cached vs recomputed prefix", "speedup",
                    round(rate["cached, batched"] / rate["recomputed prefix, batched"], 2), 3.0, "higher", "x",
                    same_translations=same))
    rows.append(row("decode/batched vs one sentence at a time", "speedup",
                    round(rate["cached, batched"] / rate["cached, one sentence at a time"], 2), 3.0, "higher", "x",
                    batch_size=batch_size))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, default=DEFAULT_RUN, help="a trained translation run for the decoding rows")
    ap.add_argument("--steps", type=int, default=30, help="training steps per round")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--sentences", type=int, default=200, help="test2016 sentences decoded per contender")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--out", help="results file (default benchmarks/results/translation_speed.json)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(2)
    rows = training_rows(args.steps, args.rounds)
    for r in rows:
        print(r["name"], r["metric"], r["value"], flush=True)
    if args.run.is_dir():
        drows = decoding_rows(args.run, args.sentences, args.batch_size)
        for r in drows:
            print(r["name"], r["metric"], r["value"], flush=True)
        rows += drows
    decoding = (f"decoding: beam 5, alpha 0.6, max length 1.5|src|+10, the first {args.sentences} test2016 "
                f"sentences, trained run {args.run}" if args.run.is_dir()
                else "decoding: not measured (no trained run given)")
    notes = [("training: same token-budget batches (max_tokens 2500, the first --steps of epoch 0), AdamW 5e-4, "
              "rounds interleaved with the order rotated, round 0 a warm-up; ratio of median target tokens/s"),
             decoding]
    print("wrote", write_results("translation_speed", rows, notes, args.out))


if __name__ == "__main__":
    main()
