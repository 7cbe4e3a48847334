"""Cross-attention map capture for diffusers UNets, fused into the attention processor.

``AttentionMapProcessor`` computes a layer's output with ``F.scaled_dot_product_attention``
(or xformers on CUDA when it imports and runs) exactly like diffusers' default processor and,
for cross-attention layers whose query count matches a requested resolution, feeds q and k to
:func:`dapo_fast.ops.cross_attention_probs_mean`, which adds the head-mean probabilities into
the store's running [B, HW, T] buffer without materialising [B, heads, HW, T]. Self-attention
layers keep their own processors and are never stored.

``ExplicitAttentionStore`` / ``ExplicitAttentionProcessor`` are the Attend-and-Excite form
(explicit probabilities, every layer stored, averaged afterwards): the baseline the fused
capture is tested and benchmarked against.
"""
import functools
from typing import Dict, Iterable, List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from dapo_fast.ops import cross_attention_probs_mean

__all__ = ["AttentionMapStore", "AttentionMapProcessor", "register", "unregister",
           "ExplicitAttentionStore", "ExplicitAttentionProcessor", "register_explicit"]

Resolution = Union[int, Tuple[int, int]]


def _pixels(resolution: Resolution) -> int:
    if isinstance(resolution, int):
        return resolution * resolution
    h, w = resolution
    return int(h) * int(w)


class AttentionMapStore:
    """Running layer-mean of the head-mean cross-attention maps of one UNet call.

    Args:
        resolutions: latent resolutions to capture (an int for square maps or (h, w)); SD-1.x
            at 512 px has 16x16 cross-attention in five layers, the Attend-and-Excite default.
        classifier_free_guidance: the UNet batch is [unconditional; conditional] (the diffusers
            pipelines' order); keep only the conditional half.
        backend: backend of the fused op ("auto" picks the compiled kernel of the device).

    A new UNet call starts a new step automatically (a layer seen twice begins a new step);
    :meth:`reset` starts one explicitly.
    """

    def __init__(self, resolutions: Iterable[Resolution] = (16,), classifier_free_guidance: bool = False,
                 backend: str = "auto"):
        self.resolutions = tuple(resolutions)
        self._pixels = {_pixels(r): r for r in self.resolutions}
        self.classifier_free_guidance = bool(classifier_free_guidance)
        self.backend = backend
        self.reset()

    def reset(self) -> None:
        """Forget the current step's maps (fresh buffers, so graphs of earlier steps stay intact)."""
        self._sums: Dict[int, Tensor] = {}
        self._layers: Dict[int, int] = {}
        self._seen: set = set()
        self.steps_seen = getattr(self, "steps_seen", 0)

    def wants(self, pixels: int) -> bool:
        return pixels in self._pixels

    def begin_layer(self, name: str) -> None:
        """Called by every capturing processor; a layer seen again starts a new step."""
        if name in self._seen:
            self.reset()
            self.steps_seen += 1
        self._seen.add(name)

    def accumulate(self, q: Tensor, k: Tensor, scale: float, key_bias: Optional[Tensor]) -> None:
        """Add the head-mean probabilities of q [B, heads, HW, d], k [B, heads, T, d]."""
        if self.classifier_free_guidance:
            half = q.shape[0] // 2
            q, k = q[half:], k[half:]
            key_bias = key_bias[half:] if key_bias is not None else None
        pixels = q.shape[2]
        buffer = self._sums.get(pixels)
        if buffer is None:
            buffer = torch.zeros((q.shape[0], pixels, k.shape[2]), dtype=torch.float32, device=q.device)
            self._sums[pixels] = buffer
        cross_attention_probs_mean(q, k, scale, out=buffer, key_bias=key_bias, backend=self.backend)
        self._layers[pixels] = self._layers.get(pixels, 0) + 1

    def accumulate_probabilities(self, probs_mean: Tensor) -> None:
        """Add an already computed head-mean [B, HW, T] (the general-mask fallback)."""
        if self.classifier_free_guidance:
            probs_mean = probs_mean[probs_mean.shape[0] // 2:]
        pixels = probs_mean.shape[1]
        buffer = self._sums.get(pixels)
        if buffer is None:
            buffer = torch.zeros(probs_mean.shape, dtype=torch.float32, device=probs_mean.device)
            self._sums[pixels] = buffer
        buffer.add_(probs_mean.to(buffer.dtype))
        self._layers[pixels] = self._layers.get(pixels, 0) + 1

    def layer_count(self, resolution: Optional[Resolution] = None) -> int:
        return self._layers.get(self._key(resolution), 0)

    def _key(self, resolution: Optional[Resolution]) -> int:
        if resolution is None:
            if len(self.resolutions) != 1:
                raise ValueError(f"resolution must be given: the store captures {self.resolutions}")
            resolution = self.resolutions[0]
        pixels = _pixels(resolution)
        if pixels not in self._pixels:
            raise ValueError(f"resolution {resolution!r} is not captured (captured: {self.resolutions})")
        return pixels

    def maps(self, resolution: Optional[Resolution] = None) -> Tensor:
        """Tensor[B, HW, T]: mean over heads and layers of the last UNet call at ``resolution``."""
        pixels = self._key(resolution)
        if pixels not in self._sums:
            raise RuntimeError(f"no cross-attention map at {resolution or self.resolutions[0]} was captured yet: "
                               "run the UNet with the processors registered (dapo_fast.diffusion.register)")
        return self._sums[pixels] / self._layers[pixels]


def _key_bias(attention_mask: Optional[Tensor], batch: int, keys: int) -> Tuple[Optional[Tensor], bool]:
    """(key_bias [B, T] or None, general): a per-key additive mask becomes the op's key_bias;
    anything else (per-query or per-head masks) is "general" and takes the explicit path."""
    if attention_mask is None:
        return None, False
    mask = attention_mask
    if mask.dtype == torch.bool:
        mask = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device).masked_fill(~mask, float("-inf"))
    if mask.dim() == 2 and mask.shape[0] == batch:
        mask = mask[:, None, :]
    if mask.dim() == 3 and mask.shape[0] == batch and mask.shape[1] == 1:
        bias = mask[:, 0, :]
        if bias.shape[-1] < keys:  # diffusers pads short masks with zeros (keep)
            bias = F.pad(bias, (0, keys - bias.shape[-1]), value=0.0)
        return bias[:, :keys], False
    return None, True


