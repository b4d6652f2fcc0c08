"""A transfer set for distillation (Tang et al. 2019, "Distilling Task-Specific Knowledge from
BERT into Simple Neural Networks", section 3.3): new texts made from the training texts, for a
teacher to label, so the student sees the teacher's judgement on more than the examples the
teacher was trained on (where it is nearly certain and its soft labels add little).

Each new text comes from one training text, word by word: a word becomes ``mask_token``
with probability ``p_mask``, or another word drawn from all training words (by frequency;
the paper swaps within the part of speech, which needs a tagger attnkit does not ship) with
probability ``p_swap``, else stays; then with probability ``p_ngram`` only an n-gram of the
result is kept (n uniform in 1..``max_n``). Words are split on whitespace; each side tokenizes the new text
its own way."""
from __future__ import annotations

import random


def transfer_texts(texts: list[str], copies: int, seed: int = 0, mask_token: str = "[MASK]",
                   p_mask: float = 0.1, p_swap: float = 0.1, p_ngram: float = 0.25, max_n: int = 5) -> list[str]:
    """Up to ``copies`` new texts per text of ``texts`` (drafts equal to any of ``texts`` or to
    an earlier draft are dropped), in order of their sources; the same for the same ``seed``."""
    rng = random.Random(seed)
    pool = [w for t in texts for w in t.split()]
    seen = set(texts)
    out = []
    for text in texts:
        words = text.split()
        if not words:
            continue
        for _ in range(copies):
            draft = []
            for w in words:
                r = rng.random()
                if r < p_mask:
                    w = mask_token
                elif r < p_mask + p_swap:
                    w = rng.choice(pool)
                draft.append(w)
            if rng.random() < p_ngram:
                n = rng.randint(1, min(max_n, len(draft)))
                start = rng.randrange(len(draft) - n + 1)
                draft = draft[start:start + n]
            new = " ".join(draft)
            if new not in seen:
                seen.add(new)
                out.append(new)
    return out
