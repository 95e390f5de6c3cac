"""`python bench.py`: the speed and cost of dynamic appearance, as ratios measured in one run.

Why ratios and not seconds: absolute times depend on the machine; the paper's efficiency claims
are relative (PWTP is a small fraction of the backbone, MGDA costs little more than a weighted
sum, DA is much cheaper than optical flow), and ratios measured in one run on one machine carry
over. Each row prints the goal beside the figure, and whether it is met. The measured table is in
docs/SPEED.md.

Rows:
  pwtp_vs_backbone   PWTP forward+backward vs the backbone's forward+backward on the same batch,
                     plus FLOPs and parameters of both (paper: 0.23 G vs 42.9 G multiply-adds).
  mgda_vs_constant   train.train_step with --joint mgda vs --joint constant on the same batch (label
                     smoothing, clipping, GradScaler, SGD: train.py's step itself). Both include the
                     logged ||g_c||, ||g_p||, cos (JointTraining's stats=True, as train.py runs), which
                     makes constant take g_c and g_p separately too; the row also shows constant
                     without them (one backward of L_c + lambda L_p).
  da_vs_flow         DA extraction per clip vs optical flow over the same frames: torchvision's
                     RAFT-small where torchvision imports (random weights: only speed matters),
                     and always a classical Horn-Schunck flow written here in torch.
  loader_vs_step     clips/s of train.py's synthetic training loader (2 workers) vs clips/s of
                     train.train_step on its batches (train.build_run builds both).
"""
import argparse
import os
import statistics
import tempfile
import time

import av
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import data
import mgda
import train
from backbones import build_model
from pwtp import PWTP
from support import prepare, synthetic
from support.system import AMP_DTYPES, atomic_json, resolve_device

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
# train.py's own step, on a model of our choosing
# ---------------------------------------------------------------------------------------------
def train_args(flags):
    """train.py's flags for `flags` (its parser, then its defaults: label smoothing 0.1, gradient
    clipping at 20, the optimiser groups, ...), as train.py itself would complete them for a run
    from random weights. Nothing is read or written."""
    return train.resolve_defaults(train.build_parser().parse_args([str(f) for f in flags]), 1, "none")


def timing_run(args, device, amp=None, num_classes=10):
    """A train.Run around a fresh model, for timing train.train_step on random clips, as train.py
    builds it for a run (train.make_run: optimiser groups, LR schedule, joint training, GradScaler on
    for fp16 only). No loaders: the step never touches them. A long schedule (10^5 steps per epoch),
    so warm-up and decay do not matter."""
    model = build_model(args.backbone, num_classes, input=args.input, segments=args.segments,
                        frames=args.frames, proj_dim=args.proj_dim, depth=args.depth, dropout=args.dropout,
                        small=args.small, crop_size=args.crop_size).to(device)
    args.amp = {torch.float16: "fp16", torch.bfloat16: "bf16"}.get(amp)
    return train.make_run(args, model, 10 ** 5, device, 0, 1, lambda *a: None)


class Stepper:
    """Calls train.train_step(run, clip, labels, step) with a running step counter."""

    def __init__(self, run, clip, labels, log=False):
        self.run, self.clip, self.labels, self.step, self.log = run, clip, labels, 0, log

    def __call__(self):
        train.train_step(self.run, self.clip, self.labels, self.step, log=self.log)
        self.step += 1


