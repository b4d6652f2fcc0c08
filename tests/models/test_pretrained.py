"""Pretrained backbones: the offline MiniLM shortcut, and one clear error per failure."""
import os
import shutil
import subprocess
import sys

import pytest

from attnkit.errors import ConfigError, DataError
from attnkit.finetune.backbones import (
    check_backbone_dir,
    load_backbone,
    resolve_backbone,
)

transformers = pytest.importorskip("transformers", reason="needs the pretrained extra: pip install 'attnkit[pretrained]'")


def minilm_dir():
    try:
        return resolve_backbone("minilm")
    except ConfigError as e:
        pytest.skip(str(e))


def test_minilm_loads_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model, tok = load_backbone("minilm")
    assert model.config.hidden_size == 384 and model.config.num_hidden_layers == 6
    assert tok("a fine film")["input_ids"][0] == tok.cls_token_id


def test_directory_missing_files_lists_what_is_there(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(DataError, match=r"missing model.safetensors or pytorch_model.bin; a tokenizer .* \(it has: "
                                         r"config.json"):
        check_backbone_dir(tmp_path)
    with pytest.raises(DataError, match="missing"):
        load_backbone(str(tmp_path))


def test_hub_id_without_network_says_how_to_use_a_local_copy():
    # a fresh process: huggingface_hub reads HF_HUB_OFFLINE when it is imported
    code = "from attnkit.finetune.backbones import load_backbone; load_backbone('some-org/some-bert')"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=120)
    assert proc.returncode != 0
    assert "ConfigError: model.pretrained: could not fetch 'some-org/some-bert'" in proc.stderr
    assert "set pretrained: DIR" in proc.stderr


def test_tokenizer_model_mismatch(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    src = minilm_dir()
    dst = tmp_path / "mixed"
    shutil.copytree(src, dst)
    (dst / "tokenizer.json").unlink()  # the tokenizer is rebuilt from vocab.txt, which gets 100 more words
    with (dst / "vocab.txt").open("a", encoding="utf-8") as f:
        f.write("".join(f"extra{i}\n" for i in range(100)))
    with pytest.raises(DataError, match="tokenizer and model do not belong together"):
        load_backbone(str(dst))
