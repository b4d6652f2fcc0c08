"""Attention benchmark: naive materialised PyTorch vs torch SDPA vs FlexAttention vs attnkit,
same inputs, fp32, 2 threads; forward and forward+backward median time and peak memory.

    python benchmarks/attention.py                 # everything (about 45-50 minutes here)
    python benchmarks/attention.py --section dot --lengths 128 512
    python benchmarks/attention.py --quick --variants none padding --out /tmp/attention.json  # smoke run
    python benchmarks/attention.py --section dot --variants window256 --lengths 8192 --loaded --merge

Each (case, contender) runs in a fresh subprocess so its peak memory (resident memory above
the inputs' baseline) is its own. Writes benchmarks/results/attention.json and prints a table.

Where attnkit calls the very kernel a contender calls (dense -> SDPA; plain causal -> SDPA
with ``is_causal``), the row is parity whatever its ratio says: its ``verdict`` says so, and
every row carries each contender's min / median / max over the rounds, so the noise shows.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import RESULTS, has_bf16_units, row, write_results

DOT_SHAPES = {128: (8, 8, 64), 512: (8, 8, 64), 2048: (2, 8, 64), 8192: (1, 4, 64)}
DOT_VARIANTS = ["none", "padding", "causal", "alibi", "window256"]
PADDING_MIN_BATCH = 2  # padding needs rows of different lengths: L=8192 runs 2 rows, not 1
SAME_KERNEL = {"none": "sdpa", "causal": "sdpa"}  # attnkit dispatches these to the sdpa contender's own call
MIN_ROUNDS = 7
ADD_SCORES = ["additive", "mlp"]
NAIVE_ADDITIVE_MAX = 2048  # at 8192 the Lq x Lk x 128 tensor alone is 64 GiB (fwd+bwd: > 128 GiB)


# --------------------------------------------------------------------------- worker side
DTYPE = {"name": "fp32"}  # this process's dtype (--dtype; passed to the workers in their spec)


def _set_dtype(name: str) -> None:
    DTYPE["name"] = name


def _dtype():
    """The torch dtype of this process's ``--dtype``."""
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16}[DTYPE["name"]]


