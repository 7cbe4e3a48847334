"""TRIS's localisation stage: weakly supervised referring segmentation from image-text pairs with
L_cls alone (``dapo-fast train --method tris``).

The network is PCNet's (:mod:`dapo_fast.train.methods.pcnet`) with one stage and no cues: the
response map of the whole expression, R = Norm(ReLU(tau * cos(V, Q))), pooled (mean + max) into
the image-text score that L_cls classifies (own texts positive, other images' texts negative).
It trains exactly as ``--method pcnet`` with pcnet.stages=1, use_cues=false, w_ras=w_iad=0 (the
"TRIS" row of PCNet's ablation). Evaluation: PointM, mIoU, oIoU as PCNet.
"""
from __future__ import annotations

import dataclasses

from dapo_fast.train.config import ConfigError, evaluation_option
from dapo_fast.train.methods.pcnet import ReferringSegmentation, shared_defaults


@dataclasses.dataclass
class TRISOptions:
    w_cls: float = 1.0
    mask_threshold: float = evaluation_option(0.0)  # evaluation: mask = response > threshold * peak (0: TRIS, any positive response)


class TRIS(ReferringSegmentation):
    NAME = "tris"
    Options = TRISOptions
    # compiled: 1.7x faster steps (1 thread), the compile (~15 s) paid back within ~500 steps
    DEFAULTS = shared_defaults("runs/tris", compile_step=True)
    ABLATION = {"TRIS": []}

    @classmethod
    def stage_count(cls, options) -> int:
        return 1

    @classmethod
    def cue_use(cls, options) -> bool:
        return False

    @classmethod
    def proposal_use(cls, options) -> bool:
        return False

    @classmethod
    def validate_config(cls, cfg) -> None:
        super().validate_config(cfg)
        if cfg.options.w_cls <= 0:
            raise ConfigError(f"config key 'tris.w_cls' must be > 0 (L_cls is TRIS's only loss), got {cfg.options.w_cls}")

    def forward_loss(self, net, batch, sreg, gamma):
        out = net(batch["images"], batch["expr_tokens"])
        l_cls = self.classification_part(out, batch)
        # no product by a unit weight: inductor folds 1.0 * l_cls into l_cls, the logged l_cls.detach()
        # then becomes the same output buffer as the loss, and the loss comes back without its grad_fn
        w = self.options.w_cls
        return dict(loss=l_cls if w == 1 else w * l_cls, cls=l_cls.detach())


METHOD = TRIS
