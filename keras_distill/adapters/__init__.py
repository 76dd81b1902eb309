"""Learned training-only layers (adapters): owned and trained by the Distiller, never exported."""

from keras_distill.adapters.crd import EmbeddingHead
from keras_distill.adapters.dpk import PatchEmbedding, PriorKnowledgeCodec, ResidualConvBlock

__all__ = ["EmbeddingHead", "PatchEmbedding", "PriorKnowledgeCodec", "ResidualConvBlock"]
