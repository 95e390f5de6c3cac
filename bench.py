"""Speed and cost of dynamic appearance, as ratios measured in one run, and the paper's claims.

    python bench.py              # the speed/cost table (a CPU-sized setting, plus the paper's
                                 # TSM-R50 8x6 224^2 setting), written to bench.json
    python bench.py --quick      # tiny sizes, a few seconds (what the test suite runs)
    python bench.py claims       # the evidence for the paper's claims (below), claims.json + .png
    python bench.py claims --table claims.json     # its tables and verdicts again, no training
    python bench.py claims --table a.json b.json --out all.json   # several claims runs as one report
    python bench.py reproduce    # REPRODUCE.md's tables: each paper table as commands, with their cost

Why ratios and not seconds: absolute times depend on the machine; the paper's efficiency claims
are relative (PWTP is a small fraction of the backbone, MGDA costs little more than a weighted
sum, DA is much cheaper than optical flow), and ratios measured in one run on one machine carry
over. Each row prints the goal beside the figure, and whether it is met.

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

`bench.py claims`: can the paper's claims fail here? Two tables, each trained through `python
train.py` (a subprocess: the code a user runs) and tested by its last validation (the single-view test
of `python evaluate.py`, on the same list), on synthetic sets written for the purpose
(support/synthetic.py; CONDITIONS): each set's training list shows a class on its own background for a
fraction rho of its videos, and its test list crosses every class with every background, so one list
gives aligned (own background) and conflicting top-1.
  scene-balanced table  rho = 1/4: no background says anything about the class. Claims (a) DA beats RGB,
                        (c) joint beats separate training, (d) MGDA >= constant lambda (non-inferiority),
                        (e) Fig. 3 (Spearman). A row counts only where it clearly leaves chance.
  static-bias table     rho = 0.9 with camera jitter, 0.9 with a still camera, and 0.7: claim (b), DA
                        beats RGB on the conflicting videos, judged only in conditions where the positive
                        control (RGB difference) reads motion and the negative control (RGB) does not.
Per row: top-1, aligned and conflicting top-1, whether it leaves chance, DA's final DC gain s, ENoPR and
mean alpha, mean ± std over seeds; verdicts by RULE (seeds paired, t intervals, a 5-point minimum effect,
a binomial floor on the spread).
    python bench.py claims                                  # both tables, 3 seeds
    python bench.py claims --tables static-bias --seeds 5   # one table, more seeds
    python bench.py claims --conditions balanced --rows RGB --seeds 2 -- --workers 1
Runs go to claims_runs/ (--out-dir); rerunning the same command continues or reuses them. Each run's wall
time is recorded in claims.json, and the progress lines print an ETA from the runs so far. A run takes
30-70 s on 2 CPU cores (torch 2.13; only Fig. 3's row validates after every epoch), and the full
default (34 row-conditions x 3 seeds = 102 runs) took 79.7 min there (about 74 at the speed the same
machine had on another day); README gives it, the 5-seed extensions and two 30-epoch balanced
tables (lr 0.01 and 0.005), with their commands and wall times.
"""
import argparse
import csv
import functools
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import data
import mgda
import train
from backbones import build_model
from support import synthetic
from support.system import AMP_DTYPES, atomic_json, fmt_time, resolve_device
from pwtp import PWTP

HERE = os.path.dirname(os.path.abspath(__file__))

GOALS = {
    "pwtp_vs_backbone": ("PWTP time <= 2% of the backbone's", lambda r: r <= 0.02),
    "mgda_vs_constant": ("MGDA step <= 1.10x a constant-lambda step", lambda r: r <= 1.10),
    "da_vs_raft": ("DA >= 50x faster than RAFT-small", lambda r: r >= 50),
    "da_vs_hornschunck": ("(no goal; classical flow for scale)", lambda r: True),
    "loader_vs_step": ("loader >= 2x the training step rate", lambda r: r >= 2),
}


# ---------------------------------------------------------------------------------------------
# `bench.py claims`: what is trained, and what is claimed (the functions are at the end)
# ---------------------------------------------------------------------------------------------
# Rows: name -> train.py arguments. Between rows only the representation and the joint training
# change; every other flag is train.py's synthetic default (SYNTHETIC_DEFAULTS: TSM-R18 small, S = 4,
# T = 4, 64^2, batch 8), BUDGET's --epochs/--lr, and what follows `--`.
ROWS = {
    "RGB": ["--input", "rgb"],
    "RGB difference": ["--input", "rgbdiff"],
    "DA recognition": ["--input", "da", "--joint", "recognition"],          # L_c alone: Fig. 3
    # PWTP first fitted to L_p alone (the paper's unsupervised use of PWTP), then frozen. run_one puts
    # separate_epochs() epochs in front of the budget, so its backbone gets as many steps as any other's.
    "DA separate": ["--input", "da", "--joint", "separate"],
    **{f"DA constant {lam}": ["--input", "da", "--joint", "constant", "--lam", str(lam)] for lam in (1, 3, 10, 30)},
    "DA mgda": ["--input", "da", "--joint", "mgda", "--mgda-normalize", "none", "--mgda-space", "params"],
    "DA mgda loss+": ["--input", "da", "--joint", "mgda", "--mgda-normalize", "loss+", "--mgda-space", "params"],
}
# Conditions: one synthetic set each (support/synthetic.py), written once beside the runs. Every row
# trains on its split-6 training list (SET["bias_train"] videos per class, a fraction rho of them on
# the class's own background) and is tested on its split-6 crossed list (SET["crossed"] videos of every
# class on every background: 4 x 4 x 15 = 240 videos, 60 aligned and 180 conflicting), so aligned and
# conflicting top-1 come from the same videos. rho = 1/4 = 1/classes puts every background equally
# often in every class: the scene-balanced condition. Splits 1-5 of these sets are kept minimal.
SET = {"classes": 4, "videos_per_class": 4, "bias_train": 60, "bias_test": 1, "crossed": 15}
SPLIT = 6
CONDITIONS = {
    "balanced": {"bias": 0.25, "jitter": True},
    "bias 0.9": {"bias": 0.9, "jitter": True},
    "bias 0.9 still": {"bias": 0.9, "jitter": False},     # a still camera: is the jitter what matters?
    "bias 0.7": {"bias": 0.7, "jitter": True},            # a milder cue
}
TABLES = {
    "scene-balanced": {"conditions": ["balanced"],
                       "rows": ["RGB", "RGB difference", "DA recognition", "DA separate", "DA constant 1",
                                "DA constant 3", "DA constant 10", "DA constant 30", "DA mgda", "DA mgda loss+"]},
    "static-bias": {"conditions": ["bias 0.9", "bias 0.9 still", "bias 0.7"],
                    "rows": ["RGB", "RGB difference", "DA constant 1", "DA constant 3", "DA constant 10",
                             "DA constant 30", "DA mgda loss+", "DA separate"]},
}
# The budget (ours, not swept): 10 epochs at lr 0.01, 30-70 s a run on 2 CPU cores. At it
# the RGB difference clearly leaves chance in every condition, RGB does not on the balanced set
# (nor at 30 epochs at this lr; at 30 epochs and lr 0.005 it does, and README's (a) rests on that table:
# three times the runs' length, so not the default). Pass `-- --epochs N --lr X` for others.
BUDGET = {"epochs": 10, "lr": 0.01}
DEFAULT_SEEDS = 3
CONTROLS = ("RGB difference", "RGB")   # (positive, negative) control of every static-bias condition
FIG3_ROW = "DA recognition"            # Fig. 3: PWTP trained with L_c only
BIAS = ["bias 0.9", "bias 0.9 still", "bias 0.7"]
# The claims, each judged on `metric` in its conditions by comparisons of two rows (RULE).
CLAIMS = [
    {"id": "a", "claim": "DA beats RGB", "metric": "top1", "conditions": ["balanced"],
     "pairs": [("DA mgda", "RGB"), ("DA mgda loss+", "RGB"), ("DA constant 1", "RGB")]},
    {"id": "b", "claim": "DA beats RGB on conflicting videos (Sec. 1, static bias)", "metric": "conflict_top1",
     "conditions": BIAS, "pairs": [(r, "RGB") for r in TABLES["static-bias"]["rows"] if r.startswith("DA")]},
    {"id": "c", "claim": "joint training beats separate training", "metric": "top1", "conditions": ["balanced"],
     "pairs": [("DA constant 1", "DA separate"), ("DA mgda", "DA separate"), ("DA mgda loss+", "DA separate")]},
    {"id": "d", "claim": "MGDA >= constant lambda (non-inferior within 5 points)", "metric": "top1",
     "conditions": ["balanced"], "pairs": [("DA mgda", "DA constant 1"), ("DA mgda loss+", "DA constant 1")],
     "test": "noninferiority"},
    {"id": "e", "claim": "Fig. 3: held-out L_c and L_p positively correlated (PWTP trained on L_c only)",
     "metric": "fig3", "conditions": ["balanced"], "pairs": []},
]


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
    """A train.Run around a fresh model, for timing train.train_step on random clips, with what
    train.py builds for a run (train.build_optimization: optimiser groups, LR schedule, joint
    training with its default stats=True, GradScaler on for fp16 only). No loaders: the step never
    touches them. A long schedule (10^5 steps per epoch), so warm-up and decay do not matter."""
    model = build_model(args.backbone, num_classes, input=args.input, segments=args.segments,
                        frames=args.frames, proj_dim=args.proj_dim, depth=args.depth, dropout=args.dropout,
                        small=args.small, crop_size=args.crop_size).to(device)
    args.amp = {torch.float16: "fp16", torch.bfloat16: "bf16"}.get(amp)
    steps_per_epoch = 10 ** 5
    optimizer, scheduler, joint, scaler = train.build_optimization(model, args, steps_per_epoch, device)
    return train.Run(args, "(bench.py: no run folder)", 0, 1, device, amp, None, model, [], optimizer,
                     scheduler, scaler, joint, steps_per_epoch, args.epochs * steps_per_epoch, lambda *a: None)


