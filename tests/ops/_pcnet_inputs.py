"""Random PCNet inputs: response maps in [0, 1], blob-like mask proposals, validity flags."""
import torch


def make(b=3, s=2, p=5, h=7, w=9, dtype=torch.float32, mask_kind="bool", invalid=0.3):
    response = torch.rand(b, s, h, w, dtype=torch.float64)
    # quantised so exact ties in the products appear now and then
    response = (response * 16).floor() / 16
    masks = torch.rand(b, p, h, w) > 0.6
    if mask_kind == "uint8":
        masks = masks.to(torch.uint8)
    elif mask_kind == "float":
        masks = masks.to(dtype) * torch.rand(b, p, h, w, dtype=dtype)
    valid = torch.rand(b, p) > invalid
    return response.to(dtype), masks, valid