# ---------------------------------------------------------------------------------------------
# One MGDA step vs one constant-lambda step
# ---------------------------------------------------------------------------------------------
def bench_mgda_vs_constant(device, size, segments, frames, small, depth, batch, reps, amp=None):
    """train.train_step with --joint mgda vs --joint constant on the same model and batch: forward,
    L_c with label smoothing, L_p, mgda.JointTraining, gradient clipping, the GradScaler and the SGD
    step, exactly as train.py runs a step that writes no log line: constant takes one backward of
    L_c + lambda L_p, MGDA one more through PWTP (g_p apart from g_c). A logged step also computes
    ||g_c||, ||g_p|| and cos; the row times constant's logged step too, to show what they cost."""
    args = train_args(["--joint", "mgda", "--segments", segments, "--frames", frames, "--crop-size", size,
                       "--depth", depth, "--small" if small else "--no-small", "--batch-size", batch])
    run = timing_run(args, device, amp)
    clip = torch.randn(batch, segments * frames, 3, size, size, device=device)
    labels = torch.randint(0, 10, (batch,), device=device)
    constant = mgda.JointTraining(run.model.shared_parameters(), run.model.recognition_parameters(), "constant")
    steppers = {"mgda": Stepper(run, clip, labels), "constant": Stepper(run._replace(joint=constant), clip, labels),
                "constant_logged": Stepper(run._replace(joint=constant), clip, labels, log=True)}
    # Interleaved, so that no strategy always runs first (caches, allocator, CPU clocks).
    times = {k: [] for k in steppers}
    for _ in range(max(3, reps)):
        for k, step in steppers.items():
            times[k].append(timeit(step, device, 1))
    t = {k: statistics.median(v) for k, v in times.items()}
    return {"setting": f"TSM-R{depth}{' small' if small else ''}, batch {batch}, S={segments}, T={frames}, "
                       f"{size}^2{', ' + str(amp).replace('torch.', '') if amp else ''}; train.train_step "
                       "(label smoothing, clip 20, GradScaler, SGD), a step that writes no log line",
            "mgda_s": t["mgda"], "constant_s": t["constant"], "constant_logged_s": t["constant_logged"],
            "ratio": t["mgda"] / t["constant"]}


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
def loader_clips_per_s(device, root, flags, batches):
    """The run train.py builds (train.build_run) on the dataset at `root`, and the clips/s its training
    loader delivers over `batches` batches, timed after the first one (the workers are up).
    Returns (clips/s, run, first batch)."""
    run = train.build_run(train_args(flags + ["--data-root", root]), 0, 1, device, lambda *a: None)
    it = iter(run.loaders.train)
    first = next(it)
    t0, n = time.perf_counter(), 0
    for _ in range(batches):
        try:
            clip, _ = next(it)
        except StopIteration:
            break
        n += clip.shape[0]
    del it
    return n / max(1e-9, time.perf_counter() - t0), run, first


def bench_loader_vs_step(device, root, size, segments, frames, batch, batches, workers=2, gop=4):
    """The run train.py builds for the synthetic set (train.build_run: its loaders, TSM-R18 small,
    its default joint strategy), at the given sizes: clips/s its training loader delivers vs clips/s
    of train.train_step on one of its batches. Per worker, the loader on the plain videos, on a copy
    prepared by `python data.py prepare --gop {gop}` (a key frame every `gop` frames), and a bare PyAV
    loop decoding the same clips' frames (from each video's start to its last sampled frame, needed
    frames converted to RGB, no transforms, one process): what one worker could reach without seeking."""
    flags = ["--dataset", "synthetic", "--segments", segments, "--frames", frames, "--crop-size", size,
             "--batch-size", batch, "--workers", workers]
    loader_cps, run, first = loader_clips_per_s(device, root, flags, batches)
    with tempfile.TemporaryDirectory() as tmp:
        prepare.prepare(root, os.path.join(tmp, "prepared"), gop=gop, workers=1, log=lambda *a: None)
        prepared_cps, _, _ = loader_clips_per_s(device, os.path.join(tmp, "prepared"), flags, batches)
    ds = run.loaders.train.dataset
    order = run.loaders.train_sampler.indices()[: max(1, batches) * batch]

    def raw_decode():
        for k in order:
            path = ds.samples[k][0]
            idx = data.sparse_indices(data.count_frames(path), segments, frames, True, np.random.default_rng(k))
            want, last = set(idx.tolist()), int(idx.max())
            with av.open(path) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                for i, f in enumerate(container.decode(stream)):
                    if i in want:
                        f.to_ndarray(format="rgb24")
                    if i >= last:
                        break
    raw_cps = len(order) / timeit(raw_decode, torch.device("cpu"), reps=1)
    step_cps = first[0].shape[0] / timeit(Stepper(run, first[0], first[1]), device, reps=3)
    per = max(1, workers)
    return {"setting": f"synthetic, batch {batch}, S={segments}, T={frames}, {size}^2, {workers} workers; "
                       f"step: train.train_step, TSM-R18 small, --joint {run.args.joint} (train.py's synthetic "
                       f"default); prepared: --gop {gop}; raw PyAV: one process",
            "loader_clips_per_s": loader_cps, "step_clips_per_s": step_cps, "ratio": loader_cps / step_cps,
            "workers": workers, "prepared_loader_clips_per_s": prepared_cps,
            "per_worker_clips_per_s": {"plain": loader_cps / per, "prepared": prepared_cps / per,
                                       "raw_pyav": raw_cps}}


