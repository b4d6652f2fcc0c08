"""A tiny random BERT with a word-piece tokenizer, saved as a Hugging Face model folder:
fine-tuning tests run in seconds and need no download (only the pretrained extra)."""
import pytest

transformers = pytest.importorskip("transformers", reason="needs the pretrained extra: pip install 'attnkit[pretrained]'")
pytest.importorskip("peft", reason="needs the pretrained extra: pip install 'attnkit[pretrained]'")

WORDS = ["good", "bad", "film", "movie", "great", "awful", "the", "a", "plot", "acting", "paris", "john", "smith",
         "london", "visited", "in", "and", "is", "was", "boring", "fun", ",", "."]
PIECES = ["un", "##believ", "##able", "##s", "##ing", "##ed", "new", "york"]


def tiny_config(**kw):
    base = {"vocab_size": 64, "hidden_size": 32, "num_hidden_layers": 3, "num_attention_heads": 4,
            "intermediate_size": 64, "max_position_embeddings": 64, "hidden_dropout_prob": 0.0,
            "attention_probs_dropout_prob": 0.0}
    return transformers.BertConfig(**{**base, **kw})


def word_piece_tokenizer(vocab):
    """A BERT-style (uncased word-piece) fast tokenizer over ``vocab``, built with tokenizers."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece

    t = Tokenizer(WordPiece({w: i for i, w in enumerate(vocab)}, unk_token="[UNK]"))
    t.normalizer = normalizers.BertNormalizer(lowercase=True)
    t.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    t.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
                                                     special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    return transformers.PreTrainedTokenizerFast(tokenizer_object=t, unk_token="[UNK]", pad_token="[PAD]",
                                                cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory):
    """Folder of a random 3-layer, 32-wide BERT and its tokenizer."""
    import torch

    folder = tmp_path_factory.mktemp("tiny-bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS + PIECES
    tok = word_piece_tokenizer(vocab)
    tok.save_pretrained(str(folder))
    torch.manual_seed(0)
    model = transformers.BertModel(tiny_config(vocab_size=len(vocab)))
    model.save_pretrained(str(folder))
    return folder
