"""The papers' losses, written with the ops in dapo_fast.ops.

* ``grounding``: WWbL's task loss for a heatmap grounder and DAPO's training objective (eq. 5-8):
  ``dapo_loss`` mixes the task loss on real images with L_D on generated ones (eq. 6) under the
  self-paced weights.
"""
from dapo_fast.losses.grounding import (dapo_loss, diffusion_guided_loss_per_entity, self_paced_weights,
                                        wwbl_task_loss)

__all__ = ["dapo_loss", "wwbl_task_loss", "diffusion_guided_loss_per_entity", "self_paced_weights"]
