"""MPL's false-negative step at scale: ``false_negative_mask`` on the raw detector features, then
the FNC ``pseudo_label_contrastive_loss`` forward + backward, ours against MPL's code form.

Per implementation, a fresh child process builds the inputs (Flickr30k sizes: K=100 regions of
D_raw=2048 raw features, Q=32 phrases, D=300 embeddings, threshold 0.95), then runs the step
once to warm up and ``--repeats`` more times; it reports

* peak RSS: the process's high-water mark (``VmHWM``) minus its RSS before the step (the inputs,
  torch, the interpreter and the libraries' one-time set-up, done by a B=2 step first, excluded),
  read from /proc;
* peak allocation: torch's allocation records over one step (the profiler's "[memory]" events,
  :func:`dapo_fast.bench.runner.peak_memory_bytes`);
* time: median seconds per step, and the same for ``floor``: the products the step cannot avoid,
  one pass of plain matmuls in row blocks (so the floor itself never holds a [B*Q, B*K] or
  [B*K, B*K] matrix): the upper block triangle of the [B*K, B*K] feature similarity (the mask is
  symmetric, so half of it) and the loss's three logits-sized products (logits, and the two
  gradient products);
* for ours, the loss against the reference evaluated block by block
  (``per_phrase_loss`` on a slice of images, all regions of the batch), on ``--check-images``
  images.

The code form is only run where its [B, B, K, K] similarity fits (B <= 256): at B=1024 it alone
would be 1024^2 * 100^2 * 4 bytes = 42 GB.

    python benchmarks/mpl_loss_at_scale.py --batch 64 --impls ours code_form
    python benchmarks/mpl_loss_at_scale.py --batch 1024 --impls ours --single-run --no-allocations
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

K, Q, D, D_RAW, THRESHOLD, TAU, TEACHER_TAU = 100, 32, 300, 2048, 0.95, 1.0, 0.3
ROW_BLOCK_IMAGES = 16  # images per row block of the floor's products


def make_inputs(b, seed=0):
    import torch

    from dapo_fast.bench.cases.false_negative_mask import make_inputs as mask_inputs
    from dapo_fast.bench.cases.pseudo_label_contrastive_loss import make_inputs as loss_inputs

    out = loss_inputs(b, seed=seed)
    raw = mask_inputs(b, seed=seed + 1)
    out["raw_feats"], out["region_valid"] = raw["region_feats"], out["region_valid"]
    del out["fn_mask"]
    torch.manual_seed(seed)
    return out


def step(impl, i):
    """Mask + FNC loss forward + backward; returns the loss (detached)."""
    from dapo_fast.ops import false_negative_mask, pseudo_label_contrastive_loss
    from dapo_fast.ops._reference.false_negative_mask import false_negative_mask_mpl_code_form
    from dapo_fast.ops._reference.pseudo_label_contrastive_loss import pseudo_label_contrastive_loss_mpl_code_form

    mask_fn, loss_fn = ((false_negative_mask, pseudo_label_contrastive_loss) if impl == "ours" else
                        (false_negative_mask_mpl_code_form, pseudo_label_contrastive_loss_mpl_code_form))
    i["phrase"].grad = i["region"].grad = None
    fn_mask = mask_fn(i["raw_feats"], i["region_valid"], THRESHOLD)
    loss = loss_fn(i["phrase"], i["region"], i["teacher_phrase"], i["teacher_region"], i["phrase_valid"],
                   i["region_valid"], fn_mask, TAU, TEACHER_TAU, "fnc", "mean")
    loss.backward()
    return loss.detach(), fn_mask


def floor(i):
    """The step's unavoidable products as plain matmuls, in row blocks of ROW_BLOCK_IMAGES images."""
    import torch

    b = i["phrase"].shape[0]
    f = i["raw_feats"].reshape(b * K, D_RAW)
    p, r = i["phrase"].detach().reshape(b * Q, D), i["region"].detach().reshape(b * K, D)
    grad_r = torch.zeros_like(r)
    for i0 in range(0, b, ROW_BLOCK_IMAGES):
        i1 = min(b, i0 + ROW_BLOCK_IMAGES)
        torch.mm(f[i0 * K:i1 * K], f[i0 * K:].T)        # similarity, blocks on and above the diagonal
        logits = torch.mm(p[i0 * Q:i1 * Q], r.T)          # loss forward
        torch.mm(logits, r)                              # d phrase
        grad_r.addmm_(logits.T, p[i0 * Q:i1 * Q])         # d region