def padded_lengths(batch: int, length: int):
    """Key lengths of the padding case: spread evenly over [L/4, L] with the longest row
    full length, as in a real batch padded to its longest member (so no key is masked for
    every row, and trimming the key range saves nothing)."""
    import torch

    if batch == 1:
        return torch.tensor([length])
    return torch.linspace(length // 4, length, batch).round().long()


def _dot_case(variant, length, contender, grad):
    import torch
    import torch.nn.functional as F

    from attnkit.attention import (
        ALiBi,
        attend,
        build_score,
        causal,
        key_padding,
        window,
    )

    b, h, d = DOT_SHAPES[length]
    if variant == "padding":
        b = max(b, PADDING_MIN_BATCH)
    g = torch.Generator().manual_seed(0)
    dtype = _dtype()
    q, k, v = (torch.randn(b, h, length, d, generator=g).to(dtype).requires_grad_(grad) for _ in range(3))
    scale = 1 / math.sqrt(d)
    i = torch.arange(length)
    lengths = padded_lengths(b, length)
    alibi = ALiBi(h)
    allowed = {
        "none": None,
        "padding": (i[None, :] < lengths[:, None])[:, None, None, :],  # (B,1,1,L)
        "causal": i[:, None] >= i[None, :],
        "alibi": None,
        "window256": (i[:, None] - i[None, :]).abs() <= 256,
    }[variant]
    bias = (-alibi.slopes.view(1, h, 1, 1) * (i[:, None] - i[None, :]).abs()).to(dtype) if variant == "alibi" \
        else None

    if contender == "naive":
        def fn():
            s = (q * scale) @ k.transpose(-1, -2)
            if bias is not None:
                s = s + bias
            if allowed is not None:
                s = s.masked_fill(~allowed, float("-inf"))
            return torch.softmax(s, -1) @ v
    elif contender == "sdpa":
        def fn():
            if variant == "causal":
                return F.scaled_dot_product_attention(q, k, v, is_causal=True)
            return F.scaled_dot_product_attention(q, k, v, attn_mask=bias if bias is not None else allowed)
    elif contender == "flex":
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention

        flex = torch.compile(flex_attention, dynamic=False)
        mask_mod = {"padding": lambda b_, h_, qi, ki: ki < lengths[b_], "causal": lambda b_, h_, qi, ki: qi >= ki,
                    "window256": lambda b_, h_, qi, ki: (qi - ki).abs() <= 256}.get(variant)
        block_mask = create_block_mask(mask_mod, b, h, length, length, device="cpu") if mask_mod else None
        slopes = alibi.slopes
        score_mod = (lambda s, b_, h_, qi, ki: s - slopes[h_] * (qi - ki).abs()) if variant == "alibi" else None

        def fn():
            return flex(q, k, v, score_mod=score_mod, block_mask=block_mask)
    else:
        score = build_score("scaled_dot", d, d)
        mask = {"none": None, "padding": key_padding(lengths=lengths), "causal": causal(), "alibi": None,
                "window256": window(256)}[variant]
        mods = [alibi] if variant == "alibi" else []
        need_weights = contender == "attnkit+weights"

        def fn():
            out, _w, decision = attend(q, k, v, score, mask, mods, need_weights=need_weights)
            fn.backend = decision.backend  # recorded with the timings
            return out
    return fn, (q, k, v)


def _additive_case(score_name, length, contender, grad):
    import torch

    from attnkit.attention import attend, build_score

    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    dtype = _dtype()
    q, k, v = (torch.randn(2, 1, length, 128, generator=g).to(dtype).requires_grad_(grad) for _ in range(3))
    opts = {"hidden": 128} if score_name == "additive" else {"hidden": 128, "activation": "relu"}
    score = build_score(score_name, 128, 128, **opts).to(dtype)  # a bf16 model: its weights in bf16 too
    if contender == "naive":
        act = torch.tanh if score_name == "additive" else torch.relu

        def fn():  # as a user writes it from the formula; materialises (B, 1, L, L, 128)
            hidden = act(score.w_q(q).unsqueeze(-2) + score.w_k(k).unsqueeze(-3))
            return torch.softmax((hidden @ score.v.weight.t()).squeeze(-1), -1) @ v
    else:
        from attnkit.attention import pair_kernel

        # attnkit-tensor-ops: the pair loop as tensor ops (the path where the C++ kernel cannot be built)
        ops = pair_kernel.off if contender == "attnkit-tensor-ops" else contextlib.nullcontext

        def fn():
            return attend(q, k, v, score)[0]
        fn.context = ops  # around the backward too (_callable): off() is per thread and call
    return fn, (q, k, v)


def _callable(make, spec, contender, mode):
    fn, inputs = make(spec["variant"], spec["length"], contender, grad=mode == "fwdbwd")
    context = getattr(fn, "context", contextlib.nullcontext)
    if mode == "fwd":
        def forward():
            with context():
                return fn()
        forward.inner = fn
        return forward

    def call():
        for t in inputs:
            t.grad = None
        with context():
            fn().sum().backward()
    call.inner = fn
    return call


def _skip_bwd(contender):
    return contender == "flex"  # FlexAttention has no backward on CPU in this torch


class PeakRSS:
    """Peak resident memory growth during a ``with`` block, sampled every 0.2 ms from
    /proc/self/statm (torch releases the GIL in its kernels, so the sampler keeps up).
    Workers run with MALLOC_MMAP_THRESHOLD_=65536 so that freed tensors leave the process
    and every call's own peak shows."""

    def __enter__(self):
        import os
        import threading

        self._page = os.sysconf("SC_PAGE_SIZE")
        self.base = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self._page

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            self._stop.wait(0.0002)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())

    @property
    def mb(self) -> float:
        return round((self.peak - self.base) / 2**20, 1)


