"""Per-entity attention maps from the aggregated cross-attention (Attend-and-Excite's
post-processing), and the token positions of each entity under a real CLIP tokenizer.

token_attention_maps: keep tokens 1..last-1 of the [B, HW, T] layer-mean maps, multiply by
``scale`` (100), softmax over those tokens, reduce each entity's tokens (mean or max; an entity
is a noun chunk and may span several tokens), optionally smooth with a 3x3 Gaussian (reflect
padding). All differentiable, so the attention-guided latent update can use it.
"""
import functools
import json
import math
import os
import tempfile
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["token_attention_maps", "entity_attention_maps", "gaussian_kernel", "entity_token_spans", "eot_index",
           "clip_tokenizer"]


def gaussian_kernel(kernel_size: int = 3, sigma: float = 0.5, exact_sigma: bool = False,
                    dtype: torch.dtype = torch.float32, device=None) -> Tensor:
    """[kernel_size, kernel_size] normalised Gaussian. By default Attend-and-Excite's kernel,
    exp(-((x - mean) / (2 sigma))^2) (an effective sigma of sqrt(2) sigma); ``exact_sigma``
    gives the textbook exp(-(x - mean)^2 / (2 sigma^2))."""
    x = torch.arange(kernel_size, dtype=torch.float64) - (kernel_size - 1) / 2
    if exact_sigma:
        one_d = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    else:
        one_d = torch.exp(-((x / (2 * sigma)) ** 2))
    kernel = one_d[:, None] * one_d[None, :]
    return (kernel / kernel.sum()).to(dtype=dtype, device=device)


def token_attention_maps(agg: Tensor, token_spans: Sequence[Sequence[int]], last_index: int = -1,
                         scale: float = 100.0, smooth: bool = True, sigma: float = 0.5, kernel_size: int = 3,
                         span_reduce: str = "mean", exact_sigma: bool = False,
                         resolution: Optional[Sequence[int]] = None) -> Tensor:
    """Per-entity maps [B, E, res, res] from aggregated maps ``agg`` [B, HW, T].

    Args:
        agg: head- and layer-mean cross-attention maps (AttentionMapStore.maps()).
        token_spans: E spans, each a list of prompt token positions (position 0 is the start
            token; see :func:`entity_token_spans`).
        last_index: tokens 1..last_index-1 take part in the softmax; the EOT position, or a
            negative index counted from T (-1: all but the last, Attend-and-Excite's default).
        scale: multiplies the kept tokens before the softmax (100).
        smooth, sigma, kernel_size, exact_sigma: Gaussian smoothing with reflect padding.
        span_reduce: "mean" or "max" over an entity's tokens.
        resolution: (h, w) of the map; default the square root of HW.
    """
    if agg.dim() != 3:
        raise ValueError(f"agg must have shape [B, HW, T], got {tuple(agg.shape)}")
    if span_reduce not in ("mean", "max"):
        raise ValueError(f"span_reduce must be 'mean' or 'max', got {span_reduce!r}")
    batch, pixels, tokens = agg.shape
    if resolution is None:
        side = math.isqrt(pixels)
        if side * side != pixels:
            raise ValueError(f"agg has {pixels} pixels, not a square: pass resolution=(h, w)")
        resolution = (side, side)
    height, width = int(resolution[0]), int(resolution[1])
    if height * width != pixels:
        raise ValueError(f"resolution {tuple(resolution)} does not hold agg's {pixels} pixels")
    last = last_index if last_index >= 0 else tokens + last_index
    if not 1 < last <= tokens:
        raise ValueError(f"last_index must leave at least one token in 1..last-1 (T = {tokens}), got {last_index}")
    spans = [list(map(int, span)) for span in token_spans]
    for e, span in enumerate(spans):
        if len(span) == 0:
            raise ValueError(f"token_spans[{e}] is empty")
        bad = [t for t in span if not 1 <= t < last]
        if bad:
            raise ValueError(f"token_spans[{e}] has positions {bad} outside the kept tokens 1..{last - 1}")
    if not spans:
        return agg.new_zeros((batch, 0, height, width))

    text = torch.softmax(agg[:, :, 1:last] * scale, dim=-1)                  # [B, HW, last-1]
    width_max = max(len(s) for s in spans)
    index = torch.tensor([s + [s[0]] * (width_max - len(s)) for s in spans], device=agg.device) - 1
    picked = text[:, :, index]                                                # [B, HW, E, width_max]
    if span_reduce == "max":
        maps = picked.amax(-1)
    else:
        count = torch.tensor([len(s) for s in spans], device=agg.device, dtype=agg.dtype)
        valid = (torch.arange(width_max, device=agg.device)[None, :] < count[:, None]).to(agg.dtype)
        maps = (picked * valid).sum(-1) / count
    maps = maps.permute(0, 2, 1).reshape(batch, len(spans), height, width)
    if not smooth:
        return maps
    pad = kernel_size // 2
    kernel = gaussian_kernel(kernel_size, sigma, exact_sigma, dtype=maps.dtype, device=maps.device)
    flat = F.pad(maps.reshape(-1, 1, height, width), (pad, pad, pad, pad), mode="reflect")
    return F.conv2d(flat, kernel[None, None]).reshape(batch, len(spans), height, width)


