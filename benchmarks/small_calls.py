"""Small inference calls: the paths attnkit takes for them against the general ones.

1. Attention: the ``direct`` backend (all scores at once) against ``chunked`` (online
   softmax over tiles), both forced, without gradients, on the shapes where the dispatcher
   now picks ``direct``: attention pooling over a sentence, a short self-attention, up to
   the one-tile budget (4M floats of score work).
2. LSTM and GRU: ``LSTMEncoder``/``GRUEncoder`` on the fused kernel (``attnkit.nn.rnn_kernel``;
   past ``MAX_BATCH`` too, to see where it stops paying) against the same encoder on
   PyTorch's LSTM/GRU over the packed batch (oneDNN, ``rnn_kernel.off()``), at batch 1-32.
3. A BiLSTM over a token embedding: the first layer's input projections kept per token
   (``attnkit.nn.token_rows``) against the kernel projecting them on every call.
4. RNN decoder steps (beam 5) on the kernel, from the decoder's state, against PyTorch's.

Each case's contenders run interleaved, in rounds (the order alternating), medians of the
per-call times; ratios are general / small-call path (> 1: the small-call path is faster).

    python benchmarks/small_calls.py            # -> benchmarks/results/small_calls.json
"""
from __future__ import annotations

import statistics
import time

import torch

from _common import machine, row, write_results

ROUNDS = 7
CALLS = 30


