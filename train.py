"""Train a dynamic-appearance (DA) action-recognition model with joint training (Sec. 3.4-3.5).

    python train.py                                             # quick start: synthetic set, CPU, minutes
    python train.py --dataset ucf101 --data-root DIR --backbone tsm --pretrained K400.pt
    torchrun --nproc_per_node=8 train.py --dataset sthv1 --data-root DIR --backbone tsm --amp
    python train.py --resume RUN_DIR                            # continue a stopped run exactly

One step (Algorithm 1 for --joint mgda):
    clip (B, S*T, C, H, W) -> model -> logits (B, K), PWTP output (enopr (B*S,))
    L_c = cross-entropy with label smoothing 0.1       (recognition loss)
    L_p = mean ENoPR over the segments                  (Eq. 7-8, projection loss)
    mgda.JointTraining(...).backward(model, L_c, L_p, step) writes every .grad
    clip the gradient norm at 20, SGD step, cosine LR with linear warm-up (per step)

Recipe (Appendix A): SGD with momentum 0.9; cosine learning rate with linear warm-up; label
smoothing 0.1; gradient clipping at 20; dropout before the classifier; learning rate and weight
decay x5 for the classifier; weight decay on conv/linear weights only (not on biases or norms:
"L2 regularisation of the convolutional and classification layers"); UCF101/HMDB51 fine-tuning
freezes every BatchNorm but the first (--freeze-bn). ViT: no dropout, no clipping, no label
smoothing, PWTP learning rate x5.

Defaults. Every flag left unset is filled from the paper for the chosen --dataset/--backbone
(see paper_recipe below; the values are the paper's per-GPU batch and its total-batch learning
rate, scaled linearly to your total batch = --batch-size x processes). For --dataset synthetic
(the default) a CPU-sized configuration is used instead (SYNTHETIC_DEFAULTS: a narrow TSM-R18 at
64x64, S=4 segments of T=4 frames) that learns the synthetic set in a few minutes on 2 cores.

Files in RUN_DIR (--out): args.json; log.csv (one row per logged step); metrics.json (one entry
per epoch: train loss/accuracy, validation top-1/top-5/mean class accuracy, mean ENoPR);
last.pt (every epoch end, and on SIGINT/SIGTERM mid-epoch), best.pt (best validation top-1).
Checkpoints are written atomically (temporary file + os.replace) and hold the model, optimiser,
LR schedule, sampler position and every RNG state, so --resume continues bit-exactly on CPU.

Distributed: under torchrun (RANK/WORLD_SIZE in the environment) the process group uses NCCL on
GPUs and gloo on CPU. The model is deliberately NOT wrapped in DistributedDataParallel: DDP
averages the single gradient of a single backward pass, while MGDA needs two separate gradients
of the shared PWTP parameters (g_c and g_p, Eq. 11-12) and must derive alpha from the
rank-averaged ones so that every rank takes the same step. mgda.JointTraining therefore computes
and all-reduces the gradients itself. What DDP would also do, broadcasting BatchNorm buffers from
rank 0, is done here after every step. Data are sharded by data.py's sampler; validation
predictions are gathered from every rank; rank 0 alone prints and writes files.
"""
import argparse
import csv
import hashlib
import json
import math
import os
import random
import signal
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from evaluate import AMP_DTYPES, autocast, classification_metrics, predict

BACKBONES = ("tsm", "x3d_xs", "x3d_m", "vit_b16")
INPUTS = ("da", "rgb", "rgbdiff", "dynimg")
JOINT = ("mgda", "constant", "scheduler", "separate", "recognition")
DATASETS = ("synthetic", "ucf101", "hmdb51", "sthv1", "kinetics400", "minikinetics", "list")

# The CPU-sized configuration of the quick start (used for --dataset synthetic, flag by flag,
# for every flag the user leaves unset). Chosen so that `python train.py` learns the synthetic set
# in a few minutes on 2 CPU cores.
# The CPU quick start. Chosen by a sweep over lr {0.0025, 0.005, 0.01} x T {4, 8} x joint
# {mgda, constant} (30 epochs each): constant lambda = 1 reached 95-100 % validation top-1 on the
# synthetic set, MGDA 25-57 %: on this set alpha (Eq. 12) collapses to ~0 within a few epochs,
# i.e. g_p is the shorter gradient and PWTP then follows L_p alone, which (at T = 4, 64 px)
# projects the moving object away too. So the quick start uses `constant`; `--joint mgda` shows
# the collapse (the README's claims table has the numbers). Real datasets default to mgda.
SYNTHETIC_DEFAULTS = dict(
    backbone="tsm", depth=18, small=True, segments=4, frames=4, crop_size=64, joint="constant",
    epochs=30, batch_size=8, lr=0.005, weight_decay=1e-4, dropout=0.2, warmup_epochs=1,
    freeze_bn=False, clip_grad=20.0, label_smoothing=0.1, pwtp_lr_mult=1.0, workers=2, log_every=5,
)

