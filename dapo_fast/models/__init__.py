"""Grounding networks (one per method family) on shared image and text encoders."""
from dapo_fast.models.heatmap_grounder import HeatmapGrounder, ModelConfig, build_encoders, build_model
from dapo_fast.models.refseg import ReferringSegmenter, build_refseg_model

__all__ = ["HeatmapGrounder", "ModelConfig", "build_encoders", "build_model", "ReferringSegmenter",
           "build_refseg_model"]