def interleaved(contenders: dict, calls: int = CALLS, rounds: int = ROUNDS) -> dict:
    """name -> median ms per call over ``rounds`` rounds of ``calls`` calls, contenders taking turns."""
    with torch.inference_mode():
        for f in contenders.values():
            for _ in range(3):
                f()
        times = {k: [] for k in contenders}
        for r in range(rounds):
            order = list(contenders) if r % 2 == 0 else list(reversed(contenders))
            for k in order:
                t0 = time.perf_counter()
                for _ in range(calls):
                    contenders[k]()
                times[k].append((time.perf_counter() - t0) / calls * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def compared(name: str, ms: dict, fast: str, general: str, **extra) -> list[dict]:
    """Print and return the rows of one case: each path's ms and general / fast."""
    ratio = ms[general] / ms[fast]
    print(f"{name:32} {fast} {ms[fast]:8.3f} ms  {general} {ms[general]:8.3f} ms  {ratio:5.2f}x  "
          + "  ".join(f"{k}: {v}" for k, v in extra.items()), flush=True)
    return [row(name, f"{fast}_ms", round(ms[fast], 4), unit="ms"),
            row(name, f"{general}_ms", round(ms[general], 4), unit="ms"),
            row(name, f"{general}_over_{fast}", round(ratio, 2), better="higher", unit="x", **extra)]


def attention_cases() -> list[dict]:
    from attnkit.attention import Attention, AttentionPooling

    rows = []
    cases = [  # name, module, inputs
        ("pooling additive B1 L20 d256", AttentionPooling(256, score="additive", hidden=128),
         (torch.randn(1, 20, 256),), {"lengths": torch.tensor([20])}),
        ("pooling additive B32 L50 d256", AttentionPooling(256, score="additive", hidden=128),
         (torch.randn(32, 50, 256),), {"lengths": torch.randint(10, 51, (32,)).clamp(max=50)}),
        ("self additive B1 L64 d64", Attention(64, 64, score="additive", hidden=64),
         (torch.randn(1, 64, 64),) * 3, {}),
        ("self mlp B2 L256 d64", Attention(64, 64, score="mlp", hidden=32),
         (torch.randn(2, 256, 64),) * 3, {}),
        ("self additive B1 L1000 d64", Attention(64, 64, score="additive", hidden=64),
         (torch.randn(1, 1000, 64),) * 3, {}),
    ]
    for name, module, args, kw in cases:
        module.eval()
        got = {}
        for backend in ("direct", "chunked"):
            module.spec.backend = backend
            with torch.inference_mode():
                got[backend] = module(*args, **kw)[0]
        err = (got["direct"] - got["chunked"]).abs().max().item()

        def call(backend, module=module, args=args, kw=kw):
            module.spec.backend = backend
            return module(*args, **kw)

        ms = interleaved({b: (lambda b=b: call(b)) for b in ("direct", "chunked")})
        module.spec.backend = "auto"
        with torch.inference_mode():
            module(*args, **kw)
        rows += compared(name, ms, "direct", "chunked", auto_picks=module.last_dispatch.backend, max_abs_diff=err)
    return rows


def rnn_cases() -> list[dict]:
    from attnkit.nn import GRUEncoder, LSTMEncoder, rnn_kernel

    rows = []
    for cell, cls, hidden, batches in (("lstm", LSTMEncoder, 128, (1, 2, 4, 8, 16, 32)),
                                       ("lstm", LSTMEncoder, 256, (1, 2, 4, 8, 16, 32)),
                                       ("gru", GRUEncoder, 256, (1, 8, 16))):
        enc = cls(384, hidden=hidden).eval()
        for b in batches:
            x = torch.randn(b, 24, 384)
            lengths = torch.randint(8, 25, (b,))
            lengths[0] = 24

            def torch_lstm(enc=enc, x=x, lengths=lengths):
                with rnn_kernel.off():
                    return enc(x, lengths)

            def fused(enc=enc, x=x, lengths=lengths):  # the encoder's own call, past the batch limit too
                limit, rnn_kernel.MAX_BATCH = rnn_kernel.MAX_BATCH, 1 << 30
                try:
                    return enc(x, lengths)
                finally:
                    rnn_kernel.MAX_BATCH = limit

            with torch.inference_mode():
                err = (fused() - torch_lstm()).abs().max().item()
                uses = rnn_kernel.usable(enc.rnn, x)  # what the encoder picks by itself
            ms = interleaved({"fused": fused, "torch": torch_lstm})
            rows += compared(f"{cell} bi H{hidden} D384 T<=24 B{b}", ms, "fused", "torch",
                             encoder_uses_fused=uses, max_abs_diff=err)
    return rows


def token_cases() -> list[dict]:
    """A BiLSTM over a token embedding (70,000 words of 384 dims, as the distilled SST-2
    student): the first layer's input projections kept per token (``encode_tokens``, the
    steady state: every token seen before) against the fused kernel projecting them on every
    call (``encoder(embedding(tokens))``)."""
    from attnkit.nn import LSTMEncoder, TokenEmbedding

    rows = []
    emb = TokenEmbedding(70_000, 384).eval()
    for hidden in (128, 256):
        enc = LSTMEncoder(384, hidden=hidden).eval()
        for b in (1, 8, 16):
            tokens = torch.randint(2, 70_000, (b, 24))
            lengths = torch.randint(8, 25, (b,))
            lengths[0] = 24

            def kept(enc=enc, tokens=tokens, lengths=lengths):
                return enc.encode_tokens(emb, tokens, lengths)

            def projected(enc=enc, tokens=tokens, lengths=lengths):
                return enc(emb(tokens), lengths)

            with torch.inference_mode():
                err = (kept() - projected()).abs().max().item()
            ms = interleaved({"kept_rows": kept, "projected": projected})
            rows += compared(f"lstm bi H{hidden} tokens V70000 D384 T<=24 B{b}", ms, "kept_rows", "projected",
                             max_abs_diff=err)
    return rows


def decoder_cases() -> list[dict]:
    """One step of an RNN decoder (translation: beam 5 over one sentence of 20 source words,
    the layout of ``examples/multi30k_gru.yaml``, with either cell) on the kernel against the
    same step on PyTorch's LSTM/GRU: the recurrence takes its initial states, so each step
    runs there."""
    from attnkit.nn import rnn_kernel
    from attnkit.nn.decoders import GRUDecoder, LSTMDecoder

    rows = []
    for cell, cls in (("lstm", LSTMDecoder), ("gru", GRUDecoder)):
        dec = cls(256, 512, hidden=256, attention={"score": "additive", "hidden": 256}).eval()
        with torch.inference_mode():
            state = dec.start(torch.randn(5, 20, 512), torch.full((5,), 20))
        y = torch.randn(5, 1, 256)

        def plain(dec=dec, state=state, y=y):
            with rnn_kernel.off():
                return dec.step(y, state)[0]

        with torch.inference_mode():
            err = (dec.step(y, state)[0] - plain()).abs().max().item()
        ms = interleaved({"fused": lambda dec=dec, state=state, y=y: dec.step(y, state)[0], "torch": plain})
        rows += compared(f"{cell} decoder step H256 beam5 S20", ms, "fused", "torch", max_abs_diff=err)
    return rows


def main() -> None:
    torch.set_num_threads(2)
    torch.manual_seed(0)
    from attnkit.nn import rnn_kernel

    if rnn_kernel.kernel() is None:
        raise SystemExit(f"the fused LSTM/GRU kernel is not available here: {rnn_kernel.why_not()}")
    rows = attention_cases() + rnn_cases() + token_cases() + decoder_cases()
    notes = [f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32, inference mode",
             f"medians of {ROUNDS} rounds of {CALLS} calls per contender, contenders interleaved (order alternating)",
             "ratios: general path / small-call path; > 1: the small-call path is faster",
             f"CPU: {machine().get('cpu', '?')}"]
    print(write_results("small_calls", rows, notes))


if __name__ == "__main__":
    main()