# Frames the backbone itself sees (S segments -> S DA frames) and crop size, per backbone.
BACKBONE_DEFAULTS = {
    "tsm": dict(segments=8, crop_size=224),
    "x3d_xs": dict(segments=4, crop_size=160),      # X3D-XS: 4 frames, 160^2 (Appendix A)
    "x3d_m": dict(segments=16, crop_size=224),      # X3D-M: 16 frames, 224^2
    "vit_b16": dict(segments=8, crop_size=224),
}


def paper_recipe(dataset, backbone):
    """Appendix A's hyper-parameters: lr is for the paper's total batch `global_batch`;
    `batch_size` is its per-GPU batch. Where the paper gives no value we say ours."""
    family = "vit" if backbone.startswith("vit") else ("x3d" if backbone.startswith("x3d") else "resnet")
    r = dict(label_smoothing=0.1, clip_grad=20.0, pwtp_lr_mult=1.0, freeze_bn=False, warmup_epochs=7)
    if family == "vit":
        # ImageNet-21K ViT: no dropout, no gradient clipping, no label smoothing, PWTP lr x5.
        r.update(lr=0.004, global_batch=64, batch_size=2, epochs=15, weight_decay=1e-4, dropout=0.0,
                 clip_grad=0.0, label_smoothing=0.0, pwtp_lr_mult=5.0,
                 warmup_epochs=1)                       # ours: the paper gives no ViT warm-up
    elif dataset in ("ucf101", "hmdb51"):
        # Fine-tuning Kinetics models (the paper states it for ResNet; we use it for X3D too):
        # every BN but the first frozen. Warm-up: ours (none; 10 epochs from a trained model).
        r.update(lr=0.001, global_batch=64, batch_size=4, epochs=10, weight_decay=1e-4, dropout=0.8,
                 freeze_bn=True, warmup_epochs=0)
    elif dataset == "sthv1":
        wd = 4e-4 if family == "x3d" else 8e-4
        r.update(lr=0.12, global_batch=256, batch_size=8, epochs=50, weight_decay=wd, dropout=0.8)
    elif family == "x3d":                               # kinetics400, minikinetics, list
        r.update(lr=0.4, global_batch=256, batch_size=8, epochs=256, weight_decay=5e-5, dropout=0.5)
    else:                                               # ResNet on kinetics400, minikinetics, list
        r.update(lr=0.08, global_batch=512, batch_size=8, epochs=100, weight_decay=2e-4, dropout=0.5)
    return r


# Flags that may be changed when resuming (they do not change the computation).
RESUME_OVERRIDABLE = ("max_steps", "workers", "log_every", "print_weights_checksum")


