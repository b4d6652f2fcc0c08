"""The two featurizers of text tasks: words (a vocabulary from the training split) and a
pretrained backbone's word pieces (its own tokenizer, saved with the run)."""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from .. import data as D
from ..errors import ConfigError, DataError
from ..finetune.backbones import load_tokenizer, saved_tokenizer
from ..nn import read_vectors, vector_words
from ..run_files import RunFiles
from .base import Encoded, Featurized

log = logging.getLogger("attnkit")
INPUT_MAX_WORDS = 10_000  # words read from one raw input when data.max_len sets no limit


def input_limit(fz: Featurized) -> str:
    """The stated length limit of one raw input, in words or word pieces (a task may state its
    own in ``stats["input_limit"]``)."""
    if fz.stats.get("input_limit"):
        return str(fz.stats["input_limit"])
    if fz.pieces:
        return f"model.finetune.max_len = {fz.cfg.model.finetune.max_len} word pieces"
    if fz.cfg.data.max_len:
        return f"data.max_len = {fz.cfg.data.max_len} words"
    return f"{INPUT_MAX_WORDS:,} words (data.max_len is not set)"


def uses_pieces(cfg) -> bool:
    """Whether the run reads word pieces, of ``model.pretrained`` or of the masked-LM run it
    starts from (``model.init_from``); else words."""
    return cfg.model.pretrained is not None or cfg.model.init_from is not None


def backbone_tokenizer(cfg):
    """The tokenizer of ``model.pretrained``, or the one saved in the ``model.init_from`` run."""
    if cfg.model.init_from is not None:
        return saved_tokenizer(RunFiles(Path(cfg.model.init_from)).tokenizer)
    return load_tokenizer(cfg.model.pretrained)


def piece_sizes(cfg, tokenizer) -> dict:
    """Model sizes a word-piece featurizer adds: a model from blocks (``model.init_from``)
    needs the vocabulary size; a backbone has its own."""
    return {} if cfg.model.pretrained is not None else {"vocab_size": len(tokenizer)}


def word_vocab(cfg, sentences) -> D.Vocab:
    """The word vocabulary of the training split, with ``data.lowercase/min_freq/max_vocab``;
    with ``model.embedding.extend_vocab: true``, the words of ``model.embedding.vectors`` the
    split lacks follow (in the file's order), so an unseen word still gets its pretrained vector."""
    c, emb = cfg.data, cfg.model.embedding
    vocab = D.Vocab.build(sentences, lowercase=c.lowercase, min_freq=c.min_freq, max_size=c.max_vocab)
    extend = emb.get("extend_vocab", False)
    if not isinstance(extend, bool):
        raise ConfigError(f"model.embedding.extend_vocab: expected true or false, got {extend!r}")
    if not extend:
        return vocab
    if not emb.get("vectors"):
        raise ConfigError("model.embedding.extend_vocab: adds the words of model.embedding.vectors, which is not set")
    words = vector_words(emb["vectors"])
    grown = vocab.extended(words)
    if c.max_vocab is not None and len(grown) > c.max_vocab:
        log.warning(f"model.embedding.extend_vocab: data.max_vocab = {c.max_vocab:,} stops the vocabulary at "
                    f"{c.max_vocab:,} of {len(grown):,} words; raise it or leave it unset to add them all")
        grown = vocab.extended(words, max_size=c.max_vocab)
    log.info(f"model.embedding.extend_vocab: {len(vocab):,} words from the training split + "
             f"{len(grown) - len(vocab):,} from {emb['vectors']}")
    return grown


def word_vectors(fz: Featurized) -> dict:
    """``model.embedding.vectors: FILE`` read for the run's vocabulary, as the model's
    ``pretrained_vectors`` (when training starts or resumes; a trained run's weights hold them,
    so loading it needs no file)."""
    cfg = fz.cfg
    vectors = cfg.model.embedding.get("vectors")
    if not vectors or "vocab.json" not in fz.vocabs:
        return {}
    vocab = fz.vocabs["vocab.json"]
    dim = int(cfg.model.embedding.get("dim", 128))
    table, found = read_vectors(vectors, vocab.stoi, dim, lowercase=vocab.lowercase)
    log.info(f"model.embedding.vectors: {found:,} of {len(vocab):,} words found in {vectors}")
    return {"pretrained_vectors": table}


def split_words(fz: Featurized, text: str) -> list[str]:
    """A raw text as words, with the run's ``data.tokenizer``."""
    return D.get_tokenizer(fz.cfg.data.tokenizer)(text)


def word_ids_batch(fz: Featurized, words: list[str]) -> dict:
    """A one-example batch of word ids (cut to ``data.max_len``; an empty text is one unknown word)."""
    vocab = fz.vocabs["vocab.json"]
    ids = vocab.encode(words)[:fz.cfg.data.max_len or INPUT_MAX_WORDS] or [vocab.unk_id]
    return {"tokens": torch.tensor([ids]), "lengths": torch.tensor([len(ids)])}


def encode_words(fz: Featurized, text: str) -> Encoded:
    """A raw text as word ids; each word is one display unit."""
    return encode_word_list(fz, split_words(fz, text))


def encode_word_list(fz: Featurized, words: list[str]) -> Encoded:
    """Words already split, as word ids (cut to the limit; none: one unknown word)."""
    batch = word_ids_batch(fz, words)
    n = int(batch["lengths"][0])
    units = words[:n] if words else ["<unk>"]
    return Encoded(batch, units, list(range(n)), list(units), truncated=len(words) > n)


def encode_pieces(fz: Featurized, text: str) -> Encoded:
    """A raw text as the backbone's word pieces; the pieces of a word map back to it."""
    tokenizer = fz.vocabs["tokenizer"]
    enc = tokenizer(text, truncation=True, max_length=fz.cfg.model.finetune.max_len, return_offsets_mapping=True)
    ids, spans, word_ids = enc["input_ids"], enc["offset_mapping"], enc.word_ids()
    units, unit_of, where = [], [], {}
    for w, (a, b) in zip(word_ids, spans):
        if w is None:
            unit_of.append(None)
            continue
        if w not in where:
            where[w] = len(units)
            units.append([a, b])
        else:
            units[where[w]][1] = b
        unit_of.append(where[w])
    batch = {"tokens": torch.tensor([ids]), "lengths": torch.tensor([len(ids)])}
    end = units[-1][1] if units else 0
    return Encoded(batch, [text[a:b] for a, b in units], unit_of, tokenizer.convert_ids_to_tokens(ids),
                   truncated=bool(text[end:].strip()))


def check_texts(inputs) -> list[str]:
    """Inputs of a text task: a string or a list of strings."""
    if isinstance(inputs, str):
        return [inputs]
    inputs = list(inputs)
    bad = [type(x).__name__ for x in inputs if not isinstance(x, str)]
    if bad:
        raise DataError(f"inputs: this run takes text, got {bad[0]}")
    return inputs