# ---------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------
def run_bench(args):
    device = resolve_device(args.device, prog="bench.py")
    amp = AMP_DTYPES[args.amp] if args.amp else None
    torch.manual_seed(0)
    q = args.quick
    res = {"device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(), "quick": q}
    cpu_size, reps = (32, 1) if q else (112, 3)
    res["pwtp_vs_backbone"] = [bench_pwtp_vs_backbone(device, cpu_size, 4 if q else 8, 4 if q else 6, True, 18, reps)]
    if not q and not args.skip_full:
        res["pwtp_vs_backbone"].append(bench_pwtp_vs_backbone(device, 224, 8, 6, False, 50, reps))
    res["mgda_vs_constant"] = [bench_mgda_vs_constant(device, cpu_size, 4 if q else 8, 4 if q else 6, True, 18,
                                                      2 if q else 4, reps, amp)]
    if not q and not args.skip_full:   # the paper's setting, TSM-R50 8x6 at 224^2
        res["mgda_vs_constant"].append(bench_mgda_vs_constant(device, 224, 8, 6, False, 50, 2, reps, amp))
    res["da_vs_flow"] = bench_da_vs_flow(device, cpu_size if q else 224, 2 if q else 8, 4 if q else 6, reps,
                                         hs_iters=10 if q else 100, raft=not args.no_raft)
    root = args.data_root or (os.path.join(tempfile.mkdtemp(), "synth") if q else synthetic.default_synthetic_root())
    if q:
        synthetic.write_synthetic(root, classes=2, videos_per_class=4, size=32, frames=16, seed=0)
    res["loader_vs_step"] = bench_loader_vs_step(device, root, 32 if q else 64, 2 if q else 4, 4 if q else 4,
                                                 2 if q else 8, 2 if q else 10, workers=args.workers)
    print_table(res)
    atomic_json(res, args.out)
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
        rows.append(("mgda_vs_constant", r["setting"],
                     f"MGDA {r['mgda_s'] * 1e3:.1f} ms vs constant {r['constant_s'] * 1e3:.1f} ms "
                     f"(constant's logged step, with ||g_c||, ||g_p||, cos: {r['constant_logged_s'] * 1e3:.1f} ms)",
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


def build_parser():
    p = argparse.ArgumentParser(prog="bench.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny sizes, a few seconds (the test suite's mode)")
    p.add_argument("--skip-full", action="store_true", help="skip the full-size TSM-R50 224^2 rows (slow on CPU)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:K")
    p.add_argument("--amp", nargs="?", const="bf16", default=None, choices=AMP_DTYPES,
                   help="the MGDA/constant steps under autocast bf16 (plain --amp) or fp16 (with the GradScaler)")
    p.add_argument("--no-raft", action="store_true",
                   help="do not try torchvision's RAFT-small in the flow row (the tests never import torchvision)")
    p.add_argument("--workers", type=int, default=2, help="loader workers for the loader row")
    p.add_argument("--data-root", default=None, help="synthetic set root (default: data.py's cache folder)")
    p.add_argument("--out", default="bench.json", help="JSON output (default bench.json)")
    return p


def main(argv=None):
    """python bench.py [flags]: the table, printed and written to --out."""
    return run_bench(build_parser().parse_args(argv))