def worker_memory(spec: dict) -> dict:
    """Peak memory of one contender and mode (fresh process): a warm-up call, then the
    measured one."""
    import gc

    import torch

    torch.set_num_threads(2)
    _set_dtype(spec.get("dtype", "fp32"))
    make = _dot_case if spec["section"] == "dot" else _additive_case
    mode = spec["mode"]
    call = _callable(make, spec, spec["contender"], mode)
    with torch.set_grad_enabled(mode == "fwdbwd"):
        if not spec.get("once"):
            call()
        gc.collect()
        with PeakRSS() as peak:
            call()
    return {mode + "_peak_mb": peak.mb}


def worker_time(spec: dict) -> dict:
    """Min / median / max times of all contenders of one case, interleaved round by round in
    one process (round r starts with contender r mod n) so that machine noise hits them alike."""
    import statistics
    import time

    import torch

    torch.set_num_threads(2)
    _set_dtype(spec.get("dtype", "fp32"))
    make = _dot_case if spec["section"] == "dot" else _additive_case
    res = {c: {} for c in spec["contenders"]}
    for mode in ("fwd", "fwdbwd"):
        calls = {}
        for c in spec["contenders"]:
            if "error" in res[c]:  # failed in the forward round: not tried again
                continue
            if mode == "fwdbwd" and _skip_bwd(c):
                res[c]["fwdbwd_ms"] = None
                continue
            calls[c] = _callable(make, spec, c, mode)
        times = {c: [] for c in calls}
        with torch.set_grad_enabled(mode == "fwdbwd"):
            first = {}
            for c, call in list(calls.items()):  # warm-up round (compiles flex)
                t0 = time.perf_counter()
                try:
                    call()
                except Exception as e:  # one contender failing (flex's compile) must not void the case
                    lines = str(e).strip().splitlines()
                    res[c] = {"error": f"{type(e).__name__}: {lines[0] if lines else ''}"[:300]}
                    del calls[c], times[c]
                    continue
                first[c] = time.perf_counter() - t0
                if c == "flex" and mode == "fwd":
                    res[c]["compile_s"] = round(first[c], 2)
                backend = getattr(getattr(call, "inner", call), "backend", None)
                if backend:
                    res[c]["backend"] = backend
            slow = sum(first.values()) > 20
            if slow:  # measured runs after the warm-up: MIN_ROUNDS for calls under 10 s, 1 up to
                # 90 s; a contender slower than that keeps its warm-up run as its one sample
                want = {c: MIN_ROUNDS if t <= 10 else 1 if t <= 90 else 0 for c, t in first.items()}
                for c, n in want.items():
                    if n == 0:
                        times[c].append(first[c])
            else:
                rounds = max(MIN_ROUNDS, min(32, int(spec.get("seconds", 20) / max(sum(first.values()), 1e-3))))
                want = dict.fromkeys(calls, rounds)
            order = list(calls)
            for r in range(max(want.values(), default=0)):  # rotate the order: no contender always runs after the same one
                for c in order[r % len(order):] + order[:r % len(order)]:
                    if r < want[c]:
                        t0 = time.perf_counter()
                        calls[c]()
                        times[c].append(time.perf_counter() - t0)
        for c, ts in times.items():
            res[c][mode + "_ms"] = round(statistics.median(ts) * 1e3, 3)
            res[c][mode + "_min_ms"] = round(min(ts) * 1e3, 3)
            res[c][mode + "_max_ms"] = round(max(ts) * 1e3, 3)
            res[c][mode + "_rounds"] = len(ts)
    return res