class Stepper:
    """Calls train.train_step(run, clip, labels, step) with a running step counter."""

    def __init__(self, run, clip, labels):
        self.run, self.clip, self.labels, self.step = run, clip, labels, 0

    def __call__(self):
        train.train_step(self.run, self.clip, self.labels, self.step)
        self.step += 1


# ---------------------------------------------------------------------------------------------
# One MGDA step vs one constant-lambda step
# ---------------------------------------------------------------------------------------------
def bench_mgda_vs_constant(device, size, segments, frames, small, depth, batch, reps, amp=None):
    """train.train_step with --joint mgda vs --joint constant on the same model and batch: forward,
    L_c with label smoothing, L_p, mgda.JointTraining, gradient clipping, the GradScaler and the SGD
    step, exactly as train.py runs them. JointTraining logs ||g_c||, ||g_p|| and cos by default
    (stats=True), so BOTH strategies take g_c and g_p separately (one extra backward through PWTP
    for constant); the row also times constant with stats=False (one backward of L_c + lambda L_p),
    the cheapest weighted sum, to show what the statistics cost."""
    args = train_args(["--joint", "mgda", "--segments", segments, "--frames", frames, "--crop-size", size,
                       "--depth", depth, "--small" if small else "--no-small", "--batch-size", batch])
    run = timing_run(args, device, amp)
    clip = torch.randn(batch, segments * frames, 3, size, size, device=device)
    labels = torch.randint(0, 10, (batch,), device=device)
    strategies = {"mgda": run.joint, "constant": mgda.JointTraining("constant", lam=1.0),
                  "constant_nostats": mgda.JointTraining("constant", lam=1.0, stats=False)}
    steppers = {k: Stepper(run._replace(joint=j), clip, labels) for k, j in strategies.items()}
    # Interleaved, so that no strategy always runs first (caches, allocator, CPU clocks).
    times = {k: [] for k in steppers}
    for _ in range(max(3, reps)):
        for k, step in steppers.items():
            times[k].append(timeit(step, device, 1))
    t = {k: statistics.median(v) for k, v in times.items()}
    return {"setting": f"TSM-R{depth}{' small' if small else ''}, batch {batch}, S={segments}, T={frames}, "
                       f"{size}^2{', ' + str(amp).replace('torch.', '') if amp else ''}; train.train_step "
                       "(label smoothing, clip 20, GradScaler, SGD); both with JointTraining's logged "
                       "||g_c||, ||g_p||, cos (stats=True, as train.py)",
            "mgda_s": t["mgda"], "constant_s": t["constant"], "constant_nostats_s": t["constant_nostats"],
            "ratio": t["mgda"] / t["constant"], "ratio_vs_nostats": t["mgda"] / t["constant_nostats"]}


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
    import tempfile
    import av
    import numpy as np
    from support import prepare
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
                     f"(constant without the logged stats {r['constant_nostats_s'] * 1e3:.1f} ms: "
                     f"MGDA {r['ratio_vs_nostats']:.2f}x that)", r["ratio"], f"{r['ratio']:.2f}x"))
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
# `bench.py claims`: every row trained through train.py and tested by its last validation
# ---------------------------------------------------------------------------------------------
def slug(name):
    return name.lower().replace(" ", "_").replace("+", "plus").replace(".", "")


def select_rows(filters):
    """ROWS' names kept by --rows: a row's exact name (case-insensitive) or, else, a substring of names."""
    names = list(ROWS)
    if not filters:
        return names
    keep = set()
    for f in filters:
        hit = [n for n in names if n.lower() == f.lower()] or [n for n in names if f.lower() in n.lower()]
        if not hit:
            raise SystemExit(f"bench.py claims: --rows {f!r} matches no row; the rows are: {', '.join(names)}")
        keep.update(hit)
    return [n for n in names if n in keep]


def select_runs(a):
    """[(condition, row)] of the tables, conditions and rows asked for, in TABLES' order."""
    rows, out = select_rows(a.rows), []
    for t in a.tables or list(TABLES):
        for cond in TABLES[t]["conditions"]:
            if not a.conditions or cond in a.conditions:
                out += [(cond, r) for r in TABLES[t]["rows"] if r in rows]
    if not out:
        raise SystemExit("bench.py claims: the --tables, --conditions and --rows given select no run")
    return out


def read_json(path, what="bench.py claims"):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise SystemExit(f"{what}: cannot read {path} ({e})") from None


def call(cmd, log_path):
    """Run one command, its output into log_path; a failure stops the benchmark, saying where to look."""
    with open(log_path, "w") as log:
        rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, text=True).returncode
    if rc != 0:
        with open(log_path) as log:
            tail = log.read()[-3000:]
        raise SystemExit(f"bench.py claims: `{' '.join(cmd)}` failed (exit {rc}); its output is in {log_path}:\n{tail}")


def condition_set(a, cond):
    """The synthetic set of a condition (SET with its rho and jitter), written on first use under
    OUT_DIR/sets/ (support/synthetic.py; the same arguments always write the same bytes)."""
    spec = dict(SET, bias_train=a.set_train, crossed=a.set_crossed, **CONDITIONS[cond])
    root = os.path.join(a.out_dir, "sets", f"{slug(cond)}-train{a.set_train}-crossed{a.set_crossed}")
    if not os.path.isfile(os.path.join(root, "synth_meta.json")):
        print(f"  writing the '{cond}' set to {root}", flush=True)
    return synthetic.ensure_synthetic(root, **spec)


def by_alignment(per_video_csv, root):
    """Top-1 (%) and videos on the aligned (own background) and the conflicting videos of the crossed
    list, from a per-video CSV (train.py's val_per_video.csv, evaluate.py's _per_video.csv) and the
    set's synth_meta.json."""
    videos = read_json(os.path.join(root, "synth_meta.json"))["videos"]
    hits = {True: [0, 0], False: [0, 0]}
    with open(per_video_csv, newline="") as f:
        for row in csv.DictReader(f):
            key = "/".join(row["path"].replace("\\", "/").split("/")[-2:])    # Class/v_Class_gNN_c01.avi
            aligned = videos.get(key, {}).get("aligned")
            if aligned is None:
                raise SystemExit(f"bench.py claims: {key} ({per_video_csv}) is not a crossed video of {root}")
            hits[aligned][0] += row["label"] == row["predicted"]
            hits[aligned][1] += 1
    pct = lambda h: 100.0 * h[0] / h[1] if h[1] else None
    return {"aligned_top1": pct(hits[True]), "aligned_videos": hits[True][1],
            "conflict_top1": pct(hits[False]), "conflict_videos": hits[False][1]}