@functools.lru_cache(maxsize=1)
def xformers_ops():
    """``xformers.ops``, or None when xformers is not installed or its compiled part does not
    load (an ImportError or, for a shared library built against another torch/CUDA, an OSError)."""
    try:
        import xformers.ops as xops
    except (ImportError, OSError):
        return None
    return xops


def xformers_attention(query: Tensor, key: Tensor, value: Tensor) -> Optional[Tensor]:
    """xformers' memory-efficient attention of [B, heads, N, d] tensors, or None when xformers is
    unavailable or has no kernel for these inputs (it raises NotImplementedError for a dtype, head
    size or device that none of its kernels supports). Any other error propagates."""
    xops = xformers_ops()
    if xops is None:
        return None
    try:
        out = xops.memory_efficient_attention(query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2))
    except NotImplementedError:
        return None
    return out.transpose(1, 2)


def _attention(query: Tensor, key: Tensor, value: Tensor, mask: Optional[Tensor]) -> Tensor:
    """xformers' memory-efficient attention on CUDA when it is usable, otherwise SDPA."""
    if query.is_cuda and mask is None:
        out = xformers_attention(query, key, value)
        if out is not None:
            return out
    return F.scaled_dot_product_attention(query, key, value, attn_mask=mask, dropout_p=0.0, is_causal=False)


class AttentionMapProcessor:
    """diffusers attention processor: the default SDPA computation plus fused map capture."""

    def __init__(self, store: AttentionMapStore, name: str = ""):
        self.store = store
        self.name = name

    def __call__(self, attn, hidden_states: Tensor, encoder_hidden_states: Optional[Tensor] = None,
                 attention_mask: Optional[Tensor] = None, temb: Optional[Tensor] = None, *args, **kwargs) -> Tensor:
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch_size, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch_size, channel, height * width).transpose(1, 2)
        is_cross = encoder_hidden_states is not None
        batch_size, sequence_length, _ = (hidden_states.shape if encoder_hidden_states is None
                                          else encoder_hidden_states.shape)
        raw_mask = attention_mask
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
            attention_mask = attention_mask.view(batch_size, attn.heads, -1, attention_mask.shape[-1])
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)

        query = attn.to_q(hidden_states)
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key = attn.to_k(encoder_hidden_states)
        value = attn.to_v(encoder_hidden_states)
        head_dim = key.shape[-1] // attn.heads
        query = query.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        key = key.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        value = value.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)

        if is_cross and self.store.wants(query.shape[2]):
            self.store.begin_layer(self.name)
            bias, general = _key_bias(raw_mask, batch_size, key.shape[2])
            if general:  # a per-query mask: the explicit head-mean of this layer
                scores = torch.matmul(query.float(), key.float().transpose(-1, -2)) * attn.scale
                scores = scores + attention_mask.float()
                self.store.accumulate_probabilities(scores.softmax(-1).mean(1))
            else:
                self.store.accumulate(query, key, attn.scale, bias)

        hidden_states = _attention(query, key, value, attention_mask)
        hidden_states = hidden_states.transpose(1, 2).reshape(batch_size, -1, attn.heads * head_dim)
        hidden_states = hidden_states.to(query.dtype)
        hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch_size, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


