"""The fine-tuning fast path under bf16 autocast, against the same model in float64, within
twice the error of the model run wholly in bf16 (a plain bf16 computation's own error)."""
import copy

import pytest
import torch

from attnkit.config import from_dict
from attnkit.models import ModelConfig
from attnkit.tasks import build_model


@pytest.mark.parametrize("first_only", [False, True])
def test_fast_path_in_bf16_within_plain_bf16s_own_error(tiny_bert, first_only):
    torch.manual_seed(0)
    pooler = {"type": "cls"} if first_only else {"type": "attention"}
    cfg = from_dict(ModelConfig, {"pretrained": str(tiny_bert), "pooler": pooler})
    model = build_model("text_classification", cfg, num_classes=3).eval()
    assert model.encoder.fast
    g = torch.Generator().manual_seed(1)
    errs = {"auto": 0.0, "plain": 0.0}
    for b, t in ((4, 9), (2, 23)):
        tokens = torch.randint(5, 30, (b, t), generator=g)
        lengths = torch.randint(2, t + 1, (b,), generator=g)
        lengths[0] = t
        batch = {"tokens": tokens, "lengths": lengths}
        with torch.no_grad():
            exact = copy.deepcopy(model).double()(batch)["logits"]
            with torch.autocast("cpu", dtype=torch.bfloat16):
                auto = model(batch)["logits"].double()
            plain = copy.deepcopy(model).to(torch.bfloat16)(batch)["logits"].double()
        errs["auto"] = max(errs["auto"], (auto - exact).abs().max().item())
        errs["plain"] = max(errs["plain"], (plain - exact).abs().max().item())
    assert errs["plain"] > 0
    assert errs["auto"] <= 2 * errs["plain"] + 1e-3, errs
