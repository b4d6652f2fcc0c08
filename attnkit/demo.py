"""``attnkit demo``: programmable attention on the embedded default — random inputs, several
specs, each run on the backend the dispatcher picks and checked against the float64
reference, then causal / sliding-window speed against dense SDPA."""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from .attention import AttentionSpec, explain_dispatch

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


def _median_ms(fn, repeats: int = 3) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2] * 1e3


def run_demo(console) -> None:
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

    from .attention import attend, build_score, causal, window

    q, k, v = (torch.randn(1, 4, 4096, 64) for _ in range(3))
    score = build_score("scaled_dot", 64, 64)
    sdpa = _median_ms(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True))
    ours = _median_ms(lambda: attend(q, k, v, score, causal()))
    win_sdpa_mask = (torch.arange(4096)[:, None] - torch.arange(4096)[None]).abs() <= 256
    win_sdpa = _median_ms(lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=win_sdpa_mask))
    win = _median_ms(lambda: attend(q, k, v, score, window(256)))
    speed = Table(title="forward, (B, H, L, D) = (1, 4, 4096, 64), fp32, this machine")
    for col in ("mask", "torch SDPA ms", "attnkit ms", "speed-up"):
        speed.add_column(col)
    speed.add_row("causal", f"{sdpa:.0f}", f"{ours:.0f}", f"{sdpa / ours:.2f}x")
    speed.add_row("window 256", f"{win_sdpa:.0f}", f"{win:.0f}", f"{win_sdpa / win:.2f}x")
    console.print(speed)