def _cross_attention_names(unet) -> List[str]:
    names = []
    for name in unet.attn_processors:
        module = unet.get_submodule(name[: -len(".processor")])
        if getattr(module, "is_cross_attention", False):
            names.append(name)
    return names


def register(unet, store: AttentionMapStore) -> List[str]:
    """Install :class:`AttentionMapProcessor` on every cross-attention layer of ``unet``
    (self-attention keeps its processor). Returns the names of the replaced processors;
    :func:`unregister` restores the previous ones."""
    if hasattr(unet, "_dapo_saved_processors"):
        raise RuntimeError("dapo_fast.diffusion processors are already registered on this UNet: unregister first")
    saved = dict(unet.attn_processors)
    cross = _cross_attention_names(unet)
    processors = dict(saved)
    for name in cross:
        processors[name] = AttentionMapProcessor(store, name)
    unet.set_attn_processor(processors)
    unet._dapo_saved_processors = saved
    return cross


def unregister(unet) -> None:
    """Put back the processors that were installed before :func:`register` (or register_explicit)."""
    saved = getattr(unet, "_dapo_saved_processors", None)
    if saved is None:
        raise RuntimeError("no dapo_fast.diffusion processors are registered on this UNet")
    unet.set_attn_processor(saved)
    del unet._dapo_saved_processors


# ---- the Attend-and-Excite form: explicit probabilities, everything stored --------------------

class ExplicitAttentionStore:
    """Stores every attention probability tensor of every layer ([B*heads, HW, T] cross and
    [B*heads, HW, HW] self), like Attend-and-Excite's AttentionStore, and averages afterwards."""

    def __init__(self, classifier_free_guidance: bool = False):
        self.classifier_free_guidance = classifier_free_guidance
        self.reset()

    def reset(self) -> None:
        self.step_store: Dict[str, List[Tensor]] = {}
        self._seen: set = set()

    def store(self, name: str, probs: Tensor, is_cross: bool, heads: int) -> None:
        if name in self._seen:
            self.reset()
        self._seen.add(name)
        key = f"{name.split('.')[0]}_{'cross' if is_cross else 'self'}"
        self.step_store.setdefault(key, []).append((probs, heads))

    def maps(self, resolution: Resolution = 16) -> Tensor:
        """[B, HW, T]: head- and layer-mean of the cross-attention maps with HW pixels
        (conditional half under classifier-free guidance)."""
        pixels = _pixels(resolution)
        out = []
        for key, items in self.step_store.items():
            if not key.endswith("_cross"):
                continue
            for probs, heads in items:
                if probs.shape[1] == pixels:
                    per_head = probs.reshape(-1, heads, pixels, probs.shape[-1])
                    if self.classifier_free_guidance:
                        per_head = per_head[per_head.shape[0] // 2:]
                    out.append(per_head)
        if not out:
            raise RuntimeError(f"no cross-attention map with {pixels} pixels was stored")
        stacked = torch.stack(out)                       # [layers, B, heads, HW, T]
        return stacked.sum(0).div(len(out)).mean(1)      # layer mean, then head mean


class ExplicitAttentionProcessor:
    """Attend-and-Excite's processor: attn.get_attention_scores (explicit probabilities, no SDPA),
    every layer's probabilities handed to the store."""

    def __init__(self, store: ExplicitAttentionStore, name: str):
        self.store = store
        self.name = name

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args,
                 **kwargs):
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch_size, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch_size, channel, height * width).transpose(1, 2)
        batch_size, sequence_length, _ = (hidden_states.shape if encoder_hidden_states is None
                                          else encoder_hidden_states.shape)
        attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query = attn.to_q(hidden_states)
        is_cross = encoder_hidden_states is not None
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key = attn.to_k(encoder_hidden_states)
        value = attn.to_v(encoder_hidden_states)
        query = attn.head_to_batch_dim(query)
        key = attn.head_to_batch_dim(key)
        value = attn.head_to_batch_dim(value)
        attention_probs = attn.get_attention_scores(query, key, attention_mask)
        self.store.store(self.name, attention_probs, is_cross, attn.heads)
        hidden_states = torch.bmm(attention_probs, value)
        hidden_states = attn.batch_to_head_dim(hidden_states)
        hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch_size, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


def register_explicit(unet, store: ExplicitAttentionStore) -> None:
    """Install :class:`ExplicitAttentionProcessor` on every attention layer (the A&E set-up)."""
    if hasattr(unet, "_dapo_saved_processors"):
        raise RuntimeError("dapo_fast.diffusion processors are already registered on this UNet: unregister first")
    saved = dict(unet.attn_processors)
    unet.set_attn_processor({name: ExplicitAttentionProcessor(store, name) for name in saved})
    unet._dapo_saved_processors = saved
