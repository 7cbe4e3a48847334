"""Fused pseudo-label contrastive loss in Triton (flash-attention style).

Forward: one program per (image b, block of phrases) streams over the regions of every image a
with tl.dot, keeping online log-sum-exps of the student set and of the teacher set plus the
running sum_T pi * s; it stores the per-phrase loss and both log-sum-exps. Backward recomputes the
logits: one kernel per phrase block owns grad_phrase, one per (image a, block of regions) owns
grad_region (no atomics). Memory: O(B*Q + B*K) beyond inputs and outputs.
"""
import torch
import triton
import triton.language as tl
from torch.library import triton_op, wrap_triton

from dapo_fast.ops._meta import pseudo_label_contrastive_loss as _meta

_MODES = {"none": 0, "fne": 1, "fnc": 2}
_NEG = -1.0e30  # finite "minus infinity" so that exp(m_old - m_new) never sees inf - inf


@triton.jit
def _logits(x_ptr, y_ptr, x_rows, y_rows, x_mask, y_mask, D, BLOCK_D: tl.constexpr):
    """[BLOCK_M, BLOCK_N] dot products of x rows with y rows, looping over D."""
    acc = tl.zeros([x_rows.shape[0], y_rows.shape[0]], dtype=tl.float32)
    for d0 in range(0, D, BLOCK_D):
        d = d0 + tl.arange(0, BLOCK_D)
        dm = d < D
        x = tl.load(x_ptr + x_rows[:, None] * D + d[None, :], mask=x_mask[:, None] & dm[None, :], other=0.0)
        y = tl.load(y_ptr + y_rows[:, None] * D + d[None, :], mask=y_mask[:, None] & dm[None, :], other=0.0)
        acc += tl.dot(x, tl.trans(y), input_precision="ieee")
    return acc


@triton.jit
def _forward_kernel(p_ptr, r_ptr, tp_ptr, tr_ptr, pv_ptr, rv_ptr, fn_ptr, loss_ptr, lse_ptr, B, Q, K, D, DT,
                    inv_tau, inv_ttau, MODE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                    BLOCK_D: tl.constexpr):
    b = tl.program_id(0)
    q = tl.program_id(1) * BLOCK_M + tl.arange(0, BLOCK_M)
    q_ok = q < Q
    rows = b * Q + q
    m_s = tl.full([BLOCK_M], _NEG, tl.float32)
    l_s = tl.zeros([BLOCK_M], tl.float32)
    m_t = tl.full([BLOCK_M], _NEG, tl.float32)
    l_t = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M], tl.float32)  # sum over T of exp(t - m_t) * s
    for a in range(0, B):
        for k0 in range(0, K, BLOCK_N):
            k = k0 + tl.arange(0, BLOCK_N)
            k_ok = k < K
            cols = a * K + k
            valid = tl.load(rv_ptr + cols, mask=k_ok, other=0) != 0
            if MODE != 0:
                fn = (tl.load(fn_ptr + (b * B + a) * K + k, mask=k_ok, other=0) != 0) & (a != b)
            else:
                fn = k < 0
            s = _logits(p_ptr, r_ptr, rows, cols, q_ok, k_ok, D, BLOCK_D) * inv_tau
            in_s = valid & ~fn if MODE == 1 else valid
            in_s2 = in_s[None, :] & q_ok[:, None]
            m_new = tl.maximum(m_s, tl.max(tl.where(in_s2, s, _NEG), 1))
            l_s = l_s * tl.exp(m_s - m_new) + tl.sum(tl.where(in_s2, tl.exp(s - m_new[:, None]), 0.0), 1)
            m_s = m_new
            if (a == b) | (MODE == 2):
                in_t = valid & ((k >= 0) & (a == b) | fn) if MODE == 2 else valid
                in_t2 = in_t[None, :] & q_ok[:, None]
                t = _logits(tp_ptr, tr_ptr, rows, cols, q_ok, k_ok, DT, BLOCK_D) * inv_ttau
                mt_new = tl.maximum(m_t, tl.max(tl.where(in_t2, t, _NEG), 1))
                scale = tl.exp(m_t - mt_new)
                e = tl.where(in_t2, tl.exp(t - mt_new[:, None]), 0.0)
                l_t = l_t * scale + tl.sum(e, 1)
                acc = acc * scale + tl.sum(e * s, 1)
                m_t = mt_new
    pv = tl.load(pv_ptr + rows, mask=q_ok, other=0) != 0
    ok = pv & (l_t > 0)
    lse_s = m_s + tl.log(tl.where(l_s > 0, l_s, 1.0))
    lse_t = m_t + tl.log(tl.where(l_t > 0, l_t, 1.0))
    loss = tl.where(ok, lse_s - acc / tl.where(l_t > 0, l_t, 1.0), 0.0)
    tl.store(loss_ptr + rows, loss, mask=q_ok)
    tl.store(lse_ptr + rows * 2, lse_s, mask=q_ok)
    tl.store(lse_ptr + rows * 2 + 1, tl.where(ok, lse_t, float("inf")), mask=q_ok)  # +inf: pi = 0


