"""The papers' losses, written with the ops in dapo_fast.ops."""
from dapo_fast.losses.dapo import attention_guidance_loss, dapo_grounding_loss, diffusion_guided_loss

__all__ = ["attention_guidance_loss", "diffusion_guided_loss", "dapo_grounding_loss"]
