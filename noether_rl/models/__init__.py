"""Predictive models and Noether losses: the SVG video predictor, the state-space MLP / HNN predictors,
the Noether embedding g_phi and conservation laws as embeddings."""

from noether_rl.models.noether import EmbeddingConfig, NoetherEmbedding, embed_sequence, noether_loss
from noether_rl.models.statespace import (
    HNN,
    EnergyForm,
    FormulaEmbedding,
    MLPConfig,
    PredictorConfig,
    StateEmbedding,
    StateSpacePredictor,
    VectorFieldMLP,
)
from noether_rl.models.svg import SVG, SVGConfig

__all__ = ["SVG", "SVGConfig", "NoetherEmbedding", "EmbeddingConfig", "embed_sequence", "noether_loss", "HNN",
           "EnergyForm", "FormulaEmbedding", "MLPConfig", "PredictorConfig", "StateEmbedding", "StateSpacePredictor",
           "VectorFieldMLP"]
