"""Grounding networks (one per method family) on shared image and text encoders."""
from dapo_fast.models.heatmap_grounder import HeatmapGrounder, ModelConfig, build_model

__all__ = ["HeatmapGrounder", "ModelConfig", "build_model"]