@triton.jit
def _grad_block(p_ptr, r_ptr, tp_ptr, tr_ptr, rv_ptr, fn_ptr, lse_ptr, coef_ptr, b, a, rows, q_ok, cols, k, k_ok,
                B, K, D, DT, inv_tau, inv_ttau, MODE: tl.constexpr, BLOCK_D: tl.constexpr):
    """G = coef * (softmax_S - pi_T) / tau for one [phrases of b] x [regions of a] block."""
    valid = tl.load(rv_ptr + cols, mask=k_ok, other=0) != 0
    if MODE != 0:
        fn = (tl.load(fn_ptr + (b * B + a) * K + k, mask=k_ok, other=0) != 0) & (a != b)
    else:
        fn = k < 0
    in_s = valid & ~fn if MODE == 1 else valid
    lse_s = tl.load(lse_ptr + rows * 2, mask=q_ok, other=0.0)
    coef = tl.load(coef_ptr + rows, mask=q_ok, other=0.0) * inv_tau
    s = _logits(p_ptr, r_ptr, rows, cols, q_ok, k_ok, D, BLOCK_D) * inv_tau
    g = tl.where(in_s[None, :] & q_ok[:, None], tl.exp(tl.minimum(s - lse_s[:, None], 0.0)), 0.0)
    if (a == b) | (MODE == 2):
        in_t = valid & ((k >= 0) & (a == b) | fn) if MODE == 2 else valid
        lse_t = tl.load(lse_ptr + rows * 2 + 1, mask=q_ok, other=float("inf"))
        t = _logits(tp_ptr, tr_ptr, rows, cols, q_ok, k_ok, DT, BLOCK_D) * inv_ttau
        g -= tl.where(in_t[None, :] & q_ok[:, None], tl.exp(tl.minimum(t - lse_t[:, None], 0.0)), 0.0)
    # rows without a pseudo-label (lse_t = +inf) carry no gradient at all
    lse_t_row = tl.load(lse_ptr + rows * 2 + 1, mask=q_ok, other=float("inf"))
    return tl.where((lse_t_row < float("inf"))[:, None], g * coef[:, None], 0.0)


