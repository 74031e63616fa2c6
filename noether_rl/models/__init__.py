"""Predictive models and Noether losses: the SVG video predictor and the Noether embedding g_phi."""

from noether_rl.models.noether import EmbeddingConfig, NoetherEmbedding, noether_loss
from noether_rl.models.svg import SVG, Rollout, SVGConfig

__all__ = ["SVG", "SVGConfig", "Rollout", "NoetherEmbedding", "EmbeddingConfig", "noether_loss"]
