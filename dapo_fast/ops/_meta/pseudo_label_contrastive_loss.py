"""Fakes and autograd of pseudo_label_contrastive_loss.

The C++/CUDA op ``dapo_fast::pseudo_label_contrastive_loss`` reduces in the kernel and, with
reduction "mean"/"sum" and inputs that need a gradient, returns d loss / d input for an upstream
gradient of 1 along with the loss, so its backward only scales them (it calls the backward op
when they were not computed). The Triton op ``dapo_fast::pseudo_label_contrastive_loss_triton``
has a different contract: per-phrase float32 losses and the two log-sum-exps per phrase, which
its backward op reuses; the front reduces. Each gets its own fakes and autograd here.
"""
import torch


# ---- the C++/CUDA op ---------------------------------------------------------------------------

def fake_pseudo_label_contrastive_loss(phrase, region, teacher_phrase, teacher_region, phrase_valid, region_valid,
                                       fn_mask, tau, teacher_tau, mode, reduction, want_grad_phrase,
                                       want_grad_region):
    torch._check(phrase.dim() == 3 and region.dim() == 3, lambda: "phrase and region must be [B, Q, D] / [B, K, D]")
    loss = phrase.new_empty(tuple(phrase.shape[:2]) if reduction == "none" else ())
    reduced = reduction != "none"
    gp = phrase.new_empty(phrase.shape if (want_grad_phrase and reduced) else (0,))
    gr = region.new_empty(region.shape if (want_grad_region and reduced) else (0,))
    return loss, gp, gr


def fake_pseudo_label_contrastive_loss_backward(grad_loss, phrase, region, teacher_phrase, teacher_region,
                                                phrase_valid, region_valid, fn_mask, tau, teacher_tau, mode,
                                                reduction):
    return phrase.new_empty(phrase.shape), region.new_empty(region.shape)


def setup_context(ctx, inputs, output):
    (phrase, region, teacher_phrase, teacher_region, phrase_valid, region_valid, fn_mask, tau, teacher_tau, mode,
     reduction, _, _) = inputs
    _, gp, gr = output
    ctx.save_for_backward(phrase, region, teacher_phrase, teacher_region, phrase_valid, region_valid, fn_mask, gp, gr)
    ctx.args = (tau, teacher_tau, mode, reduction)


def make_backward(backward_op):
    """The backward of the C++/CUDA op: the forward's gradients scaled, or ``backward_op``."""
    def backward(ctx, grad_loss, _grad_gp, _grad_gr):
        phrase, region, teacher_phrase, teacher_region, phrase_valid, region_valid, fn_mask, gp, gr = ctx.saved_tensors
        tau, teacher_tau, mode, reduction = ctx.args
        need_p, need_r = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        have_p = gp.shape == phrase.shape and gp.numel() > 0 or phrase.numel() == 0
        have_r = gr.shape == region.shape and gr.numel() > 0 or region.numel() == 0
        if (need_p and not have_p) or (need_r and not have_r):
            grad_p, grad_r = backward_op(grad_loss, phrase, region, teacher_phrase, teacher_region, phrase_valid,
                                         region_valid, fn_mask, tau, teacher_tau, mode, reduction)
        else:  # the forward already computed d loss / d input for an upstream gradient of 1
            grad_p = gp * grad_loss if need_p and gp.numel() > 0 else (torch.zeros_like(phrase) if need_p else None)
            grad_r = gr * grad_loss if need_r and gr.numel() > 0 else (torch.zeros_like(region) if need_r else None)
        return (grad_p if need_p else None, grad_r if need_r else None) + (None,) * 11

    return backward


def register(forward, backward) -> None:
    torch.library.register_fake(forward, fake_pseudo_label_contrastive_loss)
    torch.library.register_fake(backward, fake_pseudo_label_contrastive_loss_backward)
    torch.library.register_autograd(forward, make_backward(backward), setup_context=setup_context)


# ---- the Triton op -------------------------------------------------------------------------------

def fake_pseudo_label_contrastive_loss_triton(phrase, region, teacher_phrase, teacher_region, phrase_valid,
                                              region_valid, fn_mask, tau, teacher_tau, mode):
    b, q = phrase.shape[:2]
    return phrase.new_empty((b, q), dtype=torch.float32), phrase.new_empty((b, q, 2), dtype=torch.float32)


def fake_pseudo_label_contrastive_loss_backward_triton(coef, phrase, region, teacher_phrase, teacher_region,
                                                       region_valid, fn_mask, lse, tau, teacher_tau, mode):
    return phrase.new_empty(phrase.shape), region.new_empty(region.shape)


def setup_context_triton(ctx, inputs, output):
    phrase, region, teacher_phrase, teacher_region, _, region_valid, fn_mask, tau, teacher_tau, mode = inputs
    ctx.save_for_backward(phrase, region, teacher_phrase, teacher_region, region_valid, fn_mask, output[1])
    ctx.args = (tau, teacher_tau, mode)


def make_backward_triton(backward_op):
    """The backward of the Triton op, computed by ``backward_op`` from the saved log-sum-exps."""
    def backward(ctx, grad_loss, _grad_lse):
        phrase, region, teacher_phrase, teacher_region, region_valid, fn_mask, lse = ctx.saved_tensors
        tau, teacher_tau, mode = ctx.args
        grad_p, grad_r = backward_op(grad_loss, phrase, region, teacher_phrase, teacher_region, region_valid, fn_mask,
                                     lse, tau, teacher_tau, mode)
        return (grad_p, grad_r) + (None,) * 8

    return backward


def register_triton(forward, backward) -> None:
    torch.library.register_fake(forward, fake_pseudo_label_contrastive_loss_triton)
    torch.library.register_fake(backward, fake_pseudo_label_contrastive_loss_backward_triton)
    torch.library.register_autograd(forward, make_backward_triton(backward), setup_context=setup_context_triton)