def read_run(run_dir, root):
    """The numbers of one finished run: metrics.json's last validation (the test: the crossed list is
    split 6's validation list; Fig. 3 reads every epoch's) and the val_per_video.csv it wrote, the last
    epoch's mean DC gain s of DA, log.csv's alpha column, and the budget args.json records."""
    metrics = [m for m in read_json(os.path.join(run_dir, "metrics.json")) if not m.get("partial")]
    if not metrics or "val_top1" not in metrics[-1]:
        raise SystemExit(f"bench.py claims: {run_dir}/metrics.json holds no validated last epoch")
    with open(os.path.join(run_dir, "log.csv"), newline="") as f:
        alphas = [float(r["alpha"]) for r in csv.DictReader(f) if r.get("alpha")]
    targs, test = read_json(os.path.join(run_dir, "args.json")), metrics[-1]
    classes = read_json(os.path.join(root, "synth_meta.json"))["classes"]
    return {"epochs": targs["epochs"], "lr": targs["lr"], "classes": len(classes),
            "top1": test["val_top1"], "videos": test["val_videos"],
            **by_alignment(os.path.join(run_dir, "val_per_video.csv"), root),
            "dc_gain": test.get("dc_gain"), "enopr": test.get("val_enopr"),
            "mean_alpha": statistics.mean(alphas) if alphas else None,
            # per epoch, for Fig. 3 (val_loss: the held-out cross-entropy; None where metrics.json has none)
            "val_loss": [m.get("val_loss") for m in metrics], "val_enopr": [m.get("val_enopr") for m in metrics]}


def separate_epochs(epochs):
    """PWTP-only epochs of the `separate` row, put in front of the budget: a quarter of it (ours, as
    train.py's default --separate-epochs)."""
    return max(1, round(epochs / 4))


def train_command(a, cond, name, seed, run_dir, root):
    """train.py's command line of one run; the `separate` row gets separate_epochs() more epochs.
    Only FIG3_ROW validates after every epoch (Fig. 3 needs each epoch's held-out losses); the others
    after the last only (--val-every 0, which leaves training unchanged), the test read_run reads."""
    cmd = [sys.executable, os.path.join(HERE, "train.py"), "--dataset", "synthetic", "--data-root", root,
           "--split", str(SPLIT), "--epochs", str(BUDGET["epochs"]), "--lr", str(BUDGET["lr"]), *ROWS[name],
           "--seed", str(seed), "--out", run_dir, "--resume", "auto", "--val-every", "1" if name == FIG3_ROW else "0",
           *a.train_args]
    if "separate" in ROWS[name]:
        epochs = int(cmd[len(cmd) - cmd[::-1].index("--epochs")])           # the last --epochs given
        cmd += ["--epochs", str(epochs + separate_epochs(epochs)), "--separate-epochs", str(separate_epochs(epochs))]
    return cmd


def run_one(a, cond, name, seed):
    """Train one row for one seed in one condition; its last validation tests the final weights on the
    crossed list. A run folder that already holds the same command is continued (train.py --resume
    auto) or, when finished, reused; one that holds another command is an error. train_s: wall time
    of the call that finished the run, testing included (a continued run counts only its continuation)."""
    run_dir = os.path.join(a.out_dir, slug(cond), slug(name), f"seed{seed}")
    root = condition_set(a, cond)
    train_cmd = train_command(a, cond, name, seed, run_dir, root)
    record_path = os.path.join(run_dir, "bench_run.json")
    if os.path.exists(record_path):
        old = read_json(record_path)
        if old.get("train_cmd", [None])[1:] != train_cmd[1:]:
            raise SystemExit(f"bench.py claims: {run_dir} holds a run of another command "
                             f"({' '.join(old.get('train_cmd', ['?'])[1:])}); pass another --out-dir or remove it")
        if old.pop("done", False):
            return dict(old, reused=True)
    os.makedirs(run_dir, exist_ok=True)
    atomic_json({"row": name, "condition": cond, "seed": seed, "train_cmd": train_cmd}, record_path)
    t0 = time.time()
    call(train_cmd, os.path.join(run_dir, "train.log"))
    rec = {"row": name, "condition": cond, "seed": seed, "run_dir": run_dir, "train_cmd": train_cmd,
           "train_s": time.time() - t0, **read_run(run_dir, root)}
    atomic_json(dict(rec, done=True), record_path)
    return dict(rec, reused=False)


# --- statistics for three-to-five seeds (pure functions; RULE says how they decide) ------------
METRICS = ("top1", "aligned_top1", "conflict_top1", "dc_gain", "enopr", "mean_alpha")
VIDEOS = {"top1": "videos", "aligned_top1": "aligned_videos", "conflict_top1": "conflict_videos"}
LEVEL = 0.95            # two-sided confidence level of every interval (ours)
MIN_EFFECT = 5.0        # points of top-1: a smaller difference is "not shown", however sure (ours)
NI_MARGIN = 5.0         # claim (d): MGDA may sit at most this many points below constant lambda (ours)
RULE = ("Each comparison 'A > B' pairs the two rows by seed (the same seed gives both rows the same data "
        f"order) and takes the two-sided {100 * LEVEL:g} % t interval of the mean per-seed difference A - B, with the "
        "per-seed standard deviation floored at the binomial standard error of a difference of two runs on "
        "the test list (sqrt(p(1-p)/n) for each run, p from the row's mean, n the list's videos), so rows "
        "with no spread cannot pass on any difference. It holds when the interval lies above 0 and the mean "
        f"difference is at least {MIN_EFFECT:g} points, is reversed when the interval lies below 0 and the mean is at "
        f"most -{MIN_EFFECT:g} points, and is not shown otherwise; it needs >= 2 seeds run by both rows. A row 'leaves "
        "chance' when the same test, applied to its top-1 minus chance (25 %) with the binomial floor of one "
        "run, holds. Scene-balanced claims count a comparison only when both rows leave chance; a "
        "static-bias condition is valid only when its positive control (RGB difference) leaves chance on the "
        "conflicting videos and its negative control (RGB) does not, and claim (b) is judged only in valid "
        f"conditions. Claim (d), 'MGDA >= constant lambda', is non-inferiority with a {NI_MARGIN:g}-point margin: it "
        f"holds when the interval lies above -{NI_MARGIN:g} points and is reversed when it lies below -{NI_MARGIN:g}. Claim (e) holds "
        "when the t interval of the per-seed Spearman rho (held-out L_c vs ENoPR over the epochs) lies above "
        "0. A claim holds when all its comparisons hold, is reversed when all are reversed, and holds partly "
        "when some hold. False positives, simulated (tests/test_bench.py; no true difference, per-run "
        "standard deviation 5 points in each row, 120 test videos at 90 %): a comparison holds 0.2 % of the "
        "time with 3 seeds and 1.7 % with 5; a true 10-point difference holds 22 % of the time with 3 seeds "
        "and 66 % with 5.")


def mean_std(values):
    """{"mean", "std", "n"} of the values that are not None; std: sample std (n - 1), None for n < 2."""
    v = [x for x in values if x is not None]
    return {"mean": statistics.mean(v) if v else None, "std": statistics.stdev(v) if len(v) > 1 else None,
            "n": len(v)}


@functools.lru_cache(maxsize=None)
def t_quantile(p: float, df: int) -> float:
    """The p-quantile (0.5 <= p < 1) of Student's t with df degrees of freedom, without scipy: the CDF
    1/2 + integral_0^t of the density by Simpson's rule (2000 panels), inverted by bisection."""
    if not (0.5 <= p < 1 and df >= 1):
        raise ValueError(f"t_quantile: needs 0.5 <= p < 1 and df >= 1, got p={p}, df={df}")
    c = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)
    density = lambda x: c * (1 + x * x / df) ** (-(df + 1) / 2)

    def cdf(t, m=2000):
        h = t / m
        return 0.5 + h / 3 * (density(0) + density(t) + sum((4 if i % 2 else 2) * density(i * h) for i in range(1, m)))

    lo, hi = 0.0, 1.0
    while cdf(hi) < p:
        lo, hi = hi, 2 * hi
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf(mid) < p else (lo, mid)
    return (lo + hi) / 2


def binomial_se(top1: float, videos: int) -> float:
    """The binomial standard error, in points, of a top-1 (%) measured on `videos` test videos:
    sqrt(p (1 - p) / n), with p = (hits + 1) / (n + 2) so that 0 % and 100 % keep a spread. What one
    run's number would vary by if its test list were drawn again."""
    p = (top1 / 100 * videos + 1) / (videos + 2)
    return 100 * math.sqrt(p * (1 - p) / videos)