@triton.jit
def _grad_phrase_kernel(p_ptr, r_ptr, tp_ptr, tr_ptr, rv_ptr, fn_ptr, lse_ptr, coef_ptr, gp_ptr, B, Q, K, D, DT,
                        inv_tau, inv_ttau, MODE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                        BLOCK_D: tl.constexpr, BLOCK_DO: tl.constexpr):
    b = tl.program_id(0)
    q = tl.program_id(1) * BLOCK_M + tl.arange(0, BLOCK_M)
    q_ok = q < Q
    rows = b * Q + q
    d_out = tl.program_id(2) * BLOCK_DO + tl.arange(0, BLOCK_DO)
    d_ok = d_out < D
    acc = tl.zeros([BLOCK_M, BLOCK_DO], tl.float32)
    for a in range(0, B):
        for k0 in range(0, K, BLOCK_N):
            k = k0 + tl.arange(0, BLOCK_N)
            k_ok = k < K
            cols = a * K + k
            g = _grad_block(p_ptr, r_ptr, tp_ptr, tr_ptr, rv_ptr, fn_ptr, lse_ptr, coef_ptr, b, a, rows, q_ok, cols,
                            k, k_ok, B, K, D, DT, inv_tau, inv_ttau, MODE, BLOCK_D)
            r = tl.load(r_ptr + cols[:, None] * D + d_out[None, :], mask=k_ok[:, None] & d_ok[None, :], other=0.0)
            acc += tl.dot(g, r, input_precision="ieee")
    tl.store(gp_ptr + rows[:, None] * D + d_out[None, :], acc, mask=q_ok[:, None] & d_ok[None, :])


@triton.jit
def _grad_region_kernel(p_ptr, r_ptr, tp_ptr, tr_ptr, rv_ptr, fn_ptr, lse_ptr, coef_ptr, gr_ptr, B, Q, K, D, DT,
                        inv_tau, inv_ttau, MODE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                        BLOCK_D: tl.constexpr, BLOCK_DO: tl.constexpr):
    a = tl.program_id(0)
    k = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    k_ok = k < K
    cols = a * K + k
    d_out = tl.program_id(2) * BLOCK_DO + tl.arange(0, BLOCK_DO)
    d_ok = d_out < D
    acc = tl.zeros([BLOCK_N, BLOCK_DO], tl.float32)
    for b in range(0, B):
        for q0 in range(0, Q, BLOCK_M):
            q = q0 + tl.arange(0, BLOCK_M)
            q_ok = q < Q
            rows = b * Q + q
            g = _grad_block(p_ptr, r_ptr, tp_ptr, tr_ptr, rv_ptr, fn_ptr, lse_ptr, coef_ptr, b, a, rows, q_ok, cols,
                            k, k_ok, B, K, D, DT, inv_tau, inv_ttau, MODE, BLOCK_D)
            p = tl.load(p_ptr + rows[:, None] * D + d_out[None, :], mask=q_ok[:, None] & d_ok[None, :], other=0.0)
            acc += tl.dot(tl.trans(g), p, input_precision="ieee")
    tl.store(gr_ptr + cols[:, None] * D + d_out[None, :], acc, mask=k_ok[:, None] & d_ok[None, :])


def _blocks(q, k, d):
    block_m = max(16, min(64, triton.next_power_of_2(max(q, 1))))
    block_n = max(16, min(64, triton.next_power_of_2(max(k, 1))))
    block_d = max(16, min(64, triton.next_power_of_2(max(d, 1))))
    return block_m, block_n, block_d


def _prepare(phrase, region, teacher_phrase, teacher_region, fn_mask):
    f32 = lambda t: t.to(torch.float32).contiguous()  # noqa: E731  (Triton path computes in fp32)
    fn = fn_mask.to(torch.uint8).contiguous() if fn_mask is not None else phrase.new_zeros(1, dtype=torch.uint8)
    return f32(phrase), f32(region), f32(teacher_phrase), f32(teacher_region), fn


