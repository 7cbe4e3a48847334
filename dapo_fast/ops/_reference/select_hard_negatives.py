"""QueryMatch's greedy hard-negative query selection, in plain PyTorch (the loop form).

For text b and every other image a (in increasing order, a != b):

* difficulty ``d[a, n] = minmax_n(<queries[a, n], text[b]>)`` (min-max over the N queries of image a;
  1 where all N are equal);
* uniqueness ``u[a, n]`` starts at 1; each of ``num`` steps picks ``argmax_n d * u`` per image a
  (first index on ties), then
  - "pairwise" (QueryMatch's public code): ``u = min(u, min_p (1 - cos(query, p)) / 2)`` over the
    queries p picked in that step for text b (in every other image);
  - "paper" (eq. 2): ``u = minmax_n(-max_p cos(query, p))`` over every query picked so far.
  A query's distance to itself is exactly 0 (cosine exactly 1); distances are clamped to [0, 1].

Returns int64 [B, B-1, num]: the picked query index n of each step.
"""
import torch
import torch.nn.functional as F

NORM_EPS = 1e-12


def minmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    lo = x.amin(dim, keepdim=True)
    hi = x.amax(dim, keepdim=True)
    span = hi - lo
    return torch.where(span > 0, (x - lo) / torch.where(span > 0, span, torch.ones_like(span)), torch.ones_like(x))


def other_images(batch: int, device) -> torch.Tensor:
    """[B, B-1]: the images other than b, in increasing order."""
    idx = torch.arange(batch, device=device)
    return idx.repeat(batch, 1)[~torch.eye(batch, dtype=torch.bool, device=device)].reshape(batch, batch - 1)


@torch.no_grad()
def select_hard_negatives(queries: torch.Tensor, text: torch.Tensor, num: int = 4,
                          uniqueness: str = "pairwise") -> torch.Tensor:
    batch, nq, _ = queries.shape
    ct = torch.float64 if queries.dtype == torch.float64 else torch.float32
    q = queries.to(ct)
    t = text.to(ct)
    out = torch.empty(batch, max(batch - 1, 0), num, dtype=torch.int64, device=queries.device)
    if batch <= 1 or num == 0:
        return out
    qn = F.normalize(q, dim=-1, eps=NORM_EPS).reshape(batch * nq, -1)
    cos = qn @ qn.T
    cos.fill_diagonal_(1.0)                                        # a query vs itself: exactly 1
    dist = ((1 - cos) / 2).clamp(0, 1)
    dist.fill_diagonal_(0.0)
    others = other_images(batch, queries.device)                  # [B, B-1]
    sim = torch.einsum("and,bd->ban", q, t)                       # [text b, image a, n]
    diff = minmax(torch.gather(sim, 1, others[:, :, None].expand(-1, -1, nq)))  # [B, B-1, N]
    cand = others[:, :, None] * nq + torch.arange(nq, device=queries.device)    # global query ids
    uniq = torch.ones_like(diff)
    max_cos = torch.full_like(diff, -float("inf"))
    for step in range(num):
        pick = (diff * uniq).argmax(-1)                           # [B, B-1]
        out[:, :, step] = pick
        picked = others * nq + pick                               # [B, B-1] global ids
        rows = cand.reshape(batch, -1)                            # [B, (B-1)*N]
        if uniqueness == "pairwise":
            d = torch.gather(dist[rows], 2, picked[:, None, :].expand(-1, rows.shape[1], -1))
            uniq = torch.minimum(uniq, d.amin(-1).reshape_as(uniq))
        else:
            c = torch.gather(cos[rows], 2, picked[:, None, :].expand(-1, rows.shape[1], -1))
            max_cos = torch.maximum(max_cos, c.amax(-1).reshape_as(max_cos))
            uniq = minmax(-max_cos)
    return out
