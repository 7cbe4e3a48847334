"""Stable Diffusion side of DAPO: fused cross-attention map capture for diffusers UNets,
per-entity token maps, and the attention-guided latent update (eq. 4)."""
from dapo_fast.diffusion.attention_maps import (AttentionMapProcessor, AttentionMapStore, ExplicitAttentionProcessor,
                                                ExplicitAttentionStore, register, register_explicit, unregister)
from dapo_fast.diffusion.guidance import AttendExciteSchedule, GuidedStep, attention_guided_step, decode_latents
from dapo_fast.diffusion.token_maps import (clip_tokenizer, entity_token_spans, eot_index, gaussian_kernel,
                                            token_attention_maps)

__all__ = ["AttentionMapProcessor", "AttentionMapStore", "ExplicitAttentionProcessor", "ExplicitAttentionStore",
           "register", "register_explicit", "unregister", "AttendExciteSchedule", "GuidedStep",
           "attention_guided_step", "decode_latents", "clip_tokenizer", "entity_token_spans", "eot_index",
           "gaussian_kernel", "token_attention_maps"]