def build_parser():
    p = argparse.ArgumentParser(
        description="Train a dynamic-appearance action-recognition model with joint training "
                    "(MGDA by default). Unset flags take the paper's values for --dataset/--backbone; "
                    "with --dataset synthetic (the default) a CPU-sized configuration is used instead: "
                    + ", ".join(f"{k}={v}" for k, v in SYNTHETIC_DEFAULTS.items()) + ".",
        epilog="Example: python train.py --dataset ucf101 --data-root ~/data/ucf101 --backbone tsm "
               "--pretrained k400_da_tsm.pt --out runs/ucf-da-tsm")
    a = p.add_argument
    a("--dataset", default="synthetic", choices=DATASETS, help="dataset (default synthetic)")
    a("--data-root", default=None, help="dataset folder (synthetic: data.default_synthetic_root())")
    a("--split", type=int, default=1, help="UCF101/HMDB51 split 1-3 (default 1)")
    a("--backbone", default=None, choices=BACKBONES, help="default tsm")
    a("--depth", type=int, default=None, help="ResNet depth for tsm (default 50; synthetic 18)")
    a("--small", default=None, action=argparse.BooleanOptionalAction,
      help="narrow CPU-sized backbone (default off; synthetic on)")
    a("--input", default="da", choices=INPUTS, help="representation fed to the backbone (default da)")
    a("--segments", type=int, default=None, help="S segments (default: 8 tsm/vit, 4 x3d_xs, 16 x3d_m)")
    a("--frames", type=int, default=None, help="T frames per segment (default 8)")
    a("--proj-dim", type=int, default=1, help="D, dimension of the per-pixel subspace (default 1)")
    a("--joint", default=None, choices=JOINT,
      help="joint-training strategy (Table 5; default mgda; synthetic: constant, see SYNTHETIC_DEFAULTS)")
    a("--lam", type=float, default=1.0, help="lambda of 'constant', lambda_max of 'scheduler' (default 1)")
    a("--lam-min", type=float, default=0.0, help="Eq. 13 floor lambda_min (default 0)")
    a("--sched-a", type=float, default=1.0, help="Eq. 13 shape a in (0,1] (default 1)")
    a("--sched-b", type=float, default=1.0, help="Eq. 13 shape b > 0 (default 1)")
    a("--separate-epochs", type=float, default=None,
      help="'separate': epochs of PWTP-only training before it is frozen (default: a quarter of --epochs, ours)")
    a("--crop-size", type=int, default=None, help="training/test crop (default 224; x3d_xs 160)")
    a("--epochs", type=int, default=None)
    a("--batch-size", type=int, default=None, help="clips per process per step")
    a("--lr", type=float, default=None,
      help="base learning rate (default: the paper's, scaled linearly to batch-size x processes)")
    a("--weight-decay", type=float, default=None)
    a("--dropout", type=float, default=None, help="dropout before the classifier")
    a("--warmup-epochs", type=float, default=None, help="linear warm-up (default 7 on large sets)")
    a("--pwtp-lr-mult", type=float, default=None, help="PWTP learning-rate multiplier (ViT: 5)")
    a("--pretrained", default=None, help="weights for the backbone (passed to backbones.build_model)")
    a("--freeze-bn", default=None, action=argparse.BooleanOptionalAction,
      help="freeze every BatchNorm but the first (default on for ucf101/hmdb51)")
    a("--clip-grad", type=float, default=None, help="gradient-norm clip, 0 = off (default 20)")
    a("--label-smoothing", type=float, default=None, help="default 0.1")
    a("--workers", type=int, default=None, help="data-loader processes per rank")
    a("--out", default=None, help="RUN_DIR (default runs/<dataset>-<backbone>-<input>-<joint>-<time>)")
    a("--resume", default=None, metavar="RUN_DIR",
      help="continue the run in RUN_DIR (its last.pt) exactly; its own flags are used, except "
           + ", ".join("--" + k.replace("_", "-") for k in RESUME_OVERRIDABLE[:3]))
    a("--seed", type=int, default=0)
    a("--subset", type=int, default=None, metavar="N", help="train on a random N-video subset")
    a("--overfit", type=int, default=None, metavar="N",
      help="train and validate on the same N training videos (sanity check: must reach ~100%%)")
    a("--max-steps", type=int, default=None,
      help="stop after this many optimiser steps (the LR schedule still spans --epochs); "
           "last.pt is saved and the model validated")
    a("--amp", nargs="?", const="bf16", default=None, choices=AMP_DTYPES,
      help="mixed precision: autocast to bf16 (plain --amp) or fp16 (--amp fp16, with a GradScaler "
           "against fp16's narrow range); losses, PWTP's solve and the optimiser stay in float32")
    a("--device", default="auto", help="auto | cpu | cuda (default auto)")
    a("--log-every", type=int, default=None, help="steps between progress lines / log.csv rows")
    # Debugging aid for the distributed test: every rank prints a checksum of its weights.
    a("--print-weights-checksum", action="store_true", help=argparse.SUPPRESS)
    return p


def resolve_defaults(args, world_size):
    """Fill every flag left at None: the CPU configuration for synthetic, the paper's otherwise."""
    if args.dataset == "synthetic":
        for k, v in SYNTHETIC_DEFAULTS.items():
            if getattr(args, k, None) is None:
                setattr(args, k, v)
    args.backbone = args.backbone or "tsm"
    args.joint = args.joint or "mgda"
    bb = BACKBONE_DEFAULTS[args.backbone]
    r = paper_recipe(args.dataset, args.backbone)
    args.depth = args.depth if args.depth is not None else 50
    args.small = bool(args.small)
    args.segments = args.segments or bb["segments"]
    args.frames = args.frames or 8
    args.crop_size = args.crop_size or bb["crop_size"]
    for k in ("epochs", "batch_size", "weight_decay", "dropout", "warmup_epochs", "freeze_bn",
              "clip_grad", "label_smoothing", "pwtp_lr_mult"):
        if getattr(args, k) is None:
            setattr(args, k, r[k])
    if args.lr is None:   # linear scaling rule: the paper's lr is for its total batch
        args.lr = r["lr"] * args.batch_size * world_size / r["global_batch"]
    args.workers = 4 if args.workers is None else args.workers
    args.log_every = args.log_every or 20
    if args.separate_epochs is None:
        args.separate_epochs = max(args.epochs / 4, 1e-9)
    if args.out is None:
        args.out = os.path.join("runs", f"{args.dataset}-{args.backbone}-{args.input}-{args.joint}-"
                                        f"{time.strftime('%Y%m%d-%H%M%S')}")
    for k in ("epochs", "batch_size", "segments", "frames", "crop_size"):
        if getattr(args, k) < 1:
            raise SystemExit(f"train.py: --{k.replace('_', '-')} must be >= 1, got {getattr(args, k)}")
    if args.input == "da" and not 1 <= args.proj_dim < args.frames:
        raise SystemExit(f"train.py: --proj-dim must satisfy 1 <= D < T (--frames {args.frames}), got {args.proj_dim}")
    return args


