"""Issue 4 bar (c) in the issue's own terms: forward+backward of the DAPO losses at B=32, E=8,
64x64 (min and median of 50 runs), against torch.compile of the pairwise reference, and the
13 MB minimum traffic (h and a read once, the gradient written once) as a fraction of this
machine's copy bandwidth. The `dapo-fast bench` table reports GB/s from the forward only.

Run: OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/dapo_losses_fwd_bwd.py
"""
import statistics, time, torch, dapo_fast
from dapo_fast.ops import attention_guidance_loss, diffusion_guided_loss
from dapo_fast.ops._reference import dapo_losses as R
from dapo_fast.bench.runner import copy_bandwidth_gbs
torch.manual_seed(0)
B, E, H, W = 32, 8, 64, 64
h = torch.rand(B, E, H, W); a = torch.rand(B, E, H, W, requires_grad=True); v = torch.ones(B, E, dtype=torch.bool)
hg = h.clone().requires_grad_(); ad = a.detach()
comp_pair = torch.compile(R.attention_guidance_loss_pairwise_vectorised, dynamic=False)
comp_guided = torch.compile(R.diffusion_guided_loss, dynamic=False)
def fb(fn, x):
    def run():
        x.grad = None
        fn().backward(torch.ones(B))
    return run
cases = {
  "L_A dapo_fast[cpu]": fb(lambda: attention_guidance_loss(h, a, v), a),
  "L_A pairwise compiled": fb(lambda: comp_pair(h, a, v), a),
  "L_D dapo_fast[cpu]": fb(lambda: diffusion_guided_loss(hg, ad, v, "none"), hg),
  "L_D reference compiled": fb(lambda: comp_guided(hg, ad, v), hg),
}
bw = copy_bandwidth_gbs()
print(f"copy bandwidth {bw:.1f} GB/s, threads {torch.get_num_threads()}")
for name, run in cases.items():
    for _ in range(5): run()
    ts = []
    for _ in range(50):
        t = time.perf_counter(); run(); ts.append(time.perf_counter() - t)
    mn, med = min(ts) * 1e3, statistics.median(ts) * 1e3
    gbs = 12.58e6 / (mn * 1e-3) / 1e9
    print(f"{name:26s} min {mn:7.3f} ms  median {med:7.3f} ms  13MB-at-min {gbs:6.1f} GB/s = {100*gbs/bw:5.0f}% of copy bw")
