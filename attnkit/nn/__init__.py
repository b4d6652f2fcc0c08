"""Model blocks: embeddings, encoders (TextCNN, LSTM/GRU, Transformer on attnkit attention,
image CNN), poolers, heads and a CRF. Plain ``nn.Module``s behind registries."""
from . import cnn, decoders, poolers, rnn, transformer  # noqa: F401  (register the blocks)
from .cnn import CharCNN, ImageCNN, TextCNN
from .crf import CRF
from .embedding import TokenEmbedding, read_vectors, vector_words, write_vectors
from .heads import ClassificationHead, TokenClassificationHead
from .masking import padding_mask
from .poolers import AttentionPooler, FirstPooler, LastPooler, MaxPooler, MeanPooler
from .decoders import GRUDecoder, LSTMDecoder, RNNDecoder, TransformerDecoder
from .registry import DECODERS, EMBEDDINGS, ENCODERS, HEADS, POOLERS
from .rnn import GRUEncoder, LSTMEncoder
from .transformer import TransformerEncoder, sinusoidal_positions

__all__ = [
    "CRF", "DECODERS", "EMBEDDINGS", "ENCODERS", "HEADS", "POOLERS", "GRUDecoder", "LSTMDecoder", "RNNDecoder",
    "TransformerDecoder", "AttentionPooler", "CharCNN", "ClassificationHead",
    "FirstPooler", "GRUEncoder", "ImageCNN", "LSTMEncoder", "LastPooler", "MaxPooler", "MeanPooler", "TextCNN",
    "TokenClassificationHead", "TokenEmbedding", "TransformerEncoder", "padding_mask", "read_vectors", "vector_words", "write_vectors",
    "sinusoidal_positions",
]
