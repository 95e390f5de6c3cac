"""Speed and cost of dynamic appearance, as ratios measured in one run, and the paper's claims.

    python bench.py              # the speed/cost table (a CPU-sized setting, plus the paper's
                                 # TSM-R50 8x6 224^2 setting), written to bench.json
    python bench.py --quick      # tiny sizes, a few seconds (what the test suite runs)
    python bench.py claims       # trains every representation / joint strategy on the synthetic
                                 # set with the same budget, 3 seeds, and prints the claims table
                                 # (extra train.py flags after `--`, e.g. `-- --frames 8`)

Why ratios and not seconds: absolute times depend on the machine; the paper's efficiency claims
are relative (PWTP is a small fraction of the backbone, MGDA costs little more than a weighted
sum, DA is much cheaper than optical flow), and ratios measured in one run on one machine carry
over. Each row prints the goal beside the figure, and whether it is met.

Rows:
  pwtp_vs_backbone   PWTP forward+backward vs the backbone's forward+backward on the same batch,
                     plus FLOPs and parameters of both (paper: 0.23 G vs 42.9 G multiply-adds).
  mgda_vs_constant   one MGDA training step vs one constant-lambda step on the same batch.
  da_vs_flow         DA extraction per clip vs optical flow over the same frames: torchvision's
                     RAFT-small where torchvision imports (random weights: only speed matters),
                     and always a classical Horn-Schunck flow written here in torch.
  loader_vs_step     clips/s of the data loader (2 workers) vs clips/s of the training step, on
                     the synthetic set.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import data
from backbones import build_model
from mgda import JointTraining
from pwtp import PWTP

HERE = os.path.dirname(os.path.abspath(__file__))

GOALS = {
    "pwtp_vs_backbone": ("PWTP time <= 2% of the backbone's", lambda r: r <= 0.02),
    "mgda_vs_constant": ("MGDA step <= 1.10x a constant-lambda step", lambda r: r <= 1.10),
    "da_vs_raft": ("DA >= 50x faster than RAFT-small", lambda r: r >= 50),
    "da_vs_hornschunck": ("(no goal; classical flow for scale)", lambda r: True),
    "loader_vs_step": ("loader >= 2x the training step rate", lambda r: r >= 2),
}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timeit(fn, device, reps=3, warmup=1):
    """Median wall time of fn() over `reps` runs after `warmup` runs (seconds). On CUDA, where a run
    takes milliseconds, 3x more of each (cuDNN's algorithm search and the allocator settle first)."""
    if device.type == "cuda":
        reps, warmup = 3 * reps, 3 * warmup
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def macs(fn):
    """Multiply-adds of fn() counted by torch.utils.flop_counter (it counts 2 FLOPs per MAC)."""
    with FlopCounterMode(display=False) as fc:
        fn()
    return fc.get_total_flops() / 2


def n_params(m):
    return sum(p.numel() for p in m.parameters())


# ---------------------------------------------------------------------------------------------
# PWTP vs the backbone
# ---------------------------------------------------------------------------------------------
def bench_pwtp_vs_backbone(device, size, segments, frames, small, depth, reps):
    """Both measured on the same batch of one clip (S segments of T frames)."""
    model = build_model("tsm", 174, input="da", segments=segments, frames=frames, depth=depth,
                        small=small, crop_size=size).to(device)
    clip = torch.randn(1, segments * frames, 3, size, size, device=device)
    segs = clip.view(segments, frames, 3, size, size)
    da = model.pwtp(segs).da.detach()                                  # (S, C, H, W) the backbone's input

    def pwtp_step():
        out = model.pwtp(segs)
        (out.da.mean() + out.enopr.mean()).backward()

    def backbone_step():
        model.net(da).sum().backward()

    t_p, t_b = timeit(pwtp_step, device, reps), timeit(backbone_step, device, reps)
    with torch.no_grad():
        m_p, m_b = macs(lambda: model.pwtp(segs)), macs(lambda: model.net(da))
    return {"setting": f"TSM-R{depth}{' small' if small else ''}, S={segments}, T={frames}, {size}^2, {device.type}",
            "pwtp_s": t_p, "backbone_s": t_b, "ratio": t_p / t_b,
            "pwtp_gmacs": m_p / 1e9, "backbone_gmacs": m_b / 1e9,
            "pwtp_params": n_params(model.pwtp), "backbone_params": n_params(model.net)}


# ---------------------------------------------------------------------------------------------
# One MGDA step vs one constant-lambda step
# ---------------------------------------------------------------------------------------------
def bench_mgda_vs_constant(device, size, segments, frames, small, depth, batch, reps):
    model = build_model("tsm", 10, segments=segments, frames=frames, depth=depth, small=small,
                        crop_size=size).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    clip = torch.randn(batch, segments * frames, 3, size, size, device=device)
    label = torch.randint(0, 10, (batch,), device=device)

    def step(jt):
        out = model(clip)
        loss_c = F.cross_entropy(out.logits, label)
        jt.backward(model, loss_c, out.pwtp.enopr.mean(), 0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    # Interleaved, so that neither strategy always runs first (caches, allocator, CPU clocks).
    mgda_jt, const_jt = JointTraining("mgda"), JointTraining("constant", lam=1.0)
    t_m, t_c = [], []
    for _ in range(max(3, reps)):
        t_m.append(timeit(lambda: step(mgda_jt), device, 1))
        t_c.append(timeit(lambda: step(const_jt), device, 1))
    t_m, t_c = statistics.median(t_m), statistics.median(t_c)
    return {"setting": f"TSM-R{depth}{' small' if small else ''}, batch {batch}, S={segments}, T={frames}, {size}^2",
            "mgda_s": t_m, "constant_s": t_c, "ratio": t_m / t_c}


# ---------------------------------------------------------------------------------------------
# DA vs optical flow
# ---------------------------------------------------------------------------------------------
def horn_schunck(frames: torch.Tensor, alpha: float = 1.0, iters: int = 100) -> torch.Tensor:
    """Classical Horn-Schunck optical flow between consecutive frames.

    frames: (F, 3, H, W) RGB in any range -> flow (F-1, 2, H, W).
    Minimises the brightness-constancy error plus alpha^2 times the flow's smoothness with the
    original Jacobi iterations: u <- u_avg - I_x (I_x u_avg + I_y v_avg + I_t) / (alpha^2 + I_x^2 + I_y^2).
    Written here so that the comparison with a flow method runs on every machine.
    """
    gray = frames.mean(1, keepdim=True)                              # (F, 1, H, W)
    a, b = gray[:-1], gray[1:]                                       # consecutive pairs
    kx = torch.tensor([[-1.0, 1.0], [-1.0, 1.0]], device=frames.device).view(1, 1, 2, 2) / 4
    ky = torch.tensor([[-1.0, -1.0], [1.0, 1.0]], device=frames.device).view(1, 1, 2, 2) / 4
    pad = lambda t: F.pad(t, (0, 1, 0, 1), mode="replicate")
    Ix = F.conv2d(pad(a), kx) + F.conv2d(pad(b), kx)
    Iy = F.conv2d(pad(a), ky) + F.conv2d(pad(b), ky)
    It = b - a
    avg = torch.tensor([[1, 2, 1], [2, 0, 2], [1, 2, 1]], dtype=frames.dtype, device=frames.device).view(1, 1, 3, 3) / 12
    u, v = torch.zeros_like(a), torch.zeros_like(a)
    denom = alpha ** 2 + Ix ** 2 + Iy ** 2
    for _ in range(iters):
        ub, vb = F.conv2d(F.pad(u, (1, 1, 1, 1), mode="replicate"), avg), F.conv2d(F.pad(v, (1, 1, 1, 1), mode="replicate"), avg)
        common = (Ix * ub + Iy * vb + It) / denom
        u, v = ub - Ix * common, vb - Iy * common
    return torch.cat([u, v], 1)


def raft_small_or_reason(device):
    """torchvision's RAFT-small with random weights, or the reason it is unavailable here."""
    try:
        from torchvision.models.optical_flow import raft_small   # optional extra, guarded
    except Exception as e:  # ImportError, or OSError/RuntimeError from its compiled ops beside CPU torch
        return None, f"torchvision not importable here ({type(e).__name__}: {str(e).splitlines()[0][:80]})"
    return raft_small(weights=None).eval().to(device), None


def bench_da_vs_flow(device, size, segments, frames, reps, hs_iters=100, raft=True):
    """Per clip of S segments x T frames: DA (PWTP forward) vs flow between consecutive frames of
    each segment (S*(T-1) pairs: the same raw frames)."""
    pwtp = PWTP(frames=frames).to(device).eval()
    clip = torch.randn(segments, frames, 3, size, size, device=device)
    with torch.no_grad():
        t_da = timeit(lambda: pwtp(clip), device, reps)
        pairs = clip.flatten(0, 1)                                   # (S*T, 3, H, W)
        t_hs = timeit(lambda: [horn_schunck(seg, iters=hs_iters) for seg in clip], device, max(1, reps // 2))
        # RAFT needs torchvision, an optional extra (its PyPI build may not load beside a CPU torch).
        raft, reason = raft_small_or_reason(device) if raft else (None, "skipped (--no-raft)")
        t_raft = None
        if raft is not None:
            s8 = max(128, size // 8 * 8)
            img = F.interpolate(pairs, size=(s8, s8)).clamp(-1, 1)
            a, b = img.view(segments, frames, 3, s8, s8)[:, :-1].flatten(0, 1), img.view(segments, frames, 3, s8, s8)[:, 1:].flatten(0, 1)
            t_raft = timeit(lambda: raft(a, b), device, max(1, reps // 2))
    return {"setting": f"S={segments}, T={frames}, {size}^2, {device.type}; Horn-Schunck {hs_iters} iterations",
            "da_s": t_da, "hornschunck_s": t_hs, "ratio_hs": t_hs / t_da,
            "raft_small_s": t_raft, "ratio_raft": None if t_raft is None else t_raft / t_da,
            "raft_note": reason or "random weights; input resized to a multiple of 8, at least 128^2"}


# ---------------------------------------------------------------------------------------------
# Loader vs training step, on the synthetic set
# ---------------------------------------------------------------------------------------------
def bench_loader_vs_step(device, root, size, segments, frames, batch, batches, workers=2):
    loaders = data.build_loaders("synthetic", root, segments=segments, frames=frames, crop_size=size,
                                 batch_size=batch, workers=workers, seed=0)
    it = iter(loaders.train)
    first = next(it)                                                 # workers started, first batch in
    t0, n = time.perf_counter(), 0
    for _ in range(batches):
        try:
            clip, _ = next(it)
        except StopIteration:
            break
        n += clip.shape[0]
    loader_cps = n / max(1e-9, time.perf_counter() - t0)
    del it

    model = build_model("tsm", loaders.num_classes, segments=segments, frames=frames, depth=18, small=True,
                        crop_size=size).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    jt = JointTraining("mgda")
    clip, label = first[0].to(device), first[1].to(device)

    def step():
        out = model(clip)
        jt.backward(model, F.cross_entropy(out.logits, label), out.pwtp.enopr.mean(), 0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    step_cps = clip.shape[0] / timeit(step, device, reps=3)
    return {"setting": f"synthetic, batch {batch}, S={segments}, T={frames}, {size}^2, {workers} workers; step: TSM-R18 small + MGDA",
            "loader_clips_per_s": loader_cps, "step_clips_per_s": step_cps, "ratio": loader_cps / step_cps}


# ---------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------
def run_bench(args):
    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(0)
    q = args.quick
    res = {"device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(), "quick": q}
    cpu_size, reps = (32, 1) if q else (112, 3)
    res["pwtp_vs_backbone"] = [bench_pwtp_vs_backbone(device, cpu_size, 4 if q else 8, 4 if q else 6, True, 18, reps)]
    if not q and not args.skip_full:
        res["pwtp_vs_backbone"].append(bench_pwtp_vs_backbone(device, 224, 8, 6, False, 50, reps))
    res["mgda_vs_constant"] = [bench_mgda_vs_constant(device, cpu_size, 4 if q else 8, 4 if q else 6, True, 18,
                                                      2 if q else 4, reps)]
    if not q and not args.skip_full:   # the paper's setting: the overhead of MGDA is PWTP's extra backward
        res["mgda_vs_constant"].append(bench_mgda_vs_constant(device, 224, 8, 6, False, 50, 2, reps))
    res["da_vs_flow"] = bench_da_vs_flow(device, cpu_size if q else 224, 2 if q else 8, 4 if q else 6, reps,
                                         hs_iters=10 if q else 100, raft=not args.no_raft)
    root = args.data_root or (os.path.join(tempfile.mkdtemp(), "synth") if q else data.default_synthetic_root())
    if q:
        data.write_synthetic(root, classes=2, videos_per_class=4, size=32, frames=16, seed=0)
    res["loader_vs_step"] = bench_loader_vs_step(device, root, 32 if q else 64, 2 if q else 4, 4 if q else 4,
                                                 2 if q else 8, 2 if q else 10, workers=args.workers)
    print_table(res)
    with open(args.out + ".tmp", "w") as f:
        json.dump(res, f, indent=2)
    os.replace(args.out + ".tmp", args.out)
    print(f"\nwrote {args.out}")
    return res


def print_table(res):
    rows = []
    for r in res["pwtp_vs_backbone"]:
        rows.append(("pwtp_vs_backbone", r["setting"],
                     f"PWTP {r['pwtp_s'] * 1e3:.1f} ms vs backbone {r['backbone_s'] * 1e3:.1f} ms "
                     f"({r['pwtp_gmacs']:.3f} vs {r['backbone_gmacs']:.2f} G MACs, {r['pwtp_params']:,} vs {r['backbone_params']:,} params)",
                     r["ratio"], f"{100 * r['ratio']:.2f}%"))
    for r in res["mgda_vs_constant"]:
        rows.append(("mgda_vs_constant", r["setting"], f"MGDA {r['mgda_s'] * 1e3:.1f} ms vs constant {r['constant_s'] * 1e3:.1f} ms",
                     r["ratio"], f"{r['ratio']:.2f}x"))
    r = res["da_vs_flow"]
    if r["ratio_raft"] is None:
        rows.append(("da_vs_raft", r["setting"], f"RAFT-small: {r['raft_note']}", None, "n/a"))
    else:
        rows.append(("da_vs_raft", r["setting"], f"DA {r['da_s'] * 1e3:.1f} ms vs RAFT-small {r['raft_small_s'] * 1e3:.1f} ms",
                     r["ratio_raft"], f"{r['ratio_raft']:.0f}x"))
    rows.append(("da_vs_hornschunck", r["setting"], f"DA {r['da_s'] * 1e3:.1f} ms vs Horn-Schunck {r['hornschunck_s'] * 1e3:.1f} ms",
                 r["ratio_hs"], f"{r['ratio_hs']:.0f}x"))
    r = res["loader_vs_step"]
    rows.append(("loader_vs_step", r["setting"], f"loader {r['loader_clips_per_s']:.1f} clips/s vs step {r['step_clips_per_s']:.1f} clips/s",
                 r["ratio"], f"{r['ratio']:.2f}x"))
    print(f"device: {res['device']}, torch {res['torch']}, {res['threads']} threads{' (quick mode: tiny sizes)' if res['quick'] else ''}\n")
    for key, setting, fig, ratio, shown in rows:
        goal, ok = GOALS[key]
        met = "n/a" if ratio is None else ("met" if ok(ratio) else "MISSED")
        print(f"{key:18s} {shown:>8s}  [{met}] goal: {goal}\n{'':18s} {fig}\n{'':18s} ({setting})")
    res["goals"] = {key: {"goal": GOALS[key][0], "ratio": ratio, "met": None if ratio is None else bool(GOALS[key][1](ratio))}
                    for key, _, _, ratio, _ in rows}


# ---------------------------------------------------------------------------------------------
# The paper's claims on the synthetic set
# ---------------------------------------------------------------------------------------------
CLAIM_RUNS = [  # (name, train.py arguments)
    ("RGB baseline", ["--input", "rgb"]),
    ("DA, recognition (lambda=0)", ["--input", "da", "--joint", "recognition"]),
    ("DA, separate", ["--input", "da", "--joint", "separate"]),
    ("DA, constant (lambda=1)", ["--input", "da", "--joint", "constant", "--lam", "1"]),
    ("DA, scheduler (Eq. 13)", ["--input", "da", "--joint", "scheduler"]),
    ("DA, MGDA", ["--input", "da", "--joint", "mgda"]),
    ("RGB difference", ["--input", "rgbdiff"]),
    ("dynamic image", ["--input", "dynimg"]),
]


def run_claims(args):
    """Train each configuration with the same budget on the synthetic set, for several seeds,
    through train.py itself (so the claims are about the code a user runs)."""
    out_root = args.out_dir or tempfile.mkdtemp(prefix="da-claims-")
    table = []
    for name, extra in CLAIM_RUNS:
        top1, enoprs = [], []
        for seed in range(args.seeds):
            run_dir = os.path.join(out_root, f"{name.split(',')[0].replace(' ', '_')}_{'_'.join(extra[1::2])}_s{seed}")
            cmd = [sys.executable, os.path.join(HERE, "train.py"), "--seed", str(seed), "--out", run_dir,
                   "--epochs", str(args.epochs)] + extra + args.train_args
            if args.data_root:
                cmd += ["--data-root", args.data_root]
            t0 = time.time()
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"bench.py claims: {' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
            with open(os.path.join(run_dir, "metrics.json")) as f:
                last = json.load(f)[-1]
            top1.append(last["val_top1"])
            if last.get("val_enopr") is not None:
                enoprs.append(last["val_enopr"])
            print(f"  {name:28s} seed {seed}: top-1 {last['val_top1']:.1f}%  ENoPR {last.get('val_enopr')}  ({time.time() - t0:.0f} s)", flush=True)
        row = {"name": name, "args": extra, "top1": top1, "enopr": enoprs,
               "top1_mean": statistics.mean(top1), "top1_std": statistics.pstdev(top1),
               "enopr_mean": statistics.mean(enoprs) if enoprs else None}
        table.append(row)
    print(f"\n| representation / joint training | top-1 (%) mean ± std over {args.seeds} seeds | ENoPR |")
    print("|---|---|---|")
    for r in table:
        en = "–" if r["enopr_mean"] is None else f"{r['enopr_mean']:.3f}"
        print(f"| {r['name']} | {r['top1_mean']:.1f} ± {r['top1_std']:.1f} | {en} |")
    with open(args.out, "w") as f:
        json.dump({"command": " ".join(sys.argv), "epochs": args.epochs, "seeds": args.seeds,
                   "train_args": args.train_args, "table": table}, f, indent=2)
    print(f"\nwrote {args.out}")
    return table


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", nargs="?", default="bench", choices=["bench", "claims"])
    p.add_argument("--quick", action="store_true", help="tiny sizes, a few seconds (the test suite's mode)")
    p.add_argument("--skip-full", action="store_true", help="skip the full-size TSM-R50 224^2 row (slow on CPU)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--no-raft", action="store_true",
                   help="do not try torchvision's RAFT-small in the flow row (the tests never import torchvision)")
    p.add_argument("--workers", type=int, default=2, help="loader workers for the loader row")
    p.add_argument("--data-root", default=None, help="synthetic set root (default: data.py's cache folder)")
    p.add_argument("--out", default=None, help="JSON output (bench.json / claims.json)")
    p.add_argument("--seeds", type=int, default=3, help="claims: seeds per configuration")
    p.add_argument("--epochs", type=int, default=30, help="claims: epochs per run (same for every run; 30 = the quick start)")
    p.add_argument("--out-dir", default=None, help="claims: where the runs go (default: a temp folder)")
    argv = list(sys.argv[1:] if argv is None else argv)
    # claims: everything after a bare `--` goes to train.py unchanged (e.g. -- --frames 8)
    train_args = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    args = p.parse_args(argv)
    args.train_args = train_args
    args.out = args.out or ("claims.json" if args.mode == "claims" else "bench.json")
    return run_claims(args) if args.mode == "claims" else run_bench(args)


if __name__ == "__main__":
    main()