# --------------------------------------------------------------------------- parent side
class BusyCore:
    """A process of our own spinning on one core for the duration (``--loaded``): what a
    shared machine does to each contender (another process, a data loader, a second rank)."""

    def __enter__(self):
        code = "import os\ntry:\n    os.sched_setaffinity(0, {os.cpu_count() - 1})\nexcept (AttributeError, OSError):\n" \
               "    pass\nwhile True:\n    pass\n"
        self.proc = subprocess.Popen([sys.executable, "-c", code])
        return self

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait()


def measure(spec: dict, kind: str) -> dict:
    """Run a worker subprocess (``kind`` is "time" or "memory") and parse its JSON line."""
    env = dict(os.environ)
    if kind == "memory":  # return freed memory to the OS so each call's own peak shows; not when timing
        env["MALLOC_MMAP_THRESHOLD_"] = "65536"
    proc = subprocess.run([sys.executable, __file__, f"--worker-{kind}", json.dumps(spec)],
                          capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def ratio(a, b):
    return round(a / b, 3) if a and b else None


def spread(res: dict, mode: str) -> list | None:
    """``[min, median, max]`` ms of one contender and mode, or None if it did not run."""
    med = res.get(f"{mode}_ms")
    if not med:
        return None
    return [res.get(f"{mode}_min_ms", med), med, res.get(f"{mode}_max_ms", med)]


def verdict(variant: str, spreads: dict, best: str) -> str:
    """What a row shows: parity where attnkit runs the same kernel as a contender (any ratio
    is noise); else "within noise" when attnkit's min-max range overlaps the fastest
    contender's, or who is faster."""
    (lo, _, hi), (b_lo, _, b_hi) = spreads["attnkit"], spreads[best]
    overlap = lo <= b_hi and b_lo <= hi
    if variant in SAME_KERNEL:
        same = SAME_KERNEL[variant]
        extra = f"; {best} faster" if b_hi < lo else ""  # another contender beats the shared kernel
        return f"parity (same kernel as {same}){extra}"
    if overlap:
        return f"within noise of {best}"
    return "attnkit faster than every contender" if hi < b_lo else f"{best} faster"


def dot_rows(results: dict, lengths) -> list[dict]:
    rows = []
    for variant in DOT_VARIANTS:
        for n in lengths:
            r = results.get(("dot", variant, n))
            if not r:
                continue
            ours = r["attnkit"]
            for mode in ("fwd", "fwdbwd"):
                spreads = {c: spread(r[c], mode) for c in ("naive", "sdpa", "flex", "attnkit") if r.get(c)}
                spreads = {c: s for c, s in spreads.items() if s}
                others = {c: s[1] for c, s in spreads.items() if c != "attnkit"}
                name = f"dot/{variant}/L{n}"
                if not others or "attnkit" not in spreads:
                    continue
                best = min(others, key=others.get)
                slow = ratio(ours[f"{mode}_ms"], others[best])
                info = {"fastest": best, "verdict": verdict(variant, spreads, best), "spread_ms": spreads}
                if variant in ("none", "padding", "alibi"):
                    rows.append(row(name, f"{mode}_time_vs_fastest", slow, 1.10, "lower", "x", **info))
                else:
                    sp = ratio(others["sdpa"], ours[f"{mode}_ms"])
                    target = None
                    if variant == "causal" and n in (2048, 8192):
                        # parity with SDPA is_causal (issue "The attention core on the CPU it lands on"); the
                        # earlier 1.5x at 8192 is out of reach: SDPA's own kernel already skips the masked half
                        target = 0.95
                    elif variant == "window256" and n == 8192:
                        target = 4.0
                    rows.append(row(name, f"{mode}_speedup_vs_sdpa", sp, target, "higher", "x", **info))
                    rows.append(row(name, f"{mode}_time_vs_fastest", slow, None, "lower", "x", **info))
    return rows


def additive_rows(results: dict, lengths) -> list[dict]:
    rows = []
    for score in ADD_SCORES:
        for n in lengths:
            r = results.get(("additive", score, n))
            if not r:
                continue
            ours, naive = r["attnkit"], r.get("naive") or {}
            name = f"{score}/L{n}"
            target_speed = 5.0 if n == 2048 else None
            target_mem = 0.05 if n == 2048 else None
            if naive.get("fwdbwd_ms"):
                rows.append(row(name, "fwdbwd_speedup_vs_naive", ratio(naive["fwdbwd_ms"], ours["fwdbwd_ms"]),
                                target_speed, "higher", "x"))
                rows.append(row(name, "fwdbwd_peak_vs_naive", ratio(ours["fwdbwd_peak_mb"], naive["fwdbwd_peak_mb"]),
                                target_mem, "lower", "x"))
                rows.append(row(name, "fwd_speedup_vs_naive", ratio(naive["fwd_ms"], ours["fwd_ms"]), None, "higher", "x"))
            ops = r.get("attnkit-tensor-ops") or {}
            for mode in ("fwd", "fwdbwd"):  # the fused C++ pair loop vs the same loop as tensor ops
                if ops.get(f"{mode}_ms") and ours.get(f"{mode}_ms"):
                    rows.append(row(name, f"{mode}_kernel_speedup_vs_tensor_ops",
                                    ratio(ops[f"{mode}_ms"], ours[f"{mode}_ms"]), None, "higher", "x"))
            if n == 8192:
                rows.append(row(name, "fwdbwd_peak_mb", ours["fwdbwd_peak_mb"], 2048, "lower", "MiB"))
    return rows


def loaded_rows(results: dict) -> list[dict]:
    """Under load (``--loaded``): attnkit's speed-up over the SDPA contender (given the mask)
    and over the naive one, and how much slower each got than quiet."""
    rows = []
    for (section, variant, n), r in sorted(results.items()):
        ours = r.get("attnkit", {}).get("loaded")
        if not ours:
            continue
        name = f"{section}/{variant}/L{n}" if section == "dot" else f"{variant}/L{n}"
        for mode in ("fwd", "fwdbwd"):
            rival = "sdpa" if section == "dot" else "naive"
            theirs = (r.get(rival) or {}).get("loaded") or {}
            target = 2.0 if (variant == "window256" and n == 8192) or (section == "additive" and n == 2048) else None
            if theirs.get(f"{mode}_ms") and ours.get(f"{mode}_ms"):
                rows.append(row(name, f"loaded_{mode}_speedup_vs_{rival}", ratio(theirs[f"{mode}_ms"], ours[f"{mode}_ms"]),
                                target, "higher", "x"))
            for c, res in r.items():
                lo = (res.get("loaded") or {}).get(f"{mode}_ms")
                if lo and res.get(f"{mode}_ms"):
                    rows.append(row(f"{name}/{c}", f"loaded_{mode}_slowdown", ratio(lo, res[f"{mode}_ms"]), None,
                                    "lower", "x"))
    return rows


def weights_rows(results: dict) -> list[dict]:
    r = results.get(("dot", "none", 2048))
    if not r or not r.get("attnkit+weights"):
        return []
    w, base = r["attnkit+weights"], r["attnkit"]
    return [row("dot/none/L2048", "need_weights_fwd_cost", ratio(w["fwd_ms"], base["fwd_ms"]), 2.0, "lower", "x"),
            row("dot/none/L2048", "need_weights_fwdbwd_cost", ratio(w["fwdbwd_ms"], base["fwdbwd_ms"]), None, "lower", "x")]


def merge_into_existing(rows: list[dict], notes: list[str], results: dict, out) -> tuple[list[dict], list]:
    """Rows of this run plus the existing file's rows for the cases this run did not measure
    (each kept row marked with the run it came from)."""
    path = Path(out) if out else RESULTS / "attention.json"
    old = json.loads(path.read_text())
    ran = {f"dot/{v}/L{n}" if sec == "dot" else f"{v}/L{n}" for sec, v, n in results}
    case = lambda name: "/".join(name.split("/")[:3]) if name.startswith("dot/") else "/".join(name.split("/")[:2])
    kept = [r if "from_run" in r else dict(r, from_run=old["date"])  # a row keeps the run it first came from
            for r in old["rows"] if case(r["name"]) not in ran]
    return rows + kept, notes + [
        f"merged: the rows of {', '.join(sorted(ran))} are from this run; every row with 'from_run' is kept from "
        f"the run of {old['date']} ({old['command']}, {old['machine'].get('cpu')}), whose notes were: "
        + " | ".join(n for n in old["notes"] if not n.startswith("merged:"))]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--section", choices=["dot", "additive", "all"], default="all")
    ap.add_argument("--lengths", type=int, nargs="*", default=[128, 512, 2048, 8192])
    ap.add_argument("--variants", nargs="*", help="only these dot variants / additive scores")
    ap.add_argument("--seconds", type=float, default=20.0, help="timing budget per case and mode")
    ap.add_argument("--quick", action="store_true", help="smoke run: L=128 only, 1 s per case and mode")
    ap.add_argument("--out", help="results file (default benchmarks/results/attention.json)")
    ap.add_argument("--merge", action="store_true",
                    help="replace only the re-measured cases' rows in the existing results file and keep the "
                         "others, recording which run each came from")
    ap.add_argument("--without", nargs="*", default=[], help="leave these contenders out (e.g. flex)")
    ap.add_argument("--loaded", action="store_true",
                    help="also time every case with a busy process of this benchmark's own on one core, and "
                         "report each contender under load beside its quiet figures")
    ap.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32",
                    help="inputs (and the additive scores' weights) in this dtype; bf16 results go to "
                         "benchmarks/results/attention_bf16.json unless --out says otherwise")
    ap.add_argument("--worker-time", help=argparse.SUPPRESS)
    ap.add_argument("--worker-memory", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker_time:
        print(json.dumps(worker_time(json.loads(args.worker_time))))
        return
    if args.worker_memory:
        print(json.dumps(worker_memory(json.loads(args.worker_memory))))
        return

    if args.quick:
        args.lengths, args.seconds = [128], 1.0
    results: dict = {}
    timings = []
    sections = ["dot", "additive"] if args.section == "all" else [args.section]
    for section in sections:
        variants = DOT_VARIANTS if section == "dot" else ADD_SCORES
        for variant in [v for v in variants if not args.variants or v in args.variants]:
            for n in args.lengths:
                contenders = ["naive", "sdpa", "flex", "attnkit"] if section == "dot" else ["naive", "attnkit"]
                if section == "additive" and n == 2048:
                    contenders.append("attnkit-tensor-ops")
                if section == "dot" and variant == "none" and n == 2048:
                    contenders.append("attnkit+weights")
                contenders = [c for c in contenders if c not in args.without
                              and not (section == "additive" and c == "naive" and n > NAIVE_ADDITIVE_MAX)]
                spec = {"section": section, "variant": variant, "length": n, "contenders": contenders,
                        "seconds": args.seconds, "dtype": args.dtype}
                timed = measure(spec, "time")
                loaded = {}
                if args.loaded:
                    with BusyCore():
                        loaded = measure(spec, "time")
                for c in contenders:
                    res = dict(timed.get(c, {"error": timed.get("error")}))
                    if args.loaded:
                        res["loaded"] = {k: v for k, v in loaded.get(c, {}).items()
                                         if k.startswith(("fwd_ms", "fwdbwd_ms", "fwd_min", "fwd_max", "fwdbwd_m"))}
                    for mode in ("fwd", "fwdbwd"):
                        if mode == "fwdbwd" and _skip_bwd(c):
                            continue
                        slow = section == "additive" and c == "naive" and n >= 2048
                        res.update(measure({**spec, "contender": c, "mode": mode, "once": slow}, "memory"))
                    results.setdefault((section, variant, n), {})[c] = res
                    label = f"{section}/{variant}/L{n}/{c}" if section == "dot" else f"{variant}/L{n}/{c}"
                    timings.append(row(label, "measurement", res.get("fwd_ms"), None, "lower", "ms", **res))
                    print(f"{section:8s} {variant:10s} L={n:5d} {c:16s} "
                          + " ".join(f"{k}={v}" for k, v in res.items()), flush=True)
    rows = timings + dot_rows(results, args.lengths) + additive_rows(results, args.lengths) + weights_rows(results)
    rows += loaded_rows(results)
    notes = [
        (f"{args.dtype}, torch.set_num_threads(2); times: medians over rounds in which all contenders of a case run "
         "interleaved in one process; peak memory: resident-memory growth during one call after a warm-up, "
         "sampled every 0.2 ms, one fresh process per contender and mode (inputs excluded)"),
        (f"at least {MIN_ROUNDS} rounds per case and mode, the order rotated every round (round r starts with "
         "contender r mod n); *_min_ms / *_max_ms and the rows' spread_ms ([min, median, max] per contender) "
         "show the noise"),
        (f"cases whose warm-up round exceeds 20 s: after it, {MIN_ROUNDS} measured runs per contender under 10 s, "
         "1 up to 90 s (the *_rounds fields give the count)"),
        ("verdict: 'parity (same kernel as sdpa)' where attnkit calls the sdpa contender's own kernel (dense: "
         "F.scaled_dot_product_attention without mask; plain causal: the same with is_causal=True), whatever the "
         "ratio; otherwise 'within noise of X' when attnkit's min-max range overlaps the fastest contender's, "
         "else who is faster. 'fastest' names the fastest contender of every row, speedup_vs_sdpa rows included"),
        (f"padding: key lengths spread evenly over [L/4, L] with the longest row full length (a batch is padded "
         f"to its longest member), so no key is masked for every row and no contender gets fewer keys; "
         f"at least {PADDING_MIN_BATCH} rows (L=8192 runs 2 rows instead of 1)"),
        ("SDPA and naive get their masks/biases precomputed (outside the timing); attnkit builds them from "
         "mask_mod/score_mod, on every call for masks over tensors (key padding) and once per shape for positional "
         "masks (causal, window: their tile plan is cached, as SDPA's mask and FlexAttention's block mask are built "
         "once; the untimed warm-up call plans)"),
        ("FlexAttention: compiled (compile_s reported separately), forward only (no CPU backward in this torch), "
         "block mask created once outside the timing"),
        f"naive additive/MLP not run above L={NAIVE_ADDITIVE_MAX}: its Lq x Lk x 128 tensor needs > 64 GiB",
        "backend: the attnkit backend the dispatcher chose (recorded from the timed calls)",
    ]
    if args.dtype != "fp32":
        args.out = args.out or str(Path(__file__).resolve().parent / "results" / f"attention_{args.dtype}.json")
        notes.append(f"{args.dtype}: inputs, SDPA's bias and the additive/MLP scores' weights in {args.dtype}; "
                     f"bf16 units by the CPU flags: {has_bf16_units()}")
    if args.merge and Path(args.out or RESULTS / "attention.json").is_file():  # nothing to merge into on a first run
        rows, notes = merge_into_existing(rows, notes, results, args.out)
    path = write_results("attention", rows, notes, args.out)
    print(f"\nwrote {path}")
    for r in rows:
        if r["metric"] != "measurement":
            mark = "" if r.get("target") is None else ("  OK" if r.get("meets") else "  MISS")
            print(f"{r['name']:22s} {r['metric']:28s} {r['value']!s:>8} target {r['target']!s:>5}{mark}"
                  + (f"  [{r['verdict']}]" if r.get("verdict") else ""))


if __name__ == "__main__":
    main()
