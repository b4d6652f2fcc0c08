"""Decoding a translation: greedy and batched beam search over any model with the step API of
:class:`~attnkit.models.translators.Translator` (``start(batch) -> state``, ``step(tokens,
state) -> (log-probs, state, weights)``, a state being a dict of batch-first tensors).

Beam search keeps ``beam`` live prefixes per sentence, all sentences and beams in one batch.
A prefix ending in ``</s>`` is finished, scored ``log P / lp`` with the GNMT length penalty
``lp = ((5 + |y|) / 6) ** alpha`` (``|y|`` counts ``</s>``); a sentence is done once it has
``beam`` finished hypotheses (so ``beam = 1`` is greedy search), and at its length limit
``a * |source| + b`` only ``</s>`` may follow. ``no_repeat_ngram = n`` forbids any n-gram
twice in a hypothesis."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import checked, non_negative, positive


@dataclass
class SearchConfig:
    """How translations are decoded (``decode:`` in a translation run config)."""

    beam: int = checked(5, positive)  # 1 = greedy
    alpha: float = checked(0.6, non_negative)  # GNMT length penalty exponent; 0 = raw log-probability
    max_len_a: float = checked(1.5, non_negative)  # at most a * |source| + b target tokens (with </s>)
    max_len_b: int = checked(10, positive)
    nbest: int = checked(1, positive)  # hypotheses returned per sentence (at most beam)
    no_repeat_ngram: int = checked(0, non_negative)  # forbid repeating any n-gram of this size; 0 = off
    dev_beam: int = checked(1, positive)  # beam of the dev BLEU after each training epoch (picks the best epoch)


@dataclass
class Hypothesis:
    """One translation: token ids (ending in ``</s>``), its score ``log P / lp``, its summed
    log-probability, and the cross-attention ``[len(tokens), S]`` when asked for."""

    tokens: list[int]
    score: float
    logprob: float
    attention: torch.Tensor | None = None


def length_penalty(length: int | torch.Tensor, alpha: float):
    """GNMT's ``((5 + length) / 6) ** alpha``."""
    return ((5.0 + length) / 6.0) ** alpha


def max_lengths(src_lengths: torch.Tensor, a: float, b: int, cap: int | None = None) -> list[int]:
    """Per-sentence limits ``a * |source| + b`` (at least 1; at most ``cap``)."""
    out = [max(1, int(a * n + b)) for n in src_lengths.tolist()]
    return [min(n, cap) for n in out] if cap else out


def _reorder(state: dict, idx: torch.Tensor) -> dict:
    return {k: v.index_select(0, idx) for k, v in state.items()}


@torch.no_grad()
def greedy(model, batch: dict, cfg: SearchConfig | None = None, need_weights: bool = False) -> list[Hypothesis]:
    """The arg-max token at each step until ``</s>`` or the length limit."""
    cfg = cfg or SearchConfig(beam=1)
    state = model.start(batch)
    n = batch["src"].shape[0]
    limits = max_lengths(batch["src_lengths"], cfg.max_len_a, cfg.max_len_b, model.max_target_len)
    tokens = torch.full((n,), model.bos_id, dtype=torch.long)
    out: list[list[int]] = [[] for _ in range(n)]
    logprob = [0.0] * n
    attn: list[list[torch.Tensor]] = [[] for _ in range(n)]
    done = [False] * n
    for t in range(max(limits)):
        logp, state, w = model.step(tokens, state, need_weights)
        for i in range(n):
            if t == limits[i] - 1:  # the last place: only </s>
                logp[i, :model.eos_id] = -float("inf")
                logp[i, model.eos_id + 1:] = -float("inf")
        _ban_repeats(logp, out, cfg.no_repeat_ngram)
        best = logp.argmax(-1)
        for i in range(n):
            if done[i]:
                continue
            out[i].append(int(best[i]))
            logprob[i] += float(logp[i, best[i]])
            if need_weights:
                attn[i].append(w[i])
            done[i] = int(best[i]) == model.eos_id
        if all(done):
            break
        tokens = best
    return [Hypothesis(o, lp / length_penalty(len(o), cfg.alpha), lp, torch.stack(a) if need_weights else None)
            for o, lp, a in zip(out, logprob, attn)]