# ---------------------------------------------------------------------------------------------
# Small helpers: distributed, files, RNG
# ---------------------------------------------------------------------------------------------
def setup_distributed(device_arg):
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device_arg == "auto":
        device = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(device_arg)
        if device.type == "cuda" and device.index is None:
            device = torch.device(f"cuda:{local_rank}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit(f"train.py: --device {device_arg} asked for CUDA but none is available")
        torch.cuda.set_device(device)
    if world > 1:
        # CUDA tensors (gradients, buffers) go through NCCL; the few small CPU tensors (loss log,
        # stop flag, train accuracy) through Gloo, so neither has to be copied to the other device.
        dist.init_process_group(backend="cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo")
    return rank, world, device


def is_dist():
    return dist.is_available() and dist.is_initialized()


def atomic_write_bytes(path, write_fn):
    """Write through a temporary file in the same folder, then os.replace: a crash mid-write never
    leaves a truncated file under `path`."""
    tmp = f"{path}.tmp.{os.getpid()}"
    write_fn(tmp)
    os.replace(tmp, path)


def atomic_torch_save(obj, path):
    atomic_write_bytes(path, lambda tmp: torch.save(obj, tmp))


def atomic_json(obj, path):
    def w(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2)
    atomic_write_bytes(path, w)


def rng_state():
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(s):
    torch.set_rng_state(s["torch"])
    np.random.set_state(s["numpy"])
    random.setstate(s["python"])
    if s.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


def weights_checksum(model):
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class StopRequest:
    """SIGINT/SIGTERM set a flag; the loop finishes the current step, saves last.pt and exits.
    A second Ctrl-C interrupts at once."""

    def __init__(self):
        self.signum = None
        self._previous = {}

    def _handler(self, signum, frame):
        if self.signum == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def install(self):
        for s in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[s] = signal.signal(s, self._handler)
            except ValueError:          # not the main thread (e.g. called from a test runner thread)
                pass

    def restore(self):
        for s, h in self._previous.items():
            signal.signal(s, h)


# ---------------------------------------------------------------------------------------------
# Model-side pieces of the recipe
# ---------------------------------------------------------------------------------------------
def frozen_batchnorms(model):
    """--freeze-bn (TSN's partial BN): every BatchNorm of the backbone but the first. PWTP's own
    BatchNorm (in its MLP) belongs to the DA task and keeps learning."""
    shared = {id(p) for p in model.shared_parameters()}
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
           and not any(id(p) in shared for p in m.parameters(recurse=False))]
    return bns[1:]


def set_train_mode(model, frozen_bns):
    model.train()
    for m in frozen_bns:        # frozen BNs use (and keep) their running statistics
        m.eval()


def build_optimizer(model, args):
    """SGD, momentum 0.9. Groups: classifier x5 lr and x5 weight decay; PWTP x pwtp_lr_mult lr;
    no weight decay on biases and normalisation weights (1-D parameters)."""
    head = {id(p) for p in model.head_parameters()}
    shared = {id(p) for p in model.shared_parameters()}
    groups = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        lr_mult = 5.0 if id(p) in head else (args.pwtp_lr_mult if id(p) in shared else 1.0)
        wd = args.weight_decay * (5.0 if id(p) in head else 1.0) if p.ndim > 1 else 0.0
        groups.setdefault((lr_mult, wd), []).append(p)
    param_groups = [{"params": ps, "lr": args.lr * m, "weight_decay": wd}
                    for (m, wd), ps in sorted(groups.items())]
    return torch.optim.SGD(param_groups, lr=args.lr, momentum=0.9)


def lr_lambda_factory(warmup_steps, total_steps):
    """Per-step factor of the base lr: linear warm-up to 1, then cosine annealing to 0."""
    def f(step):
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return f


def classification_loss(logits, labels, label_smoothing):
    """L_c: cross-entropy with label smoothing, computed in float32 (also under bf16 autocast)."""
    return F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)


def broadcast_buffers(model):
    """BatchNorm running statistics from rank 0 to every rank (what DDP does by default), so all
    ranks hold identical models at every step boundary."""
    if not is_dist() or dist.get_world_size() == 1:
        return
    # One broadcast per dtype (running means/vars in float, the batch counters in int64) instead of
    # one per buffer: a ResNet-50 has ~160 of them, and each collective has a fixed latency.
    by_dtype = {}
    for b in model.buffers():
        by_dtype.setdefault(b.dtype, []).append(b)
    for bufs in by_dtype.values():
        flat = torch.cat([b.data.reshape(-1) for b in bufs])
        dist.broadcast(flat, src=0)
        i = 0
        for b in bufs:
            b.data.copy_(flat[i:i + b.numel()].view_as(b))
            i += b.numel()


def validate(model, loader, device, amp, num_classes):
    """Single-view validation on this rank's shard, gathered over ranks; returns the metrics dict."""
    with torch.random.fork_rng(devices=[]):      # creating loader iterators draws from the RNG
        scores, labels, esum, ecount, _, _ = predict(model, loader, device, amp=amp)
    if is_dist() and dist.get_world_size() > 1:
        parts = [None] * dist.get_world_size()
        dist.all_gather_object(parts, (scores, labels, esum, ecount))
        scores = torch.cat([p[0] for p in parts if p[0].numel()])
        labels = torch.cat([p[1] for p in parts])
        esum, ecount = sum(p[2] for p in parts), sum(p[3] for p in parts)
    m = classification_metrics(scores, labels, num_classes)
    return {"val_top1": m["top1"], "val_top5": m["top5"], "val_mean_class_acc": m["mean_class_acc"],
            "val_enopr": esum / ecount if ecount else None, "val_videos": int(labels.numel())}


