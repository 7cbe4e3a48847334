"""The sample dict every dataset returns, the phrase tokenizer, and the batch collators.

A sample is a plain dict:

    image           uint8 Tensor[3, H, W], or a path to an image file (decoded by the collator)
    image_id        str
    caption         str
    phrases         list[str], one per entity (the caption text inside ``spans``)
    spans           list[(start, end)] character spans of the entities in ``caption``
    num_objects     int, objects in the image (ScoreQ); -1 when unknown
    --- evaluation only (never collated for training) ---
    gt_boxes        list[Tensor[G_e, 4]] per entity, xyxy in image pixels
    gt_masks        Tensor[E, H, W] bool or None
    proposals       Tensor[P, 4] class-agnostic region proposals or None
    mask_proposals  Tensor[P, m, m] bool or None
    --- generated images (DAPO GAT) ---
    attn_maps       Tensor[E, h, w] aggregated diffusion attention per entity, or None
    mu              float, weight of the task loss (1 for real images, 0 for generated)

``collate_train`` builds a batch from the first six fields (+ attention maps) only, so no box or
mask can reach a training loss; ``collate_eval`` adds the ground truth.
"""
from __future__ import annotations

import re
from typing import Dict, Iterable, List, Optional, Sequence

import torch
import torch.nn.functional as F

EVAL_ONLY_KEYS = ("gt_boxes", "gt_masks", "proposals", "mask_proposals")
IMAGE_MEAN = (0.485, 0.456, 0.406)
IMAGE_STD = (0.229, 0.224, 0.225)


def make_sample(*, image, caption: str, phrases: Sequence[str], spans: Sequence, gt_boxes=None, gt_masks=None,
                num_objects: int = -1, image_id: str = "", proposals=None, mask_proposals=None,
                attn_maps=None, mu: float = 1.0) -> Dict:
    if len(phrases) != len(spans):
        raise ValueError(f"phrases ({len(phrases)}) and spans ({len(spans)}) must have the same length")
    return dict(image=image, image_id=image_id, caption=caption, phrases=list(phrases),
                spans=[tuple(int(v) for v in s) for s in spans], num_objects=int(num_objects),
                gt_boxes=gt_boxes, gt_masks=gt_masks, proposals=proposals, mask_proposals=mask_proposals,
                attn_maps=attn_maps, mu=float(mu))


_WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> List[str]:
    return _WORD.findall(text.lower())


class WordTokenizer:
    """Word-level tokenizer for the small text encoder: id 0 = padding, 1 = unknown."""

    PAD, UNK = 0, 1

    def __init__(self, vocab: Sequence[str]):
        self.vocab = ["<pad>", "<unk>"] + [w for w in vocab if w not in ("<pad>", "<unk>")]
        self.index = {w: i for i, w in enumerate(self.vocab)}

    @classmethod
    def build(cls, texts: Iterable[str], max_size: int = 20000, min_count: int = 1) -> "WordTokenizer":
        counts: Dict[str, int] = {}
        for t in texts:
            for w in words(t):
                counts[w] = counts.get(w, 0) + 1
        ranked = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
        return cls(ranked[: max_size - 2])

    def __len__(self) -> int:
        return len(self.vocab)

    def encode(self, text: str, length: int) -> torch.Tensor:
        ids = [self.index.get(w, self.UNK) for w in words(text)][:length]
        return torch.tensor(ids + [self.PAD] * (length - len(ids)), dtype=torch.long)

    def state_dict(self) -> Dict:
        return {"vocab": self.vocab}

    @classmethod
    def from_state_dict(cls, state: Dict) -> "WordTokenizer":
        return cls(state["vocab"][2:])


def load_image(image) -> torch.Tensor:
    """uint8 [3,H,W] from a tensor or an image path (RGB)."""
    if isinstance(image, torch.Tensor):
        return image
    import torchvision.io as tio

    return tio.decode_image(tio.read_file(str(image)), mode=tio.ImageReadMode.RGB)


def prepare_images(images: List[torch.Tensor], size: int) -> torch.Tensor:
    """uint8 images of any size -> normalised float [B,3,size,size]."""
    if all(img.shape == images[0].shape for img in images):  # one batched resize
        images = [torch.stack(images)]
    out = []
    for img in images:
        x = img.float().div_(255.0)
        x = x.unsqueeze(0) if x.dim() == 3 else x
        if x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        out.append(x)
    x = torch.cat(out)
    mean = torch.tensor(IMAGE_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGE_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def encode_phrases(samples: List[Dict], encode, max_entities: int):
    """Phrase token ids [B, E, T] (E = max_entities; extra entities are dropped) and validity [B, E]."""
    B = len(samples)
    first = encode("x")
    T = first.shape[-1]
    tokens = torch.zeros(B, max_entities, T, dtype=first.dtype)
    valid = torch.zeros(B, max_entities, dtype=torch.bool)
    for b, s in enumerate(samples):
        for e, phrase in enumerate(s["phrases"][:max_entities]):
            tokens[b, e] = encode(phrase)
            valid[b, e] = True
    return tokens, valid


def collate_train(samples: List[Dict], encode, image_size: int, max_entities: int,
                  attn_size: Optional[int] = None) -> Dict[str, torch.Tensor]:
    """A training batch: images, phrase tokens, entity validity, object counts, and (when any sample
    carries them) diffusion attention targets. Ground-truth boxes/masks are never read here."""
    images = prepare_images([load_image(s["image"]) for s in samples], image_size)
    tokens, valid = encode_phrases(samples, encode, max_entities)
    batch = dict(images=images, phrase_tokens=tokens, entity_valid=valid,
                 num_objects=torch.tensor([s["num_objects"] for s in samples], dtype=torch.long),
                 mu=torch.tensor([s.get("mu", 1.0) for s in samples], dtype=torch.float32))
    if attn_size is not None:
        B = len(samples)
        attn = torch.zeros(B, max_entities, attn_size, attn_size)
        has = torch.zeros(B, max_entities, dtype=torch.bool)
        for b, s in enumerate(samples):
            a = s.get("attn_maps")
            if a is None:
                continue
            a = a[:max_entities].float()
            if a.shape[-2:] != (attn_size, attn_size):
                a = F.interpolate(a[None], size=(attn_size, attn_size), mode="bilinear", align_corners=False)[0]
            attn[b, : a.shape[0]] = a
            has[b, : a.shape[0]] = True
        batch["attn_maps"] = attn
        batch["attn_valid"] = has & valid
    return batch


def collate_eval(samples: List[Dict], encode, image_size: int, max_entities: int) -> Dict:
    """``collate_train`` plus the ground truth: per-entity boxes (image pixels) and image sizes."""
    raw = [load_image(s["image"]) for s in samples]
    tokens, valid = encode_phrases(samples, encode, max_entities)
    return dict(images=prepare_images(raw, image_size), raw_images=raw, phrase_tokens=tokens, entity_valid=valid,
                num_objects=torch.tensor([s["num_objects"] for s in samples], dtype=torch.long),
                image_sizes=torch.tensor([list(r.shape[-2:]) for r in raw], dtype=torch.long),
                gt_boxes=[list(s["gt_boxes"] or [])[:max_entities] for s in samples],
                phrases=[s["phrases"][:max_entities] for s in samples])
