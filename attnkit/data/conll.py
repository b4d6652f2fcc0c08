"""CoNLL column files (one token per line, blank line between sentences) and tag schemes.

A tag scheme turns the tags of one sentence into BIO (IOB2) tags or says why it cannot;
``bio`` checks, ``iob1`` converts, ``none`` passes any tags (POS, chunk) through.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError
from ..registry import Registry
from ._common import Problems, existing_file, numbered_lines

TAG_SCHEMES: Registry[Callable[[list[str]], list[str]]] = Registry("tag scheme")


class TagError(ValueError):
    """A tag sequence is invalid at ``index`` (the reader turns it into a DataError)."""

    def __init__(self, index: int, problem: str):
        super().__init__(problem)
        self.index = index
        self.problem = problem


def _split_tag(tag: str, index: int) -> tuple[str, str]:
    """``("B", "PER")`` for ``B-PER``, ``("O", "")`` for ``O``."""
    if tag == "O":
        return "O", ""
    prefix, _, kind = tag.partition("-")
    if prefix not in ("B", "I") or not kind:
        raise TagError(index, f"tag {tag!r} is not O, B-TYPE or I-TYPE")
    return prefix, kind


@TAG_SCHEMES.register("bio")
def check_bio(tags: list[str]) -> list[str]:
    """BIO/IOB2: every entity starts with ``B-``; ``I-X`` only continues an ``X`` entity."""
    previous = ""
    for i, tag in enumerate(tags):
        prefix, kind = _split_tag(tag, i)
        if prefix == "I" and previous != kind:
            after = f"follows {tags[i - 1]!r}" if i else "starts the sentence"
            raise TagError(i, f"tag {tag!r} {after}; BIO entities start with B- "
                              "(pass scheme='iob1' for IOB1 files)")
        previous = kind
    return tags


@TAG_SCHEMES.register("iob1")
def iob1_to_bio(tags: list[str]) -> list[str]:
    """IOB1 -> BIO: an ``I-X`` that starts an entity (after ``O``, the sentence start or
    another type) becomes ``B-X``; IOB1 used ``B-X`` only between two adjacent X entities."""
    out, previous = [], ""
    for i, tag in enumerate(tags):
        prefix, kind = _split_tag(tag, i)
        out.append(f"B-{kind}" if prefix == "I" and previous != kind else tag)
        previous = kind
    return out


@TAG_SCHEMES.register("none")
def any_tags(tags: list[str]) -> list[str]:
    """No scheme: tags are opaque labels (POS tags, chunk tags)."""
    return tags


@dataclass
class ConllData:
    """Sentences (token lists) and their tags; ``lines[i]`` is sentence i's first line."""

    path: str
    sentences: list[list[str]]
    tags: list[list[str]]
    lines: list[int]
    skipped: int = 0
    skip_reasons: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.sentences)


def read_conll(
    path: str | os.PathLike,
    *,
    token_column: int = 0,
    tag_column: int = -1,
    scheme: str = "bio",
    on_error: str = "raise",
    encoding: str = "utf-8",
) -> ConllData:
    """Read a CoNLL file: whitespace-separated columns, a blank line (or the end of the file)
    ends a sentence, ``-DOCSTART-`` lines are skipped. Tags pass through ``scheme``
    (``bio`` checks, ``iob1`` converts to BIO, ``none`` keeps any tags). In skip mode a bad
    line drops its whole sentence, and ``skipped`` counts dropped sentences."""
    problems = Problems(Path(path), on_error)
    convert = TAG_SCHEMES.get(scheme, where="read_conll scheme")
    p = existing_file(path)
    data = ConllData(str(p), [], [], [])
    tokens: list[str] = []
    tags: list[str] = []
    start = 0
    bad = False  # the current sentence had a bad line and is dropped at its end
    width: tuple[int, int] | None = None  # (columns, line) of the first token line

    def end_sentence() -> None:
        nonlocal tokens, tags, bad
        if tokens and not bad:
            try:
                fixed = convert(tags)
            except TagError as e:
                problems.bad(start + e.index, e.problem)
            else:
                data.sentences.append(tokens)
                data.tags.append(fixed)
                data.lines.append(start)
        tokens, tags, bad = [], [], False

    seen_any = False
    for line, text in numbered_lines(p, encoding):
        columns = text.split()
        seen_any = seen_any or bool(columns)
        if not columns or columns[0] == "-DOCSTART-":
            end_sentence()
            continue
        if not tokens and not bad:
            start = line
        if bad:
            continue
        width = width or (len(columns), line)
        problem = ""
        if len(columns) != width[0]:
            problem = f"{len(columns)} columns, but line {width[1]} has {width[0]}"
        for name, index in (("token", token_column), ("tag", tag_column)):
            if not -len(columns) <= index < len(columns):
                problem = (f"no {name} column {index} (data.{name}_column, counted from 0; -1 is the last): the "
                           f"line has {len(columns)} columns")
        if problem:
            problems.bad(line, problem)
            bad = True
            continue
        tokens.append(columns[token_column])
        tags.append(columns[tag_column])
    end_sentence()
    if not seen_any:
        raise DataError(f"{p}: file is empty")
    if not data.sentences:
        raise problems.nothing_left("sentences")
    data.skipped, data.skip_reasons = problems.skipped, problems.reasons
    return data