def paired_interval(diffs, floor: float = 0.0, level: float = LEVEL):
    """The mean of paired differences (or of any per-seed values) and its two-sided t interval,
    with the per-seed standard deviation floored at `floor`. None for fewer than 2 values."""
    n = len(diffs)
    if n < 2:
        return None
    mean, sd = statistics.mean(diffs), statistics.stdev(diffs)
    half = t_quantile(1 - (1 - level) / 2, n - 1) * max(sd, floor) / math.sqrt(n)
    return {"mean": mean, "sd": sd, "floor": floor, "n": n, "lo": mean - half, "hi": mean + half}


def superiority(iv, min_effect: float = MIN_EFFECT) -> str:
    """'A > B': holds when the interval lies above 0 and the mean difference is >= min_effect;
    reversed when it lies below 0 and the mean is <= -min_effect; else not shown."""
    if iv["lo"] > 0 and iv["mean"] >= min_effect:
        return "holds"
    if iv["hi"] < 0 and iv["mean"] <= -min_effect:
        return "reversed"
    return "not shown"


def noninferiority(iv, margin: float = NI_MARGIN) -> str:
    """'A >= B' within a margin: holds when the whole interval lies above -margin (A is not worse
    by more than the margin); reversed when it lies below -margin (A is worse by more); else not shown."""
    return "holds" if iv["lo"] > -margin else "reversed" if iv["hi"] < -margin else "not shown"


def spearman(pairs):
    """Spearman's rho of (x, y) pairs: Pearson's r of their ranks (ties share their mean rank); None
    for fewer than 3 pairs or a constant coordinate. Unlike Pearson's r, one outlying epoch (a
    validation-loss spike) moves it by one rank, not by its size."""
    def ranks(v):
        order = sorted(range(len(v)), key=v.__getitem__)
        out = [0.0] * len(v)
        i = 0
        while i < len(v):
            j = i
            while j + 1 < len(v) and v[order[j + 1]] == v[order[i]]:
                j += 1
            for k in order[i:j + 1]:
                out[k] = (i + j) / 2 + 1
            i = j + 1
        return out
    if len(pairs) < 3:
        return None
    try:
        return statistics.correlation(ranks([p[0] for p in pairs]), ranks([p[1] for p in pairs]))
    except statistics.StatisticsError:      # a constant coordinate
        return None


def paired(runs, cond, row_a, row_b, metric):
    """[(seed, A's value, B's value)] for every seed both rows ran with a value in condition `cond`:
    the same seed gives both rows the same data order, so their difference per seed cancels what the
    order does."""
    def by_seed(row):
        return {r["seed"]: r for r in runs if r["condition"] == cond and r["row"] == row and r.get(metric) is not None}
    a, b = by_seed(row_a), by_seed(row_b)
    return [(s, a[s][metric], b[s][metric]) for s in sorted(set(a) & set(b))]


def list_size(runs, cond, rows, metric):
    """The smallest test list behind `metric` among these rows' runs; None when a run did not record it."""
    key = VIDEOS.get(metric)
    sizes = [r.get(key) for r in runs if key and r["condition"] == cond and r["row"] in rows]
    return min(sizes) if sizes and None not in sizes else None


def leaves_chance(runs, cond, row, metric):
    """Whether `row` clearly leaves chance on `metric` in `cond` (RULE): 'holds', 'not shown',
    'reversed' (clearly below chance) or 'n/a' (fewer than 2 seeds)."""
    rs = [r for r in runs if r["condition"] == cond and r["row"] == row and r.get(metric) is not None]
    if len(rs) < 2:
        return "n/a"
    chance, values = 100.0 / rs[0].get("classes", SET["classes"]), [r[metric] for r in rs]
    videos = list_size(runs, cond, [row], metric)
    floor = binomial_se(statistics.mean(values), videos) if videos else 0.0
    return superiority(paired_interval([v - chance for v in values], floor))


def validity(runs, cond):
    """A static-bias condition is valid when its positive control leaves chance on the conflicting
    videos and its negative control does not: then the set rewards motion and the shortcut is real."""
    pos, neg = (leaves_chance(runs, cond, row, "conflict_top1") for row in CONTROLS)
    if "n/a" in (pos, neg):
        return {"valid": None, "why": "controls not run with >= 2 seeds"}
    return {"valid": pos == "holds" and neg != "holds",
            "why": f"positive control ({CONTROLS[0]}) {'leaves' if pos == 'holds' else 'does not leave'} chance "
                   f"on the conflicting videos; negative control ({CONTROLS[1]}) "
                   f"{'leaves' if neg == 'holds' else 'does not leave'} it"}


def compare_rows(runs, cond, row_a, row_b, metric, test="superiority", gate=False):
    """One comparison of a claim: A - B on `metric` in `cond`, paired by seed, judged by `test`; with
    `gate`, only when both rows leave chance (see RULE)."""
    ran = {r["row"] for r in runs if r["condition"] == cond}
    if row_a not in ran or row_b not in ran:
        return {"verdict": "n/a", "why": "row not run"}
    pairs = paired(runs, cond, row_a, row_b, metric)
    if len(pairs) < 2:
        return {"verdict": "n/a", "why": "needs >= 2 seeds run by both rows"}
    at_chance = [row for row in (row_a, row_b) if gate and leaves_chance(runs, cond, row, metric) != "holds"]
    if at_chance:
        return {"verdict": "n/a", "why": " and ".join(at_chance) + " not clearly above chance"}
    floor, videos = 0.0, list_size(runs, cond, [row_a, row_b], metric)
    if videos:                  # accuracies: the binomial SE of a difference of two runs
        floor = math.hypot(binomial_se(statistics.mean(a for _, a, _ in pairs), videos),
                           binomial_se(statistics.mean(b for _, _, b in pairs), videos))
    iv = paired_interval([a - b for _, a, b in pairs], floor)
    verdict = noninferiority(iv) if test == "noninferiority" else superiority(iv)
    note = ("no floor: list sizes not recorded" if metric in VIDEOS and not floor
            else f"sd floor {floor:.2f}" if floor else "")
    return dict(iv, verdict=verdict, diff=iv["mean"], seeds=[s for s, _, _ in pairs], note=note)


def fig3(runs):
    """Per condition, from the FIG3_ROW runs: per-epoch (held-out L_c = val_loss, held-out ENoPR)
    pairs, Spearman's rho per seed and pooled; a note instead where metrics.json has no val_loss."""
    out = {}
    for r in runs:
        if r["row"] != FIG3_ROW:
            continue
        f = out.setdefault(r["condition"], {"seeds": [], "note": None})
        pairs = [[l, e] for l, e in zip(r["val_loss"], r["val_enopr"]) if l is not None and e is not None]
        f["seeds"].append({"seed": r["seed"], "pairs": pairs, "rho": spearman(pairs)})
    for f in out.values():
        pooled = [p for s in f["seeds"] for p in s["pairs"]]
        f["pooled_rho"] = spearman(pooled)
        f["rho"] = mean_std([s["rho"] for s in f["seeds"]])
        if not pooled:
            f["note"] = "metrics.json holds no val_loss (the held-out L_c), so Fig. 3 cannot be checked"
    return out


def fig3_comparison(f):
    """Claim (e): the per-seed rho's t interval must lie above 0 (no minimum effect)."""
    if not f or f["note"]:
        return {"verdict": "n/a", "why": f["note"] if f else f"no {FIG3_ROW} runs"}
    iv = paired_interval([s["rho"] for s in f["seeds"] if s["rho"] is not None])
    if iv is None:
        return {"verdict": "n/a", "why": "needs >= 2 seeds with a rho"}
    return dict(iv, verdict=superiority(iv, min_effect=0.0), diff=iv["mean"])


def claim_verdict(verdicts):
    """One claim from its comparisons (see RULE)."""
    decided = [v for v in verdicts if v != "n/a"]
    if not decided:
        return "n/a"
    k = verdicts.count("holds")
    if k == len(verdicts):
        return "holds"
    if decided.count("reversed") == len(verdicts):
        return "reversed"
    return f"partly ({k} of {len(verdicts)})" if k else "not shown"