@triton_op("dapo_fast::pseudo_label_contrastive_loss_triton", mutates_args=())
def pseudo_label_contrastive_loss_triton(phrase: torch.Tensor, region: torch.Tensor,
                                         teacher_phrase: torch.Tensor, teacher_region: torch.Tensor,
                                         phrase_valid: torch.Tensor, region_valid: torch.Tensor,
                                         fn_mask: torch.Tensor, tau: float, teacher_tau: float,
                                         mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss [B, Q] float32, lse [B, Q, 2] float32: student and teacher log-sum-exp per phrase)."""
    b, q, d = phrase.shape
    k, dt = region.shape[1], teacher_phrase.shape[2]
    loss = phrase.new_empty((b, q), dtype=torch.float32)
    lse = phrase.new_empty((b, q, 2), dtype=torch.float32)
    if b * q == 0:
        return loss, lse
    if k == 0:
        loss.zero_()
        lse.fill_(float("inf"))
        return loss, lse
    p, r, tp, tr, fn = _prepare(phrase, region, teacher_phrase, teacher_region, fn_mask)
    block_m, block_n, block_d = _blocks(q, k, max(d, dt))
    grid = (b, triton.cdiv(q, block_m))
    wrap_triton(_forward_kernel)[grid](
        p, r, tp, tr, phrase_valid.to(torch.uint8).contiguous(), region_valid.to(torch.uint8).contiguous(), fn,
        loss, lse, b, q, k, d, dt, 1.0 / tau, 1.0 / teacher_tau, MODE=_MODES[mode], BLOCK_M=block_m,
        BLOCK_N=block_n, BLOCK_D=block_d)
    return loss, lse


@triton_op("dapo_fast::pseudo_label_contrastive_loss_backward_triton", mutates_args=())
def pseudo_label_contrastive_loss_backward_triton(coef: torch.Tensor, phrase: torch.Tensor,
                                                  region: torch.Tensor, teacher_phrase: torch.Tensor,
                                                  teacher_region: torch.Tensor, region_valid: torch.Tensor,
                                                  fn_mask: torch.Tensor, lse: torch.Tensor, tau: float,
                                                  teacher_tau: float, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients (phrase, region) for the per-phrase upstream gradient coef [B, Q]."""
    b, q, d = phrase.shape
    k, dt = region.shape[1], teacher_phrase.shape[2]
    gp = torch.zeros(phrase.shape, dtype=torch.float32, device=phrase.device)
    gr = torch.zeros(region.shape, dtype=torch.float32, device=region.device)
    if b * q == 0 or k == 0 or d == 0:
        return gp.to(phrase.dtype), gr.to(region.dtype)
    p, r, tp, tr, fn = _prepare(phrase, region, teacher_phrase, teacher_region, fn_mask)
    rv = region_valid.to(torch.uint8).contiguous()
    c = coef.to(torch.float32).contiguous()
    block_m, block_n, block_d = _blocks(q, k, max(d, dt))
    block_do = max(16, min(64, triton.next_power_of_2(d)))
    args = (p, r, tp, tr, rv, fn, lse, c)
    wrap_triton(_grad_phrase_kernel)[(b, triton.cdiv(q, block_m), triton.cdiv(d, block_do))](
        *args, gp, b, q, k, d, dt, 1.0 / tau, 1.0 / teacher_tau, MODE=_MODES[mode], BLOCK_M=block_m,
        BLOCK_N=block_n, BLOCK_D=block_d, BLOCK_DO=block_do)
    wrap_triton(_grad_region_kernel)[(b, triton.cdiv(k, block_n), triton.cdiv(d, block_do))](
        *args, gr, b, q, k, d, dt, 1.0 / tau, 1.0 / teacher_tau, MODE=_MODES[mode], BLOCK_M=block_m,
        BLOCK_N=block_n, BLOCK_D=block_d, BLOCK_DO=block_do)
    return gp.to(phrase.dtype), gr.to(region.dtype)


_meta.register_triton(pseudo_label_contrastive_loss_triton, pseudo_label_contrastive_loss_backward_triton)


def pseudo_label_contrastive_loss(phrase, region, teacher_phrase, teacher_region, phrase_valid, region_valid, fn_mask,
                                  tau, teacher_tau, mode, reduction):
    """The front's call: the Triton op's per-phrase losses, reduced."""
    fn = fn_mask if fn_mask is not None else torch.zeros(1, dtype=torch.bool, device=phrase.device)
    loss, _ = pseudo_label_contrastive_loss_triton(phrase, region, teacher_phrase, teacher_region, phrase_valid,
                                                   region_valid, fn, tau, teacher_tau,
                                                   mode if fn_mask is not None else "none")
    if reduction == "none":
        return loss.to(phrase.dtype)
    total = loss.sum()
    if reduction == "mean":
        total = total / phrase_valid.sum().clamp(min=1)
    return total.to(phrase.dtype)