def rss_bytes(field):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def check_against_reference(i, images):
    """Max |ours - reference| of the per-phrase losses of the first ``images`` images, the reference
    evaluated on that slice (against every region of the batch), and the mean loss both ways."""
    import torch

    from dapo_fast.ops import false_negative_mask, pseudo_label_contrastive_loss
    from dapo_fast.ops._reference.pseudo_label_contrastive_loss import per_phrase_loss

    with torch.no_grad():
        fn_mask = false_negative_mask(i["raw_feats"], i["region_valid"], THRESHOLD)
        args = (i["phrase"], i["region"], i["teacher_phrase"], i["teacher_region"], i["phrase_valid"],
                i["region_valid"], fn_mask, TAU, TEACHER_TAU, "fnc")
        ours = pseudo_label_contrastive_loss(*args, reduction="none")
        worst, total_ref = 0.0, 0.0
        for i0 in range(0, images, 8):
            rows = slice(i0, min(images, i0 + 8))
            ref = per_phrase_loss(*args, images=rows)
            worst = max(worst, (ours[rows].double() - ref.double()).abs().max().item())
            total_ref += ref.double().sum().item()
        return {"checked_images": images, "max_abs_diff": worst,
                "ours_sum": ours[:images].double().sum().item(), "reference_sum": total_ref}


def memory_child(impl, b, check_images, allocations, with_floor=False):
    """Peak memory of one step of ``impl`` in this fresh process (and ours' check); with
    ``with_floor``, that step's time and the floor's right after it, in this process."""
    import torch

    from dapo_fast.bench.runner import peak_memory_bytes

    step(impl, make_inputs(2))  # one-time initialisation (BLAS and thread pools) before the baseline
    i = make_inputs(b)
    rss_before = rss_bytes("VmRSS")
    t0 = time.perf_counter()
    loss, fn_mask = step(impl, i)
    seconds = time.perf_counter() - t0
    result = {"impl": impl, "batch": b, "threads": torch.get_num_threads(),
              "peak_rss_mb": (rss_bytes("VmHWM") - rss_before) / 2**20, "loss": loss.item(),
              "fn_share": fn_mask.float().mean().item()}
    del fn_mask
    if with_floor:
        t0 = time.perf_counter()
        floor(i)
        result.update(seconds=seconds, floor_seconds=time.perf_counter() - t0)
    if allocations:
        result["peak_alloc_mb"] = peak_memory_bytes(lambda: step(impl, i)) / 2**20
    if impl == "ours" and check_images:
        result.update(check_against_reference(i, min(b, check_images)))
    return result


def time_child(impls, b, repeats):
    """Median seconds per step of every impl, timed alternately in this process (side by side)."""
    i = make_inputs(b)
    fns = {impl: (lambda: floor(i)) if impl == "floor" else (lambda impl=impl: step(impl, i)) for impl in impls}
    for fn in fns.values():  # warm-up
        fn()
    times = {impl: [] for impl in impls}
    for _ in range(repeats):
        for impl, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[impl].append(time.perf_counter() - t0)
    return {impl: statistics.median(t) for impl, t in times.items()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--impls", nargs="*", default=["ours", "code_form", "floor"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--check-images", type=int, default=16, help="images whose loss is checked against the reference")
    p.add_argument("--no-allocations", action="store_true", help="skip the profiler's allocation records")
    p.add_argument("--single-run", action="store_true",
                   help="one step per implementation, timed once in its memory process with the floor after it "
                        "(for sizes where a step takes minutes: B=1024)")
    p.add_argument("--child", choices=("memory", "time"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        import torch

        if a.threads:
            torch.set_num_threads(a.threads)
        if a.child == "memory":
            print(json.dumps(memory_child(a.impls[0], a.batch, a.check_images, not a.no_allocations, a.single_run)))
        else:
            print(json.dumps(time_child(a.impls, a.batch, a.repeats)))
        return
    common = ["--batch", str(a.batch), "--threads", str(a.threads)]
    rows = {}
    for impl in (x for x in a.impls if x != "floor"):
        cmd = [sys.executable, os.path.abspath(__file__), "--child", "memory", "--impls", impl, *common,
               "--check-images", str(a.check_images)] + (["--no-allocations"] if a.no_allocations else []) + (
                   ["--single-run"] if a.single_run else [])
        rows[impl] = _run(cmd)
        print(json.dumps(rows[impl]), flush=True)
        if a.single_run:
            print(f"B={a.batch}: time {impl} / floor {rows[impl]['seconds'] / rows[impl]['floor_seconds']:.2f}x "
                  f"(one step each, same process)")
    if a.single_run:
        return
    seconds = _run([sys.executable, os.path.abspath(__file__), "--child", "time", "--impls", *a.impls, *common,
                    "--repeats", str(a.repeats)])
    print(json.dumps({"seconds_per_step": seconds}))
    if "ours" in seconds:
        for other in (x for x in a.impls if x != "ours"):
            print(f"B={a.batch}: time ours / {other} {seconds['ours'] / seconds[other]:.2f}x")
    if "ours" in rows and "code_form" in rows:
        ours, code = rows["ours"], rows["code_form"]
        line = f"B={a.batch}: peak RSS code_form / ours {code['peak_rss_mb'] / ours['peak_rss_mb']:.1f}x"
        if "peak_alloc_mb" in ours:
            line += f", peak allocation code_form / ours {code['peak_alloc_mb'] / ours['peak_alloc_mb']:.1f}x"
        print(line)


def _run(cmd):
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{' '.join(cmd[2:])} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
