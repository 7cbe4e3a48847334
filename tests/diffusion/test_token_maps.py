"""token_attention_maps vs Attend-and-Excite's post-processing written out; CLIP token spans."""
import math

import pytest
import torch
import torch.nn.functional as F

from dapo_fast.diffusion import clip_tokenizer, entity_token_spans, eot_index, gaussian_kernel, token_attention_maps


def attend_and_excite_maps(agg, token_spans, last_index, smooth=True, sigma=0.5, reduce="mean"):
    """A&E's _compute_max_attention_per_index before the max, one token at a time, with its
    GaussianSmoothing kernel (1/(std sqrt(2 pi)) exp(-((x - mean) / (2 std))^2), normalised)."""
    res = math.isqrt(agg.shape[1])
    out = []
    for b in range(agg.shape[0]):
        maps = agg[b].reshape(res, res, -1)
        text = maps[:, :, 1:last_index] * 100
        text = torch.softmax(text, dim=-1)
        per_entity = []
        for span in token_spans:
            token_maps = []
            for i in span:
                image = text[:, :, i - 1]
                if smooth:
                    grid = torch.arange(3, dtype=torch.float32)
                    mean = 1.0
                    g = 1 / (sigma * math.sqrt(2 * math.pi)) * torch.exp(-(((grid - mean) / (2 * sigma)) ** 2))
                    kernel = g[:, None] * g[None, :]
                    kernel = kernel / kernel.sum()
                    padded = F.pad(image[None, None], (1, 1, 1, 1), mode="reflect")
                    image = F.conv2d(padded, kernel[None, None].to(image.dtype))[0, 0]
                token_maps.append(image)
            stacked = torch.stack(token_maps)
            per_entity.append(stacked.mean(0) if reduce == "mean" else stacked.amax(0))
        out.append(torch.stack(per_entity) if per_entity else agg.new_zeros(0, res, res))
    return torch.stack(out)


@pytest.mark.parametrize("smooth", [False, True])
@pytest.mark.parametrize("spans", [[[2]], [[1, 2, 3], [5, 6, 7]], [[3], [4, 5], [1], [6, 7, 8], [2], [9], [10]], []])
@pytest.mark.parametrize("last_index", [-1, 12])
def test_matches_attend_and_excite(seed, smooth, spans, last_index):
    agg = torch.rand(2, 16 * 16, 77).softmax(-1)
    want = attend_and_excite_maps(agg, spans, last_index, smooth=smooth)
    got = token_attention_maps(agg, spans, last_index, smooth=smooth)
    assert got.shape == (2, len(spans), 16, 16)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_max_reduce_smoothing_commutes_only_for_mean(seed):
    # smoothing is linear, so mean-then-smooth == smooth-then-mean; with "max" we reduce before
    # smoothing (one smoothing per entity), which A&E's per-token form does not: check both.
    agg = torch.rand(1, 64, 20).softmax(-1)
    spans = [[1, 2, 3]]
    unsmoothed = token_attention_maps(agg, spans, 10, smooth=False, span_reduce="max")
    text = torch.softmax(agg[:, :, 1:10] * 100, -1)
    torch.testing.assert_close(unsmoothed.reshape(1, 1, 64)[0, 0], text[0, :, 0:3].amax(-1))


def test_gaussian_kernel_forms():
    ae = gaussian_kernel(3, 0.5)
    exact = gaussian_kernel(3, 0.5, exact_sigma=True)
    torch.testing.assert_close(ae.sum(), torch.tensor(1.0))
    # A&E's kernel is the textbook one with sigma * sqrt(2)
    torch.testing.assert_close(ae, gaussian_kernel(3, 0.5 * math.sqrt(2), exact_sigma=True))
    assert not torch.allclose(ae, exact)


def test_differentiable(seed):
    agg = torch.rand(1, 9, 7, dtype=torch.float64).softmax(-1).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: token_attention_maps(x, [[1, 2], [4]], 6, scale=3.0), (agg,),
                                    fast_mode=True)


def test_bad_inputs():
    agg = torch.rand(1, 16, 9)
    with pytest.raises(ValueError, match=r"token_spans\[0\]"):
        token_attention_maps(agg, [[0]], 8)
    with pytest.raises(ValueError, match=r"token_spans\[1\]"):
        token_attention_maps(agg, [[1], [8]], 8)
    with pytest.raises(ValueError, match="span_reduce"):
        token_attention_maps(agg, [[1]], 8, span_reduce="sum")
    with pytest.raises(ValueError, match="resolution"):
        token_attention_maps(torch.rand(1, 15, 9), [[1]], 8)
    with pytest.raises(ValueError, match="agg must have shape"):
        token_attention_maps(agg[0], [[1]], 8)


def test_clip_spans_of_the_paper_prompt():
    tokenizer = clip_tokenizer()
    prompt = "a young boy playing his toy quad"
    ids = tokenizer(prompt).input_ids
    assert ids[0] == 49406 and ids[-1] == 49407          # CLIP's <|startoftext|> ... <|endoftext|>
    assert ids[1:-1] == [320, 1888, 1876, 1629, 787, 5988, 13419]
    assert entity_token_spans(tokenizer, prompt, ["a young boy", "his toy quad"]) == [[1, 2, 3], [5, 6, 7]]
    assert entity_token_spans(tokenizer, prompt, ["boy", "quad", "toy"]) == [[3], [7], [6]]
    assert eot_index(tokenizer, prompt) == 8


def test_spans_with_open_clip_tokenizer_and_repeats():
    from open_clip.tokenizer import SimpleTokenizer

    tokenizer = SimpleTokenizer()
    prompt = "a dog next to a dog and a cat"
    assert entity_token_spans(tokenizer, prompt, ["a dog", "a dog", "a cat"]) == [[1, 2], [5, 6], [8, 9]]
    # a word that BPE splits into several tokens stays one entity
    multi = entity_token_spans(clip_tokenizer(), "a quadcopter over snowboarders", ["snowboarders"])
    assert len(multi[0]) >= 2
    with pytest.raises(ValueError, match="'horse'"):
        entity_token_spans(tokenizer, prompt, ["horse"])
