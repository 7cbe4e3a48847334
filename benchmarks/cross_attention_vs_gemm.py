"""cross_attention_probs_mean as a multiple of the q.k^T GEMM alone, at Stable Diffusion 1.4's
cross-attention sizes: batch 2 (classifier-free guidance), 8 heads, 77 text tokens; 16x16 (256
queries, head dim 160) and 32x32 (1024 queries, head dim 80), plus head dim 40 at both.

The GEMM is ``torch.matmul(q, k^T)`` on the same tensors the op gets (q the [B, HW, heads, d]
projection diffusers makes, viewed as [B, heads, HW, d]), and on a contiguous q: the scores alone,
without the softmax or the head mean. Forward only (the capture runs under no_grad). Timed
alternately in one process, median of ``--repeats``.

    python benchmarks/cross_attention_vs_gemm.py --threads 1
"""
import argparse
import statistics
import time

import torch

SIZES = [("16x16", 256, 160), ("32x32", 1024, 80), ("16x16-d40", 256, 40), ("32x32-d40", 1024, 40)]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--repeats", type=int, default=200)
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    from dapo_fast.ops import cross_attention_probs_mean

    batch, heads, keys = 2, 8, 77
    print(f"threads {torch.get_num_threads()}")
    print("| size | d | ours ms | q.k^T (as given) ms | q.k^T (contiguous q) ms | ours / GEMM as given | ours / GEMM contiguous |")
    print("|---|---|---|---|---|---|---|")
    for name, rows, dim in SIZES:
        torch.manual_seed(0)
        q = torch.randn(batch, rows, heads, dim).transpose(1, 2)
        k = torch.randn(batch, keys, heads, dim).transpose(1, 2)
        qc, kt = q.contiguous(), k.transpose(-1, -2)
        scale = dim ** -0.5
        fns = {"ours": lambda: cross_attention_probs_mean(q, k, scale),
               "gemm": lambda: torch.matmul(q, kt),
               "gemm_contiguous": lambda: torch.matmul(qc, kt)}
        times = {n: [] for n in fns}
        with torch.no_grad():
            for fn in fns.values():
                fn()
            for _ in range(a.repeats):
                for n, fn in fns.items():
                    t0 = time.perf_counter()
                    fn()
                    times[n].append(time.perf_counter() - t0)
        ms = {n: statistics.median(t) * 1e3 for n, t in times.items()}
        print(f"| {name} | {dim} | {ms['ours']:.3f} | {ms['gemm']:.3f} | {ms['gemm_contiguous']:.3f} | "
              f"{ms['ours'] / ms['gemm']:.2f}x | {ms['ours'] / ms['gemm_contiguous']:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
