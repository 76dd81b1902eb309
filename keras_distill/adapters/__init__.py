"""Learned training-only layers (adapters): owned and trained by the Distiller, never exported."""

from keras_distill.adapters.crd import EmbeddingHead
from keras_distill.adapters.regressors import HintRegressor, VariationalRegressor
from keras_distill.adapters.dpk import PatchEmbedding, PriorKnowledgeCodec, ResidualConvBlock

__all__ = ["EmbeddingHead", "HintRegressor", "VariationalRegressor", "PatchEmbedding",
           "PriorKnowledgeCodec", "ResidualConvBlock"]
