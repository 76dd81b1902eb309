"""Learned training-only layers (adapters): owned and trained by the Distiller, never exported."""

from keras_distill.adapters.dpk import PatchEmbedding, PriorKnowledgeCodec, ResidualConvBlock

__all__ = ["PatchEmbedding", "PriorKnowledgeCodec", "ResidualConvBlock"]
