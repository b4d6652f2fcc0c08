"""Data for attnkit: readers (tables, CoNLL, IDX, parallel text), tokenizers and
vocabularies, length-bucketed batching and in-memory data sets, embedded toy data sets.

Every reader stops on bad data with a :class:`~attnkit.errors.DataError` naming the file,
the line and the problem (or skips bad lines with ``on_error="skip"``).
"""
from .batching import (
    TAG_PAD,
    ImageData,
    TextClassificationData,
    TokenTaggingData,
    length_bucketed_batches,
    pad_batch,
    token_budget_batches,
)
from .subwords import SubwordModel
from .translation_data import TranslationData
from .builtin import BUILTIN_DATASETS, builtin_dataset, list_builtin_datasets
from .conll import TAG_SCHEMES, iob1_to_bio
from .readers import (
    TABLE_FORMATS,
    ConllData,
    ParallelData,
    TableData,
    infer_format,
    read_conll,
    read_idx,
    read_mnist,
    read_parallel,
    read_table,
)
from .vocab import (
    PAD,
    TOKENIZERS,
    UNK,
    CharVocab,
    LabelVocab,
    Vocab,
    get_tokenizer,
    tokenize_whitespace,
    tokenize_words,
)

__all__ = [
    "BUILTIN_DATASETS", "PAD", "TABLE_FORMATS", "TAG_PAD", "TAG_SCHEMES", "TOKENIZERS", "UNK",
    "CharVocab", "ConllData", "ImageData", "LabelVocab", "ParallelData", "TableData",
    "TextClassificationData", "TokenTaggingData", "Vocab", "builtin_dataset",
    "SubwordModel", "TranslationData", "get_tokenizer", "infer_format", "iob1_to_bio",
    "length_bucketed_batches", "token_budget_batches",
    "list_builtin_datasets", "pad_batch", "read_conll", "read_idx", "read_mnist",
    "read_parallel", "read_table", "tokenize_whitespace", "tokenize_words",
]
