"""Registry-driven test cases: every registered score, mask kind and modifier, so a new
component is tested without new test code (add a factory below only if it needs data).

Each mask case comes with its *rule*: the mask's definition written as a plain Python
predicate ``rule(b, i, j) -> bool``, from which the oracle (``oracle.py``) builds its
truth table pair by pair — never through attnkit's mask evaluation."""
import torch

from attnkit.attention import masks as M
from attnkit.attention import mods as MODS
from attnkit.attention import scores as S

from .oracle import truth_table

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


def _padding_lengths(b, lk):
    """Row 0 keeps no key (fully masked query rows), the others lose two keys."""
    return [0] + [max(1, lk - 2)] * (b - 1)


def _prefixes(b):
    return [(3 * x + 2) % 7 for x in range(b)]


def _bool_padding(b, lk):
    """Real tokens with holes: key j of row x is real unless (j + x) % 4 == 1."""
    return [[(j + x) % 4 != 1 for j in range(lk)] for x in range(b)]


def mask_case(name, b, lq, lk, device):
    """``(attnkit mask or None, rule(b, i, j) or None)`` for one mask kind."""
    if name == "none":
        return None, None
    if name == "causal":
        return M.causal(), lambda x, i, j: j <= i
    if name == "window":
        return M.window(5), lambda x, i, j: abs(i - j) <= 5
    if name == "prefix_lm":
        return M.prefix_lm(3), lambda x, i, j: j <= i or j < 3
    if name == "prefix_lm_tensor":  # a prefix per batch row
        pre = _prefixes(b)
        return M.prefix_lm(torch.tensor(pre, device=device)), lambda x, i, j: j <= i or j < pre[x]
    if name == "key_padding":
        n = _padding_lengths(b, lk)
        return M.key_padding(lengths=torch.tensor(n, device=device)), lambda x, i, j: j < n[x]
    if name == "key_padding_bool":
        real = _bool_padding(b, lk)
        return M.key_padding(mask=torch.tensor(real, device=device)), lambda x, i, j: real[x][j]
    if name == "segment":  # queries in documents of 4, keys in documents of 3
        q_ids = torch.arange(lq, device=device).div(4, rounding_mode="floor").expand(b, -1)
        kv_ids = torch.arange(lk, device=device).div(3, rounding_mode="floor").expand(b, -1)
        return M.segment(q_ids, kv_ids), lambda x, i, j: i // 4 == j // 3
    if name == "causal&window|prefix":
        return (M.causal() & M.window(4)) | M.prefix_lm(2), \
            lambda x, i, j: (j <= i and abs(i - j) <= 4) or j <= i or j < 2
    if name == "user":
        return (lambda b_, h, q, kv: (q + kv) % 3 != 0), lambda x, i, j: (i + j) % 3 != 0
    if name == "sparse_rows":
        # Odd query rows see nothing in the first key tile while even rows do, and nothing
        # between it and the diagonal: a partial tile with fully masked rows beside a visible
        # tile of the same query block, merged by log-sum-exp (16-wide tiles, small_tiles).
        return (lambda b_, h, q, kv: (kv == q) | ((kv < 4) & (q % 2 == 0))), \
            lambda x, i, j: j == i or (j < 4 and i % 2 == 0)
    raise KeyError(name)


def make_mask(name, b, lq, lk, device):
    """The attnkit mask of one kind (``None`` for ``"none"``)."""
    return mask_case(name, b, lq, lk, device)[0]


def oracle_allowed(name, b, lq, lk):
    """The truth table ``[B, 1, Lq, Lk]`` of one mask kind from its rule (``None``: all)."""
    rule = mask_case(name, b, lq, lk, "cpu")[1]
    return None if rule is None else truth_table(rule, b, lq, lk)


MASK_KINDS = ["none", "user", "causal&window|prefix", "sparse_rows", "prefix_lm_tensor",
              "key_padding_bool"] + M.list_masks()


def make_mods(name, heads, device):
    if name == "none":
        return []
    if name == "user_bias":  # depends on every index: batch, head, query and key
        return [MODS.CallableMod(lambda s, b, h, q, kv: s + 0.1 * (q - kv).float().sin() + 0.2 * b - 0.3 * h,
                                 kind="bias")]
    if name == "user_general":
        return [MODS.CallableMod(lambda s, b, h, q, kv: s * 0.5 + torch.sin(s))]
    if name == "softcap":
        return [MODS.SoftCap(2.0).to(device)]
    if name == "temperature":
        return [MODS.Temperature(0.7, learnable=True).to(device)]
    if name in ("relative_bias", "relative_bias_causal"):  # causal: T5's decoder buckets (one direction)
        m = MODS.RelativePositionBias(heads, num_buckets=8, max_distance=16,
                                      bidirectional=name == "relative_bias").to(device)
        with torch.no_grad():
            m.table.normal_()
        return [m]
    if name == "alibi+temperature+softcap":  # order matters: ((s + bias) / t) then capped
        return [MODS.ALiBi(heads).to(device), MODS.Temperature(0.6).to(device), MODS.SoftCap(3.0).to(device)]
    return [MODS.build_mod(name, heads)]


MOD_KINDS = ["none", "user_bias", "user_general", "alibi+temperature+softcap", "relative_bias_causal"] + MODS.list_mods()

# (B, H, Lq, Lk, D): length 1, unequal lengths, odd sizes not multiple of the tiles, and
# lengths past two 16-wide tiles so that several query blocks and partial tiles run.
SHAPES = [(2, 2, 37, 45, 8), (1, 1, 1, 1, 4), (2, 3, 1, 29, 6), (1, 2, 50, 19, 5)]
