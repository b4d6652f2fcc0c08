"""Registry-driven test cases: every registered score, mask kind and modifier, so a new
component is tested without new test code (add a factory below only if it needs data)."""
import torch

from attnkit.attention import masks as M
from attnkit.attention import mods as MODS
from attnkit.attention import scores as S

SCORE_OPTIONS = {"mlp": {"hidden": 12, "activation": "gelu"}, "additive": {"hidden": 12}}


def score_names():
    return S.list_scores() + ["user_callable", "mlp_relu"]


def make_score(name, dim, device):
    if name == "mlp_relu":  # relu has a written-out tile backward; gelu goes through autograd
        return S.build_score("mlp", dim, dim, hidden=12, activation="relu").to(device)
    if name == "user_callable":
        def neg_l2(q, k):  # a user's score: negative squared distance
            return -((q.unsqueeze(-2) - k.unsqueeze(-3)) ** 2).sum(-1)
        return S.build_score(neg_l2, dim, dim).to(device)
    return S.build_score(name, dim, dim, **SCORE_OPTIONS.get(name, {})).to(device)


# Masks that need data get it here; every registered mask must appear (checked by a test).
def make_mask(name, b, lq, lk, device):
    if name == "none":
        return None
    if name == "causal":
        return M.causal()
    if name == "window":
        return M.window(5)
    if name == "prefix_lm":
        return M.prefix_lm(3)
    if name == "key_padding":  # row 0 keeps nothing: fully masked query rows
        return M.key_padding(lengths=torch.tensor([0] + [max(1, lk - 2)] * (b - 1), device=device))
    if name == "segment":
        q_ids = torch.arange(lq, device=device).div(4, rounding_mode="floor").expand(b, -1)
        kv_ids = torch.arange(lk, device=device).div(3, rounding_mode="floor").expand(b, -1)
        return M.segment(q_ids, kv_ids)
    if name == "causal&window|prefix":
        return (M.causal() & M.window(4)) | M.prefix_lm(2)
    if name == "user":
        return lambda b_, h, q, kv: (q + kv) % 3 != 0
    raise KeyError(name)


MASK_KINDS = ["none", "user", "causal&window|prefix"] + M.list_masks()


def make_mods(name, heads, device):
    if name == "none":
        return []
    if name == "user_bias":
        return [MODS.CallableMod(lambda s, b, h, q, kv: s + 0.1 * (q - kv).float().sin(), kind="bias")]
    if name == "user_general":
        return [MODS.CallableMod(lambda s, b, h, q, kv: s * 0.5 + torch.sin(s))]
    if name == "softcap":
        return [MODS.SoftCap(2.0).to(device)]
    if name == "temperature":
        return [MODS.Temperature(0.7, learnable=True).to(device)]
    if name == "relative_bias":
        m = MODS.RelativePositionBias(heads, num_buckets=8, max_distance=16).to(device)
        with torch.no_grad():
            m.table.normal_()
        return [m]
    return [MODS.build_mod(name, heads)]


MOD_KINDS = ["none", "user_bias", "user_general"] + MODS.list_mods()

# (B, H, Lq, Lk, D): length 1, unequal lengths, odd sizes not multiple of the tiles.
SHAPES = [(2, 2, 37, 45, 8), (1, 1, 1, 1, 4), (2, 3, 1, 29, 6), (1, 2, 50, 19, 5)]
