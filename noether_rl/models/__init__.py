"""Predictive models and Noether losses: the SVG video predictor and the Noether embedding g_phi."""

from noether_rl.models.noether import EmbeddingConfig, NoetherEmbedding, embed_sequence, noether_loss
from noether_rl.models.svg import SVG, SVGConfig

__all__ = ["SVG", "SVGConfig", "NoetherEmbedding", "EmbeddingConfig", "embed_sequence", "noether_loss"]