def analyse(runs):
    """summary (condition -> row -> metric -> mean_std, plus whether the row leaves chance), the
    static-bias conditions' validity, fig3 and the claims, from the per-run numbers."""
    groups = {}
    for r in runs:
        groups.setdefault(r["condition"], {}).setdefault(r["row"], []).append(r)
    summary = {c: {row: dict({m: mean_std([r.get(m) for r in rs]) for m in METRICS},
                             chance=leaves_chance(runs, c, row, "conflict_top1" if c in BIAS else "top1"))
                   for row, rs in rows.items()} for c, rows in groups.items()}
    valid = {c: validity(runs, c) for c in summary if c in BIAS}
    figs, claims = fig3(runs), []
    for c in CLAIMS:
        for cond in [x for x in c["conditions"] if x in summary]:
            if c["metric"] == "fig3":
                comps = [dict(fig3_comparison(figs.get(cond)), what="per-seed Spearman rho(val_loss, val_ENoPR) > 0")]
            elif cond in valid and not valid[cond]["valid"]:
                comps = [{"verdict": "n/a", "why": "condition not valid: " + valid[cond]["why"], "what": f"{A} - {B}"}
                         for A, B in c["pairs"]]
            else:
                comps = [dict(compare_rows(runs, cond, A, B, c["metric"], c.get("test", "superiority"),
                                           gate=cond not in BIAS), what=f"{A} - {B}") for A, B in c["pairs"]]
            claims.append({"id": c["id"], "claim": c["claim"], "metric": c["metric"], "condition": cond,
                           "verdict": claim_verdict([x["verdict"] for x in comps]), "comparisons": comps})
    return {"summary": summary, "validity": valid, "fig3": figs, "claims": claims}


# --- the report: markdown tables, claims.png ---------------------------------------------------
def fmt(ms, digits=1, signed=False):
    """mean ± std, '(1 seed)' without a spread, '–' without a value."""
    if not ms or ms["mean"] is None:
        return "–"
    f = f"{'+' if signed else ''}.{digits}f"
    return f"{ms['mean']:{f}} ± {ms['std']:.{digits}f}" if ms["std"] is not None else f"{ms['mean']:{f}} (1 seed)"


def ordered_rows(names):
    """ROWS' order, then any other row names in the order they come."""
    return [n for n in ROWS if n in names] + [n for n in dict.fromkeys(names) if n not in ROWS]


def condition_label(runs, cond):
    """'bias 0.9: rho 0.9, camera jitter; 10 epochs, lr 0.01' from what the runs recorded (args.json;
    the separate row's extra epochs left out), so extra flags show."""
    spec = CONDITIONS.get(cond, {})
    rs = [r for r in runs if r["condition"] == cond and r["row"] != "DA separate"] or \
        [r for r in runs if r["condition"] == cond]
    ep, lr = sorted({r["epochs"] for r in rs}), sorted({r["lr"] for r in rs})
    cam = "" if not spec else ", camera jitter" if spec["jitter"] else ", still camera"
    return (f"{cond}: rho {spec.get('bias', '?')}{cam}; {'/'.join(map(str, ep))} epochs, "
            f"lr {'/'.join(f'{v:g}' for v in lr)}")


def condition_table(runs, an, cond):
    """The markdown table of one condition, with its validity (static bias) or Fig. 3 line."""
    s = an["summary"][cond]
    ns = sorted({v["top1"]["n"] for v in s.values()})
    seeds = f"{ns[0]} seed{'s' * (ns[0] > 1)}" if len(ns) == 1 else (    # rows run with more seeds: named
        f"{ns[0]}-{ns[-1]} seeds; {ns[-1]}: " + ", ".join(r for r in ordered_rows(list(s)) if s[r]["top1"]["n"] == ns[-1]))
    vids = {k: list_size(runs, cond, list(s), k) for k in VIDEOS}
    lines = [f"**{condition_label(runs, cond)}** (mean ± std over {seeds}; "
             f"{vids['top1'] or '?'} test videos, {vids['aligned_top1'] or '?'} aligned, "
             f"{vids['conflict_top1'] or '?'} conflicting)", "",
             "| row | top-1 (%) | aligned top-1 | conflicting top-1 | leaves chance | DC gain s | ENoPR | mean alpha |",
             "|---|---|---|---|---|---|---|---|"]
    for row in ordered_rows(list(s)):
        m = s[row]
        lines.append(f"| {row} | {fmt(m['top1'])} | {fmt(m['aligned_top1'])} | {fmt(m['conflict_top1'])} | "
                     f"{m['chance']} | {fmt(m['dc_gain'], 3)} | {fmt(m['enopr'], 3)} | {fmt(m['mean_alpha'], 3)} |")
    if cond in an["validity"]:
        v = an["validity"][cond]
        state = {True: "valid", False: "NOT valid", None: "undecided"}[v["valid"]]
        lines += ["", f"Condition {state}: {v['why']}."]
    f = an["fig3"].get(cond)
    if f:
        per_seed = ", ".join(f"seed {x['seed']}: " + ("–" if x["rho"] is None else f"{x['rho']:+.2f}")
                             for x in f["seeds"])
        pooled = "–" if f["pooled_rho"] is None else f"{f['pooled_rho']:+.2f}"
        lines += ["", f"Fig. 3 ({FIG3_ROW}, per-epoch held-out L_c vs ENoPR): "
                      + (f["note"] if f["note"] else f"Spearman rho {per_seed}; pooled {pooled}")]
    return lines + [""]


def format_tables(result):
    """The README's markdown: each table's conditions, then the claims' verdicts with their comparisons."""
    runs, an = result["runs"], analyse(result["runs"])
    lines = []
    for t, spec in TABLES.items():
        conds = [c for c in spec["conditions"] if c in an["summary"]]
        if conds:
            lines += [f"### {t} table", ""]
            for cond in conds:
                lines += condition_table(runs, an, cond)
    lines += [f"Verdicts. {RULE}", "", "| claim | condition | verdict |", "|---|---|---|"]
    for c in an["claims"]:
        lines.append(f"| ({c['id']}) {c['claim']} | {c['condition']} | **{c['verdict']}** |")
        for x in c["comparisons"]:
            cell = (f"{x['verdict']}: {x['diff']:+.2f} [{x['lo']:+.2f}, {x['hi']:+.2f}], {x['n']} seeds"
                    + (f", {x['note']}" if x.get("note") else "")) if "diff" in x else f"n/a ({x['why']})"
            lines.append(f"| &nbsp;&nbsp; {x['what']} | | {cell} |")
    if "total_s" in result:
        cmd = result.get("command", "")
        testing = sum(r.get("eval_s", 0.0) for r in runs)     # a separate evaluate.py call, in older files
        lines += ["", f"{len(runs)} runs, {result['total_s'] / 60:.1f} min in all "
                      f"(train.py {sum(r['train_s'] for r in runs) / 60:.1f} min"
                      + (f", evaluate.py {testing / 60:.1f} min): " if testing else "): ")
                      + "; ".join(f"`{c}`" for c in (cmd if isinstance(cmd, list) else [cmd]))]
    return "\n".join(lines)