def entity_attention_maps(agg: Tensor, sample_spans: Sequence[Sequence[Sequence[int]]],
                          last_indices: Union[int, Sequence[int]] = -1, **kwargs) -> Tuple[Tensor, Tensor]:
    """Per-sample :func:`token_attention_maps` for a batch of different prompts.

    Args:
        agg: [B, HW, T] aggregated maps.
        sample_spans: B lists of entity spans (sample b has E_b entities).
        last_indices: the EOT position of each prompt (B ints), or one int for all.
        kwargs: the other arguments of :func:`token_attention_maps`.

    Returns:
        (maps [B, E, h, w] with E = max E_b, zero-padded; valid bool [B, E]).
    """
    batch = agg.shape[0]
    if len(sample_spans) != batch:
        raise ValueError(f"sample_spans must hold one list of spans per sample ({batch}), got {len(sample_spans)}")
    lasts = [int(last_indices)] * batch if isinstance(last_indices, int) else [int(v) for v in last_indices]
    if len(lasts) != batch:
        raise ValueError(f"last_indices must hold one index per sample ({batch}), got {len(lasts)}")
    entities = max((len(spans) for spans in sample_spans), default=0)
    if batch == 0:
        return token_attention_maps(agg, [], **kwargs), torch.zeros((0, 0), dtype=torch.bool, device=agg.device)
    per_sample = [token_attention_maps(agg[b:b + 1], sample_spans[b], lasts[b], **kwargs)[0] for b in range(batch)]
    maps = torch.stack([F.pad(m, (0, 0, 0, 0, 0, entities - m.shape[0])) for m in per_sample])
    valid = torch.tensor([[e < len(spans) for e in range(entities)] for spans in sample_spans], dtype=torch.bool,
                         device=agg.device).reshape(batch, entities)
    return maps, valid


# ---- tokenizer side ----------------------------------------------------------------------------

def _token_ids(tokenizer, text: str) -> List[int]:
    """Ids of ``text`` without start/end tokens, for a transformers CLIPTokenizer or an open_clip
    SimpleTokenizer."""
    if hasattr(tokenizer, "convert_tokens_to_ids"):  # transformers
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])
    if hasattr(tokenizer, "encode") and hasattr(tokenizer, "encoder"):  # open_clip SimpleTokenizer
        return list(tokenizer.encode(text))
    raise TypeError(f"tokenizer must be a transformers CLIP tokenizer or an open_clip SimpleTokenizer, "
                    f"got {type(tokenizer).__name__}")


def entity_token_spans(tokenizer, prompt: str, entities: Sequence[str]) -> List[List[int]]:
    """Token positions of each entity in ``prompt`` (position 0 is the start token).

    Each entity (a noun chunk such as "a young boy") is tokenised on its own and matched as a
    contiguous run of the prompt's tokens; repeated entities take successive occurrences.
    Raises ValueError naming the entity when it does not occur.
    """
    ids = _token_ids(tokenizer, prompt)
    taken = [False] * len(ids)
    spans = []
    for entity in entities:
        want = _token_ids(tokenizer, entity)
        if not want:
            raise ValueError(f"entity {entity!r} has no tokens")
        found = None
        for start in range(len(ids) - len(want) + 1):
            if ids[start:start + len(want)] == want and not any(taken[start:start + len(want)]):
                found = start
                break
        if found is None:
            raise ValueError(f"entity {entity!r} does not occur in the prompt {prompt!r} as whole tokens")
        for t in range(found, found + len(want)):
            taken[t] = True
        spans.append([t + 1 for t in range(found, found + len(want))])
    return spans


def eot_index(tokenizer, prompt: str, max_length: int = 77) -> int:
    """Position of the end-of-text token of ``prompt`` (the ``last_index`` of Attend-and-Excite)."""
    return min(len(_token_ids(tokenizer, prompt)) + 1, max_length - 1)


@functools.lru_cache(maxsize=1)
def clip_tokenizer(cache_dir: Optional[str] = None):
    """transformers' CLIPTokenizer with CLIP's BPE vocabulary, built offline from the
    vocabulary open_clip ships (bpe_simple_vocab_16e6.txt.gz): the tokenizer of SD-1.x."""
    from open_clip.tokenizer import SimpleTokenizer
    from transformers import CLIPTokenizer

    simple = SimpleTokenizer()
    directory = cache_dir or os.path.join(tempfile.gettempdir(), f"dapo_fast_clip_tokenizer_v2_{os.getuid()}")
    os.makedirs(directory, exist_ok=True)
    vocab_path = os.path.join(directory, "vocab.json")
    merges_path = os.path.join(directory, "merges.txt")
    if not (os.path.exists(vocab_path) and os.path.exists(merges_path)):
        merges = sorted(simple.bpe_ranks.items(), key=lambda item: item[1])
        tmp_vocab, tmp_merges = vocab_path + f".{os.getpid()}", merges_path + f".{os.getpid()}"
        # open_clip names the special tokens <start_of_text>/<end_of_text>; CLIP and SD call the
        # same ids (49406, 49407) <|startoftext|>/<|endoftext|>
        renamed = {"<start_of_text>": "<|startoftext|>", "<end_of_text>": "<|endoftext|>"}
        vocab = {renamed.get(token, token): index for token, index in simple.encoder.items()}
        with open(tmp_vocab, "w", encoding="utf-8") as f:
            json.dump(vocab, f)
        with open(tmp_merges, "w", encoding="utf-8") as f:
            f.write("#version: 0.2\n" + "\n".join(" ".join(pair) for pair, _ in merges) + "\n")
        os.replace(tmp_vocab, vocab_path)  # atomic: a concurrent reader sees whole files
        os.replace(tmp_merges, merges_path)
    return CLIPTokenizer(vocab_path, merges_path, model_max_length=77, bos_token="<|startoftext|>",
                         eos_token="<|endoftext|>", unk_token="<|endoftext|>", pad_token="<|endoftext|>")