def fmt_time(s):
    s = int(max(0, s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


# alpha: MGDA's weight (Eq. 12); lam: lambda of constant / scheduler / recognition (Eq. 13); phase:
# `separate`'s phase (1 = PWTP on L_p alone, 2 = backbone on frozen DA). Empty where it does not apply.
LOG_FIELDS = ["step", "epoch", "loss_c", "loss_p", "alpha", "lam", "phase", "lr", "clips_per_s"]


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------
def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    stop = StopRequest()
    stop.install()
    try:
        return _train(parser, args, argv, stop)
    finally:
        stop.restore()
        if is_dist():
            dist.destroy_process_group()


def _train(parser, args, argv, stop):
    import backbones
    import data
    import mgda

    rank, world, device = setup_distributed(args.device)
    main_proc = rank == 0

    def log(*a):
        if main_proc:
            print(*a, flush=True)

    # --- arguments: fresh run, or the resumed run's own flags -------------------------------
    ckpt = None
    if args.resume:
        path = args.resume if args.resume.endswith(".pt") else os.path.join(args.resume, "last.pt")
        if not os.path.isfile(path):
            raise SystemExit(f"train.py: --resume {args.resume}: no checkpoint at {path}")
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        explicit = {k for k, v in vars(parser.parse_args(argv)).items() if v != parser.get_default(k)}
        saved = dict(ckpt["args"])
        ignored = sorted(explicit - set(RESUME_OVERRIDABLE) - {"resume", "device", "amp"})
        if ignored:
            log("warning: --resume uses the run's own settings; ignoring "
                + ", ".join("--" + k.replace("_", "-") for k in ignored))
        for k in RESUME_OVERRIDABLE + ("device", "amp"):
            if k in explicit or k == "max_steps":    # a new --max-steps or none: never the old one
                saved[k] = getattr(args, k)
        saved["resume"] = args.resume
        args = argparse.Namespace(**saved)
    else:
        args = resolve_defaults(args, world)
    run_dir = args.out
    if args.resume:
        # Continue in the folder the checkpoint is in, even if the run was moved or copied since
        # (its saved --out may point elsewhere, or nowhere).
        run_dir = args.out = os.path.dirname(os.path.abspath(path))
    if not args.resume and os.path.exists(os.path.join(run_dir, "last.pt")):
        raise SystemExit(f"train.py: --out {run_dir} already holds a run (last.pt); "
                         f"continue it with --resume {run_dir} or choose another --out")
    if main_proc:
        os.makedirs(run_dir, exist_ok=True)
        atomic_json(vars(args), os.path.join(run_dir, "args.json"))
    if args.amp is True:                  # checkpoints of older runs stored --amp as a bool
        args.amp = "bf16"
    amp = AMP_DTYPES[args.amp] if args.amp else None    # autocast dtype, or None: float32
    if amp is not None and device.type != "cuda":
        log(f"note: --amp {args.amp} on {device}: CPU autocast is correct, but faster than float32 only "
            "on CPUs with native bf16/fp16 units")
    # fp16 has 5 exponent bits: small gradients underflow to 0. The scaler multiplies the losses by
    # a large factor before backward and divides the gradients by it before the step, skipping steps
    # whose gradients overflowed (and shrinking the factor). bf16 has float32's range: no scaler.
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)

    # --- seeds: model initialisation identical on every rank, then per-rank streams ----------
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    random.seed(args.seed)

    # --- data ---------------------------------------------------------------------------------
    data_root = args.data_root
    if args.dataset == "synthetic" and data_root is None:
        data_root = data.default_synthetic_root()

    def make_loaders():
        return data.build_loaders(args.dataset, data_root, split=args.split, segments=args.segments,
                                  frames=args.frames, crop_size=args.crop_size,
                                  batch_size=args.batch_size, workers=args.workers, subset=args.subset,
                                  overfit=args.overfit, seed=args.seed)
    if world > 1 and rank != 0:
        dist.barrier()                # rank 0 first: it may write the synthetic set on first use
    loaders = make_loaders()
    if world > 1 and rank == 0:
        dist.barrier()
    train_loader, train_sampler = loaders.train, loaders.train_sampler
    # data.py's val loader shards the videos over ranks (every world-th, no padding); validate()
    # gathers the predictions, so each video counts exactly once.
    val_loader = loaders.val
    steps_per_epoch = len(train_loader)
    if steps_per_epoch == 0:
        raise SystemExit(f"train.py: the training set of {args.dataset} at {data_root} gives no batch "
                         f"of {args.batch_size}; lower --batch-size or check --data-root")
    total_steps = args.epochs * steps_per_epoch

    # --- model, optimiser, schedule, joint training --------------------------------------------
    model = backbones.build_model(args.backbone, loaders.num_classes, input=args.input,
                                  segments=args.segments, frames=args.frames, proj_dim=args.proj_dim,
                                  depth=args.depth, dropout=args.dropout, pretrained=args.pretrained,
                                  small=args.small, crop_size=args.crop_size)
    model.to(device)
    if device.type == "cuda":
        # channels-last for the convolutions (4-D weights -> NHWC, 5-D -> NDHWC)
        for p in model.parameters():
            if p.dim() == 4:
                p.data = p.data.contiguous(memory_format=torch.channels_last)
            elif p.dim() == 5:
                p.data = p.data.contiguous(memory_format=torch.channels_last_3d)
    frozen_bns = frozen_batchnorms(model) if args.freeze_bn else []
    for m in frozen_bns:
        m.requires_grad_(False)
    optimizer = build_optimizer(model, args)
    warmup_steps = int(round(args.warmup_epochs * steps_per_epoch))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda_factory(warmup_steps, total_steps))
    joint = mgda.JointTraining(args.joint, lam=args.lam, total_steps=total_steps, lam_min=args.lam_min,
                               a=args.sched_a, b=args.sched_b,
                               separate_steps=max(1, int(round(args.separate_epochs * steps_per_epoch))))

    start_epoch, skip, step, best_top1, history = 0, 0, 0, -1.0, []
    epoch_acc = {"loss_sum": 0.0, "steps": 0, "correct": 0, "seen": 0}
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if scaler.is_enabled() and ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        start_epoch, skip, step = ckpt["epoch"], ckpt["batch_in_epoch"], ckpt["step"]
        best_top1, history = ckpt["best_top1"], list(ckpt["history"])
        epoch_acc = dict(ckpt["epoch_acc"])
        states = ckpt["rng"]["per_rank"]
        if len(states) == world:
            set_rng_state(states[rank])
        else:
            log(f"warning: the checkpoint has RNG states of {len(states)} ranks, this run has {world}; "
                "the continuation will not be bit-identical")
            set_rng_state(states[0])
        if main_proc:                 # drop log rows written after the checkpoint (a hard kill)
            log_path = os.path.join(run_dir, "log.csv")
            if os.path.exists(log_path):
                with open(log_path) as f:
                    rows = [r for r in csv.DictReader(f) if int(r["step"]) <= step]
                with open(log_path, "w", newline="") as f:
                    w = csv.DictWriter(f, fieldnames=LOG_FIELDS)
                    w.writeheader()
                    w.writerows(rows)
        log(f"resumed {run_dir} at step {step} (epoch {start_epoch + 1}, batch {skip})")
    else:
        torch.manual_seed(args.seed + rank)      # dropout masks differ across ranks
        np.random.seed(args.seed + rank)
        random.seed(args.seed + rank)

    n_params = sum(p.numel() for p in model.parameters())
    n_pwtp = sum(p.numel() for p in model.shared_parameters())
    log(f"{args.dataset}: {len(train_loader.dataset)} training / {len(loaders.val.dataset)} validation videos, "
        f"{loaders.num_classes} classes | {args.input.upper()}-{args.backbone}"
        f"{'-R' + str(args.depth) if args.backbone == 'tsm' else ''}{' (small)' if args.small else ''} "
        f"{n_params / 1e6:.2f} M parameters (PWTP {n_pwtp:,}) | S={args.segments} T={args.frames} "
        f"D={args.proj_dim} crop {args.crop_size} | joint {args.joint} | {world} x {device}"
        f"{' ' + args.amp if amp is not None else ''}")
    log(f"{args.epochs} epochs x {steps_per_epoch} steps, batch {args.batch_size} x {world}, "
        f"lr {args.lr:g} (warm-up {warmup_steps} steps, cosine), wd {args.weight_decay:g}, "
        f"dropout {args.dropout}, label smoothing {args.label_smoothing}, clip {args.clip_grad}"
        f"{', frozen BN: ' + str(len(frozen_bns)) if frozen_bns else ''} -> {run_dir}")

    def make_checkpoint(epoch, batch_in_epoch):
        states = [rng_state()]
        if world > 1:
            states = [None] * world
            dist.all_gather_object(states, rng_state())
        return {"model": model.state_dict(), "model_config": model.config, "args": vars(args),
                "epoch": epoch, "batch_in_epoch": batch_in_epoch, "step": step,
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict() if scaler.is_enabled() else None,
                "rng": {"per_rank": states}, "best_top1": best_top1, "history": history,
                "epoch_acc": epoch_acc, "classes": list(loaders.classes)}

    def end_of_period(epoch, batch_in_epoch, partial):
        """Validate, record metrics, save best.pt/last.pt. `partial`: stopped mid-epoch."""
        nonlocal best_top1, epoch_acc
        t0 = time.time()
        metrics = validate(model, val_loader, device, amp, loaders.num_classes)
        if is_dist() and world > 1:
            acc = torch.tensor([epoch_acc["correct"], epoch_acc["seen"]], dtype=torch.float64)
            dist.all_reduce(acc)
            correct, seen = acc.tolist()
        else:
            correct, seen = epoch_acc["correct"], epoch_acc["seen"]
        done = batch_in_epoch if partial else steps_per_epoch
        entry = {"epoch": epoch + (done / steps_per_epoch if partial else 1), "step": step,
                 "train_loss": epoch_acc["loss_sum"] / max(1, epoch_acc["steps"]),
                 "train_top1": 100.0 * correct / max(1, seen), **metrics, "partial": partial}
        history.append(entry)
        improved = metrics["val_top1"] > best_top1
        if improved:
            best_top1 = metrics["val_top1"]
        if not partial:
            epoch_acc = {"loss_sum": 0.0, "steps": 0, "correct": 0, "seen": 0}
        ck = make_checkpoint(epoch + (0 if partial else 1), batch_in_epoch if partial else 0)
        if main_proc:
            if improved:
                atomic_torch_save(ck, os.path.join(run_dir, "best.pt"))
            atomic_torch_save(ck, os.path.join(run_dir, "last.pt"))
            atomic_json(history, os.path.join(run_dir, "metrics.json"))
        enopr_txt = f" | ENoPR {metrics['val_enopr']:.4f}" if metrics["val_enopr"] is not None else ""
        for ds in (train_loader.dataset, val_loader.dataset):   # unreadable videos, counted by data.py
            note = ds.report_skipped() if hasattr(ds, "report_skipped") else ""
            if note:
                log("warning: " + note)
        log(f"epoch {entry['epoch']:.2f} validation ({metrics['val_videos']} videos, {time.time() - t0:.1f} s): "
            f"top-1 {metrics['val_top1']:.2f} % | top-5 {metrics['val_top5']:.2f} % | "
            f"mean class {metrics['val_mean_class_acc']:.2f} %{enopr_txt} | train loss "
            f"{entry['train_loss']:.4f} train top-1 {entry['train_top1']:.1f} %{' *best*' if improved else ''}")
        return entry

    # --- the loop -------------------------------------------------------------------------------
    log_file = None
    if main_proc:
        log_path = os.path.join(run_dir, "log.csv")
        new = not os.path.exists(log_path)
        log_file = open(log_path, "a", newline="")
        log_writer = csv.DictWriter(log_file, fieldnames=LOG_FIELDS)
        if new:
            log_writer.writeheader()
    trainable = [p for p in model.parameters() if p.requires_grad]
    step_time, t_last, finished, reason = None, time.time(), True, None
    try:
        for epoch in range(start_epoch, args.epochs):
            train_sampler.set_epoch(epoch, skip_batches=skip)
            if hasattr(train_loader.dataset, "set_epoch"):
                train_loader.dataset.set_epoch(epoch)
            batch_in_epoch, skip = skip, 0
            set_train_mode(model, frozen_bns)
            # Creating the iterator draws a base seed from the global torch RNG; keep that draw out
            # of the RNG stream so an uninterrupted and a resumed run see the same dropout masks.
            with torch.random.fork_rng(devices=[]):
                batches = iter(train_loader)
            while True:
                try:
                    clip, labels = next(batches)
                except StopIteration:
                    break
                except Exception:
                    if stop.signum is not None:   # a worker killed by the same signal: stop cleanly
                        break
                    raise
                clip = clip.to(device, non_blocking=True)          # (B, S*T, C, H, W)
                labels = labels.to(device, non_blocking=True)      # (B,)
                with autocast(device, amp):                        # --amp: bf16 / fp16, else float32
                    out = model(clip)
                loss_c = classification_loss(out.logits, labels, args.label_smoothing)
                loss_p = out.pwtp.enopr.float().mean() if out.pwtp is not None else None   # Eq. 8
                # One small all-reduce: the losses for the log (averaged over ranks), a stop flag, so
                # that every rank agrees to stop after this step, and the finiteness check.
                stats = torch.tensor([loss_c.item(), loss_p.item() if loss_p is not None else 0.0,
                                      1.0 if stop.signum is not None else 0.0], dtype=torch.float64)
                if world > 1:
                    dist.all_reduce(stats)
                    stats[:2] /= world
                if not torch.isfinite(stats[:2]).all():
                    raise SystemExit(f"train.py: non-finite loss at step {step + 1} (epoch {epoch + 1}, "
                                     f"batch {batch_in_epoch + 1}): L_c={stats[0].item()}, "
                                     f"L_p={stats[1].item()}. Stopped before updating the model; the last "
                                     f"good checkpoint in {run_dir}/last.pt is untouched. Try a lower --lr.")
                optimizer.zero_grad(set_to_none=True)
                # scaler.scale is the identity unless --amp fp16. Scaling both losses by the same
                # factor leaves MGDA's alpha (Eq. 12 is invariant to a common scale) and lambda intact.
                info = joint.backward(model, scaler.scale(loss_c),
                                      scaler.scale(loss_p) if loss_p is not None else None,
                                      step)                          # every .grad, averaged over ranks
                scaler.unscale_(optimizer)                           # true gradients before clipping
                if args.clip_grad and args.clip_grad > 0:
                    norm = torch.nn.utils.clip_grad_norm_([p for p in trainable if p.grad is not None],
                                                          args.clip_grad)
                    # Under fp16 an overflow is routine: the scaler skips this step and lowers its
                    # factor. Otherwise it means the run has diverged.
                    if not scaler.is_enabled() and not torch.isfinite(norm):
                        raise SystemExit(f"train.py: non-finite gradient norm at step {step + 1} "
                                         f"(epoch {epoch + 1}); the last good checkpoint in "
                                         f"{run_dir}/last.pt is untouched. Try a lower --lr.")
                lr_now = args.lr * scheduler.lr_lambdas[0](step)    # base lr of this step
                scaler.step(optimizer)                               # optimizer.step(), or a skip
                scaler.update()
                scheduler.step()
                broadcast_buffers(model)
                step += 1
                batch_in_epoch += 1
                with torch.no_grad():
                    epoch_acc["loss_sum"] += stats[0].item()
                    epoch_acc["steps"] += 1
                    epoch_acc["correct"] += int((out.logits.argmax(1) == labels).sum())
                    epoch_acc["seen"] += labels.numel()
                # Free x_hat and residual (each as large as the clip) now, not after the next forward.
                del out

                now = time.time()
                dt, t_last = now - t_last, now
                step_time = dt if step_time is None else 0.9 * step_time + 0.1 * dt
                if step == 1 or step % args.log_every == 0 or batch_in_epoch == steps_per_epoch:
                    clips_per_s = args.batch_size * world / max(step_time, 1e-9)
                    row = {"step": step, "epoch": epoch + 1, "loss_c": f"{stats[0].item():.6f}",
                           "loss_p": f"{stats[1].item():.6f}" if loss_p is not None else "",
                           "alpha": f"{info['alpha']:.6f}" if "alpha" in info else "",
                           "lam": f"{info['lam']:.6f}" if "lam" in info else "",
                           "phase": info.get("phase", ""),
                           "lr": f"{lr_now:.6g}", "clips_per_s": f"{clips_per_s:.2f}"}
                    if main_proc:
                        log_writer.writerow(row)
                        log_file.flush()
                    weight = (f" alpha {info['alpha']:.3f}" if "alpha" in info else
                              f" lam {info['lam']:.3f}" if "lam" in info else
                              f" phase {info['phase']}" if "phase" in info else "")
                    lp = f" L_p {stats[1].item():.4f}" if loss_p is not None else ""
                    log(f"epoch {epoch + 1}/{args.epochs} step {step}/{total_steps} | L_c {stats[0].item():.4f}"
                        f"{lp}{weight} | lr {lr_now:.3g} | {clips_per_s:.1f} clips/s | "
                        f"ETA {fmt_time(step_time * (total_steps - step))}")
                if stats[2] > 0:
                    reason = "signal"
                    break
                if args.max_steps is not None and args.max_steps <= step < total_steps:
                    reason = "max_steps"
                    break
            if reason == "signal":
                if batch_in_epoch >= steps_per_epoch:     # the signal came with the epoch's last step
                    end_of_period(epoch, batch_in_epoch, partial=False)
                else:                                      # mid-epoch: save the position, no validation
                    ck = make_checkpoint(epoch, batch_in_epoch)
                    if main_proc:
                        atomic_torch_save(ck, os.path.join(run_dir, "last.pt"))
                finished = False
                break
            if reason == "max_steps":
                end_of_period(epoch, batch_in_epoch, partial=batch_in_epoch < steps_per_epoch)
                finished = False
                break
            end_of_period(epoch, batch_in_epoch, partial=False)
    finally:
        if log_file is not None:
            log_file.close()

    if args.print_weights_checksum:
        print(f"rank {rank} weights sha256 {weights_checksum(model)}", flush=True)
    last = history[-1] if history else None
    if reason == "signal":
        name = signal.Signals(stop.signum).name
        log(f"stopped by {name} at step {step}; saved {run_dir}/last.pt. Continue with: "
            f"python train.py --resume {run_dir}")
        raise SystemExit(128 + int(stop.signum))
    if reason == "max_steps":
        log(f"stopped at --max-steps {args.max_steps} (step {step} of {total_steps}); continue with: "
            f"python train.py --resume {run_dir}")
    if last is not None:
        enopr_txt = f", ENoPR {last['val_enopr']:.4f}" if last["val_enopr"] is not None else ""
        log(f"final validation: top-1 {last['val_top1']:.2f} %, top-5 {last['val_top5']:.2f} %, "
            f"mean class accuracy {last['val_mean_class_acc']:.2f} %{enopr_txt} (best top-1 {best_top1:.2f} %)")
    log(f"files: {run_dir}/log.csv, metrics.json, args.json, last.pt, best.pt; "
        f"multi-view test: python evaluate.py --checkpoint {run_dir}/best.pt --clips 2 --crops 3")
    return {"history": history, "best_top1": best_top1, "step": step, "finished": finished,
            "run_dir": run_dir, "model": model}


if __name__ == "__main__":
    main()