def _ban_repeats(logp: torch.Tensor, prefixes: list[list[int]], n: int) -> None:
    """Forbid (in place) the tokens that would repeat an n-gram of each prefix."""
    if n <= 0:
        return
    for row, seq in enumerate(prefixes):
        if len(seq) < n:
            continue
        head = tuple(seq[len(seq) - n + 1:]) if n > 1 else ()
        banned = [seq[j + n - 1] for j in range(len(seq) - n + 1) if tuple(seq[j:j + n - 1]) == head]
        if banned:
            logp[row, banned] = -float("inf")


@torch.no_grad()
def beam_search(model, batch: dict, cfg: SearchConfig | None = None,
                need_weights: bool = False) -> list[list[Hypothesis]]:
    """The ``cfg.nbest`` best hypotheses of each sentence, best first."""
    cfg = cfg or SearchConfig()
    k = cfg.beam
    n = batch["src"].shape[0]
    limits = max_lengths(batch["src_lengths"], cfg.max_len_a, cfg.max_len_b, model.max_target_len)
    state = model.start(batch)
    state = {key: v.repeat_interleave(k, 0) for key, v in state.items()}  # (sentence, beam) flattened
    tokens = torch.full((n * k,), model.bos_id, dtype=torch.long)
    scores = torch.full((n, k), -float("inf"), dtype=torch.float64)  # sums of log-probabilities, kept in fp64
    scores[:, 0] = 0.0  # one live prefix per sentence at the start (the others would repeat it)
    prefixes: list[list[int]] = [[] for _ in range(n * k)]
    attn: list[list[torch.Tensor]] = [[] for _ in range(n * k)]
    finished: list[list[Hypothesis]] = [[] for _ in range(n)]
    done = [False] * n
    for t in range(max(limits)):
        logp, state, w = model.step(tokens, state, need_weights)  # [n*k, V]
        vocab = logp.shape[-1]
        for i in range(n):
            if t == limits[i] - 1:
                rows = slice(i * k, (i + 1) * k)
                logp[rows, :model.eos_id] = -float("inf")
                logp[rows, model.eos_id + 1:] = -float("inf")
        _ban_repeats(logp, prefixes, cfg.no_repeat_ngram)
        cand = (scores.view(-1, 1) + logp.double()).view(n, k * vocab)
        top, where = cand.topk(min(2 * k, k * vocab), dim=1)  # k of them may end: k live ones remain
        keep_rows, keep_tokens, new_scores = [], [], torch.full((n, k), -float("inf"), dtype=torch.float64)
        for i in range(n):
            if done[i]:
                keep_rows += [i * k] * k
                keep_tokens += [model.eos_id] * k
                continue
            live = 0
            for rank, (s, flat) in enumerate(zip(top[i].tolist(), where[i].tolist())):
                if s == -float("inf"):
                    break
                row, tok = i * k + flat // vocab, flat % vocab
                if tok == model.eos_id:
                    # an ending counts only among the k best candidates (beyond them it would
                    # not have been in the beam): so beam 1 is exactly greedy search
                    if rank < k and len(finished[i]) < k:
                        seq = prefixes[row] + [tok]
                        a = torch.stack(attn[row] + [w[row]]) if need_weights else None
                        finished[i].append(Hypothesis(seq, s / length_penalty(len(seq), cfg.alpha), s, a))
                    continue
                if live < k:
                    keep_rows.append(row)
                    keep_tokens.append(tok)
                    new_scores[i, live] = s
                    live += 1
            if len(finished[i]) >= k or live == 0:
                done[i] = True
            while live < k:  # fewer live candidates than beams: dead rows that score -inf
                keep_rows.append(i * k)
                keep_tokens.append(model.eos_id)
                live += 1
        if all(done):
            break
        idx = torch.tensor(keep_rows, dtype=torch.long)
        prefixes = [prefixes[r] + [tok] for r, tok in zip(keep_rows, keep_tokens)]
        if need_weights:
            attn = [attn[r] + [w[r]] for r in keep_rows]
        scores = new_scores
        state = _reorder(state, idx)
        tokens = torch.tensor(keep_tokens, dtype=torch.long)
    return [sorted(f, key=lambda h: -h.score)[:cfg.nbest] for f in finished]


def translate_batch(model, batch: dict, cfg: SearchConfig, need_weights: bool = False) -> list[list[Hypothesis]]:
    """n-best lists of one batch: greedy search when ``cfg.beam == 1``, else beam search."""
    if cfg.beam == 1:
        return [[h] for h in greedy(model, batch, cfg, need_weights)]
    return beam_search(model, batch, cfg, need_weights)
