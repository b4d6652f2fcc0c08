"""``attnkit demo attention``: programmable attention on the embedded default — random inputs, several
specs, each run on the backend the dispatcher picks and checked against the float64
reference, then causal / sliding-window speed against dense SDPA."""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from ..attention import AttentionSpec, attend, build_score, explain_dispatch, window

SPECS = [
    {"score": "scaled_dot", "heads": 4},
    {"score": "scaled_dot", "mask": ["causal"], "mods": ["alibi"], "heads": 4},
    {"score": "scaled_dot", "mask": ["causal", {"window": 32}], "heads": 4},
    {"score": "cosine", "mask": [{"prefix_lm": 8}], "heads": 4},
    {"score": "additive", "mask": ["causal"], "heads": 1},
    {"score": {"name": "mlp", "hidden": 32, "activation": "relu"}, "mods": [{"softcap": 5.0}], "heads": 2},
]


def _max_rel_err(spec: dict, x: torch.Tensor, lengths: torch.Tensor) -> tuple[str, float]:
    torch.manual_seed(0)
    module = AttentionSpec.from_dict(spec).build(x.shape[-1])
    backend = explain_dispatch(module, x, lengths=lengths).backend
    with torch.no_grad():
        out, _ = module(x, lengths=lengths)
    ref_module = AttentionSpec.from_dict({**spec, "backend": "reference"}).build(x.shape[-1]).double()
    ref_module.load_state_dict(module.state_dict())
    with torch.no_grad():
        ref, _ = ref_module(x.double(), lengths=lengths)
    return backend, float((out.double() - ref).abs().max() / ref.abs().max().clamp(min=1e-12))


def _interleaved_ms(plain, ours, rounds: int) -> tuple[float, float, float, float]:
    """Median ms of two contenders timed in alternating order, and the lowest and highest
    per-round ratio (plain / ours): a single timing on a busy machine can show the opposite."""
    plain(), ours()  # warm up
    a, b = [], []
    for r in range(rounds):
        for fn, out in ((plain, a), (ours, b)) if r % 2 == 0 else ((ours, b), (plain, a)):
            t = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t)
    ratios = sorted(x / y for x, y in zip(a, b))
    return sorted(a)[rounds // 2] * 1e3, sorted(b)[rounds // 2] * 1e3, ratios[0], ratios[-1]


def run_attention_demo(console) -> None:
    """Print the correctness table and the block-sparse speed-up."""
    from rich.table import Table

    torch.manual_seed(0)
    x = torch.randn(2, 96, 64)
    lengths = torch.tensor([96, 70])
    table = Table(title="programmable attention: every spec vs the float64 reference (B=2, L=96, E=64)")
    for col in ("spec", "backend", "max rel. error"):
        table.add_column(col)
    for spec in SPECS:
        backend, err = _max_rel_err(spec, x, lengths)
        table.add_row(str(spec), backend, f"{err:.1e}")
    console.print(table)

    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 4, 4096, 64) for _ in range(3))
    score = build_score("scaled_dot", 64, 64)
    band = (torch.arange(4096)[:, None] - torch.arange(4096)[None]).abs() <= 256
    with torch.no_grad():
        dense, ours, lo1, hi1 = _interleaved_ms(lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=band),
                                                lambda: attend(q, k, v, score, window(256)), rounds=5)
    qa, ka, va = (torch.randn(2, 1, 1024, 128) for _ in range(3))
    additive = build_score("additive", 128, 128)
    with torch.no_grad():
        naive, chunked, lo2, hi2 = _interleaved_ms(lambda: torch.softmax(additive(qa, ka), -1) @ va,
                                                   lambda: attend(qa, ka, va, additive)[0], rounds=3)
    speed = Table(title="forward, fp32, this machine (median ms of interleaved rounds)")
    for col in ("attention", "plain PyTorch", "attnkit", "speed-up (range over rounds)", "attnkit memory"):
        speed.add_column(col)
    speed.add_row("sliding window 256, (B,H,L,D) = (1,4,4096,64)", f"{dense:.0f} (SDPA + mask)", f"{ours:.0f}",
                  f"{dense / ours:.1f}x ({lo1:.1f}-{hi1:.1f})", "fused kernel, masked tiles skipped")
    speed.add_row("additive, (B,L,D) = (2,1024,128)", f"{naive:.0f} (materialised)", f"{chunked:.0f}",
                  f"{naive / chunked:.1f}x ({lo2:.1f}-{hi2:.1f})", "O(L) instead of L x L x 128 floats (1 GiB)")
    console.print(speed)
    if any(lo < 0.7 * hi for lo, hi in ((lo1, hi1), (lo2, hi2))):
        console.print("[yellow]the ratios moved a lot between rounds: something else is using the CPU; the "
                      "figures in benchmarks/results/attention.json come from a quiet machine[/]")