def plot_claims(result, path, dpi=100):
    """claims.png: per condition, aligned and conflicting top-1 per row (mean, error bar = std over
    seeds); then, where the runs have them, the mechanism (conflicting top-1 against the final DC gain
    s of DA, one point per static-bias run coloured by row) and the Fig. 3 scatter of held-out L_c vs
    ENoPR per epoch."""
    import visualize                     # matplotlib (Agg) and its atomic save
    plt = visualize.plt
    runs, an = result["runs"], analyse(result["runs"])
    conds = [c for spec in TABLES.values() for c in spec["conditions"] if c in an["summary"]]
    extras = [panel for panel, has in (
        (lambda ax: plot_mechanism(ax, runs),
         any(r["condition"] in BIAS and r.get("dc_gain") is not None for r in runs)),
        (lambda ax: plot_fig3(ax, an), any(s["pairs"] for f in an["fig3"].values() for s in f["seeds"])))
        if has]
    n_rows = max(len(v) for v in an["summary"].values())
    cols = min(3, len(conds) + len(extras))
    lines = -(-(len(conds) + len(extras)) // cols)
    fig, axes = plt.subplots(lines, cols, figsize=(6.5 * cols, (2.5 + 0.4 * n_rows) * lines), dpi=dpi, squeeze=False)
    axes = axes.ravel()
    for ax, cond in zip(axes, conds):
        rows = ordered_rows(list(an["summary"][cond]))
        y = list(range(len(rows)))
        for off, key, label, color in ((-0.15, "aligned_top1", "aligned", "C0"),
                                       (0.15, "conflict_top1", "conflicting", "C3")):
            ms = [an["summary"][cond][r][key] for r in rows]
            ax.errorbar([m["mean"] if m["mean"] is not None else float("nan") for m in ms], [v + off for v in y],
                        xerr=[m["std"] or 0 for m in ms], fmt="o", color=color, label=label, capsize=3)
        ax.axvline(100.0 / SET["classes"], color="grey", lw=0.8, ls=":")
        ax.set_yticks(y)
        ax.set_yticklabels(rows)
        ax.invert_yaxis()
        ax.set(xlabel="top-1 (%)", xlim=(-2, 102), title=condition_label(runs, cond))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax, panel in zip(axes[len(conds):], extras):
        panel(ax)
    for ax in axes[len(conds) + len(extras):]:
        ax.axis("off")
    fig.tight_layout()
    visualize.save(fig, path, dpi)


def plot_mechanism(ax, runs):
    """Conflicting top-1 against the final DC gain s (the share of a pixel's static colour that passes
    into DA), one point per static-bias DA run, coloured by row, marked by condition."""
    rows = ordered_rows([r["row"] for r in runs if r["condition"] in BIAS and r.get("dc_gain") is not None])
    for i, row in enumerate(rows):
        for k, cond in enumerate(BIAS):
            pts = [(r["dc_gain"], r["conflict_top1"]) for r in runs
                   if r["row"] == row and r["condition"] == cond and r.get("dc_gain") is not None]
            if pts:
                x, y = zip(*pts)
                ax.scatter(x, y, color=f"C{i}", marker="os^"[k % 3], label=f"{row}" if k == 0 else None)
    ax.set_xscale("log")
    ax.legend(fontsize=7, title="marker: " + ", ".join(f"{m} {c}" for m, c in zip("os^", BIAS)), title_fontsize=7)
    ax.axhline(100.0 / SET["classes"], color="grey", lw=0.8, ls=":")
    ax.set(xlabel="final DC gain s of DA (log)", ylabel="conflicting top-1 (%)", title="DA's static leak")
    ax.grid(alpha=0.3)


def plot_fig3(ax, an):
    for k, cond in enumerate(an["fig3"]):
        for s in an["fig3"][cond]["seeds"]:
            if s["pairs"]:
                x, yv = zip(*s["pairs"])
                rho = "–" if s["rho"] is None else f"{s['rho']:+.2f}"
                ax.plot(x, yv, "os^v"[k % 4] + "-", lw=0.8, label=f"{cond}, seed {s['seed']}: rho = {rho}")
    ax.legend(fontsize=8)
    ax.set(xlabel="held-out L_c (val_loss, cross-entropy)", ylabel="held-out L_p (val_enopr)",
           title=f"Fig. 3: {FIG3_ROW}, one point per epoch")
    ax.grid(alpha=0.3)


def merge_results(paths):
    """One result from one or more claims.json files: their runs (a later file's run replaces an
    earlier one of the same condition, row and seed), summed wall time and every command."""
    merged, runs, commands, total = {}, {}, [], 0.0
    for path in paths:
        result = read_json(path, "bench.py claims --table")
        if not isinstance(result, dict) or not result.get("runs"):
            raise SystemExit(f"bench.py claims --table: {path} holds no runs (expected bench.py claims' JSON)")
        merged.update({k: v for k, v in result.items() if k not in ("runs", "command", "total_s")})
        runs.update({(r["condition"], r["row"], r["seed"]): r for r in result["runs"]})
        cmd = result.get("command", [])
        commands += cmd if isinstance(cmd, list) else [cmd]
        total += result.get("total_s", 0.0)
    return dict(merged, runs=list(runs.values()), command=commands[0] if len(commands) == 1 else commands,
                total_s=total)


def run_claims(a):
    """Train every selected condition x row x seed (see the module docstring), then write claims.json,
    claims.png and print the tables. With --table, only the last part, from an existing claims.json."""
    if a.table:
        result = merge_results(a.table)
        if len(a.table) > 1:          # several runs of `claims` (other rows, other conditions): one report
            save_result(result, a.out)
        print(format_tables(result))
        return result
    if a.seeds < 1 or a.set_train < 1 or a.set_crossed < 1:
        raise SystemExit("bench.py claims: --seeds, --set-train and --set-crossed must be >= 1")
    a.out_dir = a.out_dir or os.path.splitext(a.out)[0] + "_runs"
    jobs = [(cond, row, seed) for cond, row in select_runs(a) for seed in range(a.seeds)]
    t_start, fresh_s, fresh, runs = time.time(), 0.0, 0, []
    print(f"bench.py claims: {len(jobs)} runs in {a.out_dir}", flush=True)
    for i, (cond, row, seed) in enumerate(jobs):
        t0 = time.time()
        rec = run_one(a, cond, row, seed)
        runs.append(rec)
        if not rec["reused"]:
            fresh_s, fresh = fresh_s + time.time() - t0, fresh + 1
        eta = f"ETA {fmt_time(fresh_s / fresh * (len(jobs) - i - 1))}" if fresh else ""
        print(f"  [{i + 1}/{len(jobs)}] {cond:14s} {row:15s} seed {seed}: top-1 {rec['top1']:5.1f} % | aligned "
              f"{rec['aligned_top1']:5.1f} % | conflicting {rec['conflict_top1']:5.1f} % | "
              + ("reused" if rec["reused"] else f"{rec['train_s']:.0f} s") + f" | {eta}",
              flush=True)
    for r in runs:
        r.pop("reused")
    result = {"command": a.command, "rule": RULE, "budget": BUDGET, "seeds": a.seeds, "train_args": a.train_args,
              "set": dict(SET, bias_train=a.set_train, crossed=a.set_crossed), "conditions": CONDITIONS,
              "total_s": time.time() - t_start, "runs": runs}
    png = save_result(result, a.out)
    print("\n" + format_tables(result) + f"\n\nwrote {a.out}, {png}")
    return result


def save_result(result, out):
    """Add the analysis to `result`, write it to `out` and its plot beside it; returns the plot's path."""
    result.update(analyse(result["runs"]))
    atomic_json(result, out)
    png = os.path.splitext(out)[0] + ".png"
    plot_claims(result, png)
    return png


# ---------------------------------------------------------------------------------------------
# The paper's tables as commands (REPRODUCE.md): the rows and what each would cost
# ---------------------------------------------------------------------------------------------
# Videos per dataset (training, validation): the official lists (UCF101/HMDB51 split 1); Kinetics
# copies differ by a few per cent, these are typical counts.
DATASET_SIZES = {"ucf101": (9537, 3783), "hmdb51": (3570, 1530), "sthv1": (86017, 11522),
                 "kinetics400": (240000, 19800), "minikinetics": (80000, 5000)}
# Measured on one H100 (bf16, torch 2.11+cu130, batch 8): seconds per training clip and the
# multiply-adds per clip of that model. Other models are scaled by their multiply-adds from the
# measurement of their own family (X3D's depthwise convolutions run far below a GPU's peak).
MEASURED_STEP = {"tsm": (0.068 / 8, dict(backbone="tsm", segments=8, frames=4, crop_size=224)),
                 "x3d": (0.074 / 8, dict(backbone="x3d_xs", segments=4, frames=8, crop_size=160))}
V100_SLOWDOWN = 3.0      # ours, not measured: a V100 taken as 3x an H100's time per clip

# (table, row, train.py arguments, GPUs in the paper, test clips, paper's number(s), status)
NOT_RUN = "not run: needs the dataset and GPUs"
PAPER_ROWS = [
    ("1", "TSM-R50 RGB, IN-1K, 8 frames", "--dataset sthv1 --data-root DATA/sthv1 --backbone tsm --input rgb --frames 1 --pretrained imagenet", 32, 2, "48.7", NOT_RUN),
    ("1", "DA₈ₓ₄ TSM-R50, IN-1K", "--dataset sthv1 --data-root DATA/sthv1 --backbone tsm --segments 8 --frames 4 --pretrained imagenet", 32, 2, "50.1", NOT_RUN),
    ("1", "ViT-B RGB, IN-21K (ours: IN-1K)", "--dataset sthv1 --data-root DATA/sthv1 --backbone vit_b16 --input rgb --frames 1 --pretrained imagenet", 32, 1, "45.7", NOT_RUN),
    ("1", "DA₈ₓ₄ ViT-B, IN-21K (ours: IN-1K)", "--dataset sthv1 --data-root DATA/sthv1 --backbone vit_b16 --segments 8 --frames 4 --pretrained imagenet", 32, 1, "46.4", NOT_RUN),
    ("1", "X3D-XS RGB, K400", "--dataset sthv1 --data-root DATA/sthv1 --backbone x3d_xs --input rgb --frames 1 --pretrained WEIGHTS/x3d_xs_k400.pyth", 32, 2, "40.6", NOT_RUN),
    ("1", "DA₄ₓ₈ X3D-XS, K400", "--dataset sthv1 --data-root DATA/sthv1 --backbone x3d_xs --segments 4 --frames 8 --pretrained WEIGHTS/x3d_xs_k400.pyth", 32, 2, "43.1", NOT_RUN),
    ("1", "X3D-M RGB, K400", "--dataset sthv1 --data-root DATA/sthv1 --backbone x3d_m --input rgb --frames 1 --pretrained WEIGHTS/x3d_m_k400.pyth", 32, 2, "52.0", NOT_RUN),
    ("1", "DA₁₆ₓ₃ X3D-M, K400", "--dataset sthv1 --data-root DATA/sthv1 --backbone x3d_m --segments 16 --frames 3 --pretrained WEIGHTS/x3d_m_k400.pyth", 32, 2, "53.7", NOT_RUN),
]
PAPER_ROWS += [
    ("3", "TSM-R50 RGB, IN-1K, 16 frames", "--dataset kinetics400 --data-root DATA/k400 --backbone tsm --input rgb --segments 16 --frames 1 --pretrained imagenet", 64, 10, "74.7", NOT_RUN),
    ("3", "DA₁₆ₓ₈ TSM-R50, IN-1K", "--dataset kinetics400 --data-root DATA/k400 --backbone tsm --segments 16 --frames 8 --pretrained imagenet", 64, 10, "75.9", NOT_RUN),
    ("3", "X3D-M RGB, from scratch", "--dataset kinetics400 --data-root DATA/k400 --backbone x3d_m --input rgb --frames 1 --pretrained none", 32, 10, "76.0", NOT_RUN),
    ("3", "DA₁₆ₓ₈ X3D-M, from scratch", "--dataset kinetics400 --data-root DATA/k400 --backbone x3d_m --segments 16 --frames 8 --pretrained none", 32, 10, "77.3", NOT_RUN),
    ("3", "ViT-B RGB, IN-21K (ours: IN-1K)", "--dataset kinetics400 --data-root DATA/k400 --backbone vit_b16 --input rgb --frames 1 --pretrained imagenet", 32, 1, "76.5", NOT_RUN),
    ("3", "DA ViT-B, IN-21K (S×T illegible; ours 8×4)", "--dataset kinetics400 --data-root DATA/k400 --backbone vit_b16 --segments 8 --frames 4 --pretrained imagenet", 32, 1, "78.2", NOT_RUN),
    ("3", "DA₈ₓ₁₆ TSM-R50 on UCF101 split 1, K400 model", "--dataset ucf101 --data-root DATA/ucf101 --split 1 --backbone tsm --segments 8 --frames 16 --pretrained WEIGHTS/k400_da_tsm.pt", 16, 2, "96.5 (mean of 3 splits)", NOT_RUN),
    ("3", "DA₈ₓ₁₆ TSM-R50 on HMDB51 split 1, K400 model", "--dataset hmdb51 --data-root DATA/hmdb51 --split 1 --backbone tsm --segments 8 --frames 16 --pretrained WEIGHTS/k400_da_tsm.pt", 16, 2, "75.3 (mean of 3 splits)", NOT_RUN),
]
# Table 5 (SS-V1, DA₄ₓ₈ X3D-XS from a K400 X3D-XS, single view): the constant scales' values are
# not legible in the paper; ours are 0.1, 1 and 10 (ordered as its ENoPR column falls).
X3D_SS = "--dataset sthv1 --data-root DATA/sthv1 --backbone x3d_xs --segments 4 --frames 8 --pretrained WEIGHTS/x3d_xs_k400.pyth"
PAPER_ROWS += [
    ("5", "baseline (RGB X3D-XS)", "--dataset sthv1 --data-root DATA/sthv1 --backbone x3d_xs --input rgb --frames 1 --pretrained WEIGHTS/x3d_xs_k400.pyth", 32, 1, "38.3", NOT_RUN),
    ("5", "separate training", X3D_SS + " --joint separate", 32, 1, "39.4 (ENoPR 0.17)", NOT_RUN),
    ("5", "constant scale λ = 0.1 (ours)", X3D_SS + " --joint constant --lam 0.1", 32, 1, "39.2 (ENoPR 0.43)", NOT_RUN),
    ("5", "constant scale λ = 1 (ours)", X3D_SS + " --joint constant --lam 1", 32, 1, "40.1 (ENoPR 0.34)", NOT_RUN),
    ("5", "constant scale λ = 10 (ours)", X3D_SS + " --joint constant --lam 10", 32, 1, "39.3 (ENoPR 0.22)", NOT_RUN),
    ("5", "MGDA, plain Eq. 12", X3D_SS + " --joint mgda --mgda-normalize none", 32, 1, "41.0 (ENoPR 0.27)", NOT_RUN),
]
# Table 6 (TSM-R50, 8 segments of 6 frames = 48 raw frames, ImageNet weights): SS-V1 and UCF101.
PAPER_ROWS += [
    ("6", f"{name}, SS-V1", f"--dataset sthv1 --data-root DATA/sthv1 --backbone tsm --segments 8 --frames 6 --input {inp} --pretrained imagenet", 32, 1, ss, NOT_RUN)
    for name, inp, ss in (("RGB", "rgb", "46.5"), ("RGB difference", "rgbdiff", "46.6"), ("dynamic image", "dynimg", "43.3"), ("DA₈ₓ₆", "da", "48.7"))
] + [
    ("6", f"{name}, UCF101", f"--dataset ucf101 --data-root DATA/ucf101 --backbone tsm --segments 8 --frames 6 --input {inp} --pretrained imagenet", 16, 1, ucf, NOT_RUN)
    for name, inp, ucf in (("RGB", "rgb", "87.1"), ("RGB difference", "rgbdiff", "87.0"), ("dynamic image", "dynimg", "86.2"), ("DA₈ₓ₆", "da", "89.7"))
]
MINIK_X3D = "--dataset minikinetics --data-root DATA/minik --backbone x3d_xs --segments 4 --pretrained none"
PAPER_ROWS += [
    ("8", f"MLP config #{i} (ρ {rho}, K {k}, e {e}): PWTP alone on L_p", MINIK_X3D + f" --frames 8 --joint separate --epochs 10 --separate-epochs 10 --pwtp-bottleneck {rho} --pwtp-blocks {k} --pwtp-expansion {e}", 32, 1, paper,
     "parameters run here: exact (tests/test_pwtp.py); ENoPR not run: needs Mini-Kinetics and GPUs (our optimiser is SGD, the paper's AdamW)")
    for i, rho, k, e, paper in ((1, 0.25, 1, 4, "ENoPR 0.26, 16.9k"), (2, 0.25, 1, 1, "ENoPR 0.27, 7.4k"), (3, 0.25, 2, 1, "ENoPR 0.28, 7.9k"),
                                (4, 0.25, 2, 4, "ENoPR 0.26, 23.3k"), (5, 1, 1, 4, "ENoPR 0.28, 35.5k"), (6, 0.25, 0, 4, "ENoPR 0.30, 10.0k"),
                                (7, 0.25, 1, 2, "ENoPR 0.27, 9.7k"))
]
# Table 9 (scale scheduler, X3D-XS on SS-V1): Eq. 13's exact form and the four (a, b) are not
# legible in the paper; the form is ours (mgda.scale_schedule) and so are these values.
PAPER_ROWS += [
    ("9", f"scale scheduler a = {a}, b = {b} (ours)", X3D_SS + f" --joint scheduler --lam 1 --sched-a {a} --sched-b {b}", 32, 1, paper, NOT_RUN)
    for a, b, paper in ((1, 1, "40.7 (ENoPR 0.57)"), (0.5, 1, "40.6 (ENoPR 0.53)"), (1, 2, "40.7 (ENoPR 0.56)"), (0.5, 2, "40.4 (ENoPR 0.55)"))
]
# Table 10 (longer segments, DA₄ₓT X3D-XS on Mini-Kinetics).
PAPER_ROWS += [
    ("10", f"T = {t}", MINIK_X3D + f" --frames {t}", 32, 1, paper, NOT_RUN)
    for t, paper in ((4, "56.2 (ENoPR 0.26)"), (8, "56.9 (ENoPR 0.41)"), (16, "58.2 (ENoPR 0.53)"))
]
# Fig. 3 (PWTP trained by L_c alone; held-out L_c against ENoPR per epoch: visualize.py curves).
PAPER_ROWS += [
    ("Fig. 3", "(a) UCF101, L_c only", "--dataset ucf101 --data-root DATA/ucf101 --backbone x3d_xs --segments 4 --frames 8 --joint recognition --pretrained none", 16, 1, "positive correlation", NOT_RUN),
    ("Fig. 3", "(b) Mini-Kinetics, L_c only", MINIK_X3D + " --frames 8 --joint recognition", 32, 1, "positive correlation", NOT_RUN),
]

CLASSES = {"ucf101": 101, "hmdb51": 51, "sthv1": 174, "kinetics400": 400, "minikinetics": 200}


def paper_mode(command):
    """The paper's MGDA (plain Eq. 12) for a DA command that names no strategy: the rows reproduce
    the paper, not this code's default (--mgda-normalize loss+, ours)."""
    da = "--input" not in command or "--input da" in command
    return command + (" --joint mgda --mgda-normalize none" if da and "--joint" not in command else "")


def resolved(argv):
    """train.py's flags for a command, completed by the recipe of its starting point, as a run
    would complete them (a WEIGHTS/ file stands for a Kinetics video model)."""
    args = train.build_parser().parse_args(argv)
    start = args.pretrained if args.pretrained in ("imagenet", "none") else "kinetics"
    return train.resolve_defaults(args, 1, start)


def macs_per_clip(args):
    """Multiply-adds of one view (a clip of S*T frames) of the model the flags describe."""
    with torch.device("meta"):
        model = train.build_model(args, CLASSES.get(args.dataset, 10))
        clip = torch.empty(1, args.segments * args.frames, 3, args.crop_size, args.crop_size)
        return macs(lambda: model.eval()(clip))


def reference_seconds(family):
    """Seconds per training clip on one H100 for `family`, with the multiply-adds it was measured at."""
    seconds, setting = MEASURED_STEP[family]
    args = resolved(["--dataset", "sthv1", "--data-root", "DATA/sthv1", "--pretrained", "none"]
                    + [f"--{k.replace('_', '-')}={v}" for k, v in setting.items()])
    return seconds, macs_per_clip(args)


def reproduce_row(table, name, command, gpus, clips, paper, status, refs):
    """One REPRODUCE.md row: the setting, the command, and its estimated cost in hours."""
    args = resolved(command.split())
    seconds, ref_macs = refs["x3d" if args.backbone.startswith("x3d") else "tsm"]
    per_clip = seconds * macs_per_clip(args) / ref_macs            # training: forward + backward
    n_train, n_val = DATASET_SIZES[args.dataset]
    h100_h = args.epochs * (n_train * per_clip + n_val * per_clip / 3) / 3600   # + one view-forward validation
    joint = args.joint + (f" ({args.mgda_normalize})" if args.joint == "mgda" and args.input == "da" else "")
    setting = (f"{args.dataset}, {args.backbone}{'-R' + str(args.depth) if args.backbone == 'tsm' else ''}, "
               f"{args.input.upper()} S×T = {args.segments}×{args.frames}, "
               + (f"D = {args.proj_dim}, {joint}, " if args.input == "da" else "")
               + f"from {args.pretrained if '/' not in args.pretrained else 'Kinetics'}, "
               f"{gpus} GPUs × {args.batch_size}, {args.epochs} epochs, test {clips}×3 views")
    return {"table": table, "row": name, "setting": setting, "command": "python train.py " + command,
            "paper": paper, "paper_hw_h": h100_h * V100_SLOWDOWN / gpus, "h100_h": h100_h, "status": status}


def fmt_hours(h):
    return f"{h * 60:.0f} min" if h < 1 else f"{h:.1f} h" if h < 48 else f"{h / 24:.1f} days"


def reproduce_markdown(rows):
    """REPRODUCE.md's tables: one per paper table, a row per command."""
    out = []
    for table in dict.fromkeys(r["table"] for r in rows):
        title = table if table.startswith("Fig") else f"Table {table}"
        out += [f"## {title}", "", "| row | setting | command | paper | est. paper hardware | est. 1 H100 | status |",
                "|---|---|---|---|---|---|---|"]
        out += [f"| {r['row']} | {r['setting']} | `{r['command']}` | {r['paper']} | {fmt_hours(r['paper_hw_h'])} | "
                f"{fmt_hours(r['h100_h'])} | {r['status']} |" for r in rows if r["table"] == table]
        out.append("")
    return "\n".join(out)


def run_reproduce(a):
    """python bench.py reproduce: REPRODUCE.md's tables, costs estimated from the measured steps."""
    refs = {family: reference_seconds(family) for family in MEASURED_STEP}
    rows = [reproduce_row(table, name, paper_mode(cmd), *rest, refs) for table, name, cmd, *rest in PAPER_ROWS]
    print(reproduce_markdown(rows))
    atomic_json(rows, a.out)
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", nargs="?", default="bench", choices=["bench", "claims", "reproduce"])
    p.add_argument("--quick", action="store_true", help="tiny sizes, a few seconds (the test suite's mode)")
    p.add_argument("--skip-full", action="store_true", help="skip the full-size TSM-R50 224^2 rows (slow on CPU)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:K")
    p.add_argument("--amp", nargs="?", const="bf16", default=None, choices=AMP_DTYPES,
                   help="bench: the MGDA/constant steps under autocast bf16 (plain --amp) or fp16 (with the GradScaler)")
    p.add_argument("--no-raft", action="store_true",
                   help="do not try torchvision's RAFT-small in the flow row (the tests never import torchvision)")
    p.add_argument("--workers", type=int, default=2, help="loader workers for the loader row")
    p.add_argument("--data-root", default=None, help="synthetic set root (default: data.py's cache folder)")
    p.add_argument("--out", default=None, help="JSON output (default bench.json / claims.json; claims: the PNG beside it)")
    p.add_argument("--seeds", type=int, default=DEFAULT_SEEDS,
                   help=f"claims: seeds 0..N-1 per row and condition (default {DEFAULT_SEEDS})")
    p.add_argument("--tables", nargs="+", default=None, choices=list(TABLES),
                   help="claims: " + "; ".join(f"{t}: {', '.join(v['conditions'])}" for t, v in TABLES.items())
                        + " (default: both)")
    p.add_argument("--conditions", nargs="+", default=None, choices=list(CONDITIONS),
                   help="claims: only these conditions of the tables")
    p.add_argument("--rows", action="append", default=None, metavar="NAME",
                   help="claims: only these rows (exact name, else a substring; repeatable). Rows: " + ", ".join(ROWS))
    p.add_argument("--set-train", type=int, default=SET["bias_train"],
                   help=f"claims: training videos per class of each condition's set (default {SET['bias_train']})")
    p.add_argument("--set-crossed", type=int, default=SET["crossed"],
                   help=f"claims: test videos per class and background (default {SET['crossed']}: "
                        f"{SET['classes'] ** 2 * SET['crossed']} test videos)")
    p.add_argument("--out-dir", default=None,
                   help="claims: where the runs go (default: OUT without .json + _runs); rerunning continues it")
    p.add_argument("--table", nargs="+", default=None, metavar="CLAIMS.json",
                   help="claims: print the tables and verdicts of an existing claims.json; trains nothing. "
                        "Several files (runs of other rows or conditions) are merged and written to --out")
    argv = list(sys.argv[1:] if argv is None else argv)
    # claims: everything after a bare `--` goes to train.py unchanged, after the row's and the budget's
    # flags (so it can override them, e.g. -- --frames 8)
    train_args = argv[argv.index("--") + 1:] if "--" in argv else []
    args = p.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    args.train_args = train_args
    args.command = "python bench.py " + shlex.join(argv)
    args.out = args.out or {"claims": "claims.json", "reproduce": "reproduce.json"}.get(args.mode, "bench.json")
    return {"claims": run_claims, "reproduce": run_reproduce}.get(args.mode, run_bench)(args)


if __name__ == "__main__":
    main()
