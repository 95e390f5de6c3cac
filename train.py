"""Train a dynamic-appearance (DA) action-recognition model with joint training (Sec. 3.4-3.5).

    python train.py                                             # quick start: synthetic set, CPU, minutes
    python train.py --dataset ucf101 --data-root DIR --backbone tsm --pretrained K400.pt
    torchrun --nproc_per_node=8 train.py --dataset sthv1 --data-root DIR --backbone tsm --amp
    python train.py --resume RUN_DIR                            # continue a stopped run exactly

The file reads in the order a run happens:
    1. the parser and the recipe          build_parser, paper_recipe, resolve_defaults
    2. opening or resuming a run          open_run (evaluate.setup_distributed), StopRequest, RNG states
    3. the model and the optimiser        build_optimizer, frozen_batchnorms, lr_lambda_factory
    4. one training step                  train_step -> StepResult
    5. the end of an epoch                validate, make_checkpoint, end_of_period
    6. the log                            LOG_FIELDS, LogWriter
    7. main                               the batch loop

One step (train_step; Algorithm 1 for --joint mgda), for each of --accum-steps K micro-batches:
    clip (B, S*T, C, H, W) -> model -> logits (B, K), PWTP output (enopr (B*S,), bases A)
    L_c = cross-entropy with label smoothing 0.1       (recognition loss)
    L_p = mean ENoPR over the segments                  (Eq. 7-8, projection loss, pwtp.projection_loss)
    mgda.JointTraining.accumulate(model, L_c, L_p, bases=A) keeps g_c and g_p apart
then mgda.JointTraining.step(model, step) derives alpha once (Eq. 12) and writes every .grad;
clip the gradient norm at 20, SGD step, cosine LR with linear warm-up (per step).

Recipe (Appendix A): SGD with momentum 0.9; cosine learning rate with linear warm-up; label
smoothing 0.1; gradient clipping at 20; dropout before the classifier; learning rate and weight
decay x5 for the classifier; weight decay on conv/linear weights only (not on biases or norms:
"L2 regularisation of the convolutional and classification layers"); UCF101/HMDB51 fine-tuning
freezes every BatchNorm but the first (--freeze-bn). ViT: no dropout, no clipping, no label
smoothing, PWTP learning rate x5.

Defaults. Every flag left unset is filled from the recipe of the run's starting point
(--pretrained: a Kinetics video model -> the paper's Appendix A, paper_recipe; ImageNet weights ->
imagenet_recipe; random weights -> scratch_recipe; see choose_recipe). Learning rates are given
for a total batch and scaled linearly to yours (--batch-size x --accum-steps x processes). For
--dataset synthetic (the default) a CPU-sized configuration is used instead (SYNTHETIC_DEFAULTS:
a narrow TSM-R18 at 64x64, S=4 segments of T=4 frames) that learns the synthetic set in a few
minutes on 2 cores.

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
import contextlib
import csv
import io
import math
import os
import random
import signal
import time
from typing import NamedTuple, Optional

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

import pwtp
from backbones import BACKBONES, INPUTS
from data import DATASETS
from evaluate import (AMP_DTYPES, atomic_json, atomic_torch_save, autocast, classification_metrics,
                      distributed, fmt_time, gather_predictions, load_checkpoint, mean_nll, predict,
                      setup_distributed)
from mgda import NORMALIZERS, SPACES, STRATEGIES

# =============================================================================================
# 1. The parser and the recipe
# =============================================================================================
# The CPU quick start (used for --dataset synthetic, flag by flag, for every flag the user leaves
# unset). Chosen on the easier synth-v2 set by a sweep over lr {0.0025, 0.005, 0.01} x T {4, 8} x
# joint {mgda, constant} (30 epochs each), and kept for synth-v4, where it reaches ~75 % in ~1.5 min
# on 2 cores (data.py, DISTRACTOR_SPEED). It uses constant lambda = 1: with plain Eq. 12, alpha
# collapses to ~0 on these clips (||g_c|| on PWTP is ~1000x ||g_p||, see log.csv), so PWTP then
# follows L_p alone. README, "The paper's claims", has the numbers. Real datasets default to mgda.
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


def imagenet_recipe(dataset, backbone):
    """From ImageNet weights. Appendix A trains Kinetics and Something-Something from ImageNet,
    and its ViT recipe starts from ImageNet weights too: for those, the paper's recipe. UCF101 and
    HMDB51 the paper only fine-tunes from Kinetics; from ImageNet we follow TSM's published
    recipe for a small set (mit-han-lab/temporal-shift-module scripts: lr 0.02 for 128 clips,
    i.e. 0.01 for 64, dropout 0.8, weight decay 5e-4, partial BN as in TSN), with our cosine
    schedule over 25 epochs (TSM: 25 epochs, steps at 10 and 20) and 1 warm-up epoch (ours)."""
    if backbone.startswith("vit") or dataset not in ("ucf101", "hmdb51"):
        return paper_recipe(dataset, backbone)
    return dict(label_smoothing=0.1, clip_grad=20.0, pwtp_lr_mult=1.0, freeze_bn=True, warmup_epochs=1,
                lr=0.01, global_batch=64, batch_size=8, epochs=25, weight_decay=5e-4, dropout=0.8)


def scratch_recipe(dataset, backbone):
    """From random weights (ours: the paper never trains from scratch). Every BatchNorm trains
    (frozen statistics of a random network mean nothing), a 2-epoch warm-up, modest dropout, and
    the learning rate that learns the synthetic set in a few dozen epochs (0.005 for 8 clips,
    i.e. 0.04 for 64), for 50 epochs."""
    return dict(label_smoothing=0.1, clip_grad=20.0, pwtp_lr_mult=1.0, freeze_bn=False, warmup_epochs=2,
                lr=0.04, global_batch=64, batch_size=8, epochs=50, weight_decay=1e-4, dropout=0.3)


def choose_recipe(args, start):
    """(recipe, why) for the starting point `start`: "kinetics" (a video model: the TSM authors',
    pytorchvideo's or one of ours), "imagenet" or "none"."""
    if start == "kinetics":
        return paper_recipe(args.dataset, args.backbone), (
            "fine-tuning a video (Kinetics) model: the paper's recipe (Appendix A)")
    if start == "imagenet":
        small = args.dataset in ("ucf101", "hmdb51") and not args.backbone.startswith("vit")
        return imagenet_recipe(args.dataset, args.backbone), (
            "from ImageNet weights: TSM's recipe for a small set" if small else
            "from ImageNet weights: the paper's recipe (Appendix A)")
    return scratch_recipe(args.dataset, args.backbone), (
        "from random weights: trainable BatchNorm, warm-up, modest dropout (the paper's recipes "
        "assume pretrained weights and learn nothing from scratch)")


# Flags that may be changed when resuming: they do not change the computation (--lr does, and
# says so when it is used).
RESUME_OVERRIDABLE = ("max_steps", "workers", "log_every", "tensorboard", "lr")


def add_joint_flags(a):
    """The joint-training flags (Sec. 3.4-3.5, Table 5, Eq. 12-13); `a` is parser.add_argument."""
    a("--joint", default=None, choices=STRATEGIES,
      help="joint-training strategy (Table 5; default mgda; synthetic: constant, see SYNTHETIC_DEFAULTS)")
    # Default loss+ (ours, by bench.py claims; README "The paper's claims"): with plain Eq. 12 alpha
    # collapses to ~0.08 on the synthetic set (||g_c|| ~ 1000 x ||g_p|| on PWTP) and PWTP follows
    # L_p alone; loss+ keeps alpha at ~0.84 and matched constant lambda's accuracy, plain Eq. 12 fell
    # below it. The paper's Eq. 12 is one flag away: --mgda-normalize none.
    a("--mgda-normalize", default="loss+", choices=NORMALIZERS,
      help="divide each task's gradient by 1, ||g||, L or L*||g|| before Eq. 12 (Sener & Koltun's "
           "gradient_normalizers); alpha then weighs the raw gradients (default loss+, chosen by "
           "bench.py claims; none = the paper's plain Eq. 12)")
    a("--mgda-space", default="params", choices=SPACES,
      help="where Eq. 12 is solved: params = the PWTP parameters (Algorithm 1), bases = the per-pixel "
           "bases A (the MGDA-UB analogue) (default params)")
    a("--lam", type=float, default=1.0, help="lambda of 'constant', lambda_max of 'scheduler' (default 1)")
    a("--lam-min", type=float, default=0.0, help="Eq. 13 floor lambda_min (default 0)")
    a("--sched-a", type=float, default=1.0, help="Eq. 13 shape a in (0,1] (default 1)")
    a("--sched-b", type=float, default=1.0, help="Eq. 13 shape b > 0 (default 1)")
    a("--separate-epochs", type=float, default=None,
      help="'separate': epochs of PWTP-only training before it is frozen (default: a quarter of --epochs, ours)")


def build_parser():
    p = argparse.ArgumentParser(
        description="Train a dynamic-appearance action-recognition model with joint training "
                    "(MGDA by default). Unset flags take the recipe of the --pretrained starting point; "
                    "with --dataset synthetic (the default) a CPU-sized configuration is used instead: "
                    + ", ".join(f"{k}={v}" for k, v in SYNTHETIC_DEFAULTS.items()) + ".",
        epilog="Example: python train.py --dataset ucf101 --data-root ~/data/ucf101 --backbone tsm "
               "--pretrained k400_da_tsm.pt --out runs/ucf-da-tsm")
    a = p.add_argument
    a("--dataset", default="synthetic", choices=DATASETS, help="dataset (default synthetic)")
    a("--data-root", default=None, help="dataset folder (synthetic: data.default_synthetic_root())")
    a("--split", type=int, default=1, help="UCF101/HMDB51 split 1-3; synthetic also 4 and 5, the static-bias split (default 1)")
    a("--backbone", default=None, choices=BACKBONES, help="default tsm")
    a("--depth", type=int, default=None, help="ResNet depth for tsm (default 50; synthetic 18)")
    a("--small", default=None, action=argparse.BooleanOptionalAction,
      help="narrow CPU-sized backbone (default off; synthetic on)")
    a("--input", default="da", choices=INPUTS, help="representation fed to the backbone (default da)")
    a("--segments", type=int, default=None, help="S segments (default: 8 tsm/vit, 4 x3d_xs, 16 x3d_m)")
    a("--frames", type=int, default=None, help="T frames per segment (default 8)")
    a("--proj-dim", type=int, default=1, help="D, dimension of the per-pixel subspace (default 1)")
    add_joint_flags(a)
    a("--crop-size", type=int, default=None, help="training/test crop (default 224; x3d_xs 160)")
    a("--epochs", type=int, default=None)
    a("--batch-size", type=int, default=None, help="clips per process per micro-batch")
    a("--accum-steps", type=int, default=1, metavar="K",
      help="gradient accumulation: K micro-batches of --batch-size per optimiser step, so 1-2 GPUs "
           "reach the paper's total batch (MGDA derives alpha once, from the accumulated g_c and g_p)")
    a("--lr", type=float, default=None,
      help="base learning rate (default: the starting point's recipe, scaled linearly to "
           "batch-size x accum-steps x processes)")
    a("--weight-decay", type=float, default=None)
    a("--dropout", type=float, default=None, help="dropout before the classifier")
    a("--warmup-epochs", type=float, default=None, help="linear warm-up (default 7 on large sets)")
    a("--pwtp-lr-mult", type=float, default=None, help="PWTP learning-rate multiplier (ViT: 5)")
    a("--input-scale", type=float, default=1.0,
      help="fixed gain on the frames the backbone sees (ours; DA frames are ~30x smaller than normalised "
           "RGB; default 1 = the paper's model)")
    a("--pretrained", default=None, metavar="{none,imagenet,PATH}",
      help="starting point, which also picks the recipe: PATH = a Kinetics video model (the TSM authors' "
           "or pytorchvideo's checkpoint, or a train.py best.pt/last.pt/export) or a torchvision state dict; "
           "imagenet = torchvision's ImageNet weights (downloaded once); none = random weights. "
           "Default: imagenet for tsm/vit_b16 on real datasets, none for x3d, small models and synthetic")
    a("--freeze-bn", default=None, action=argparse.BooleanOptionalAction,
      help="freeze every BatchNorm but the first (default: on when fine-tuning a pretrained model on "
           "ucf101/hmdb51, off from scratch)")
    a("--clip-grad", type=float, default=None, help="gradient-norm clip, 0 = off (default 20)")
    a("--label-smoothing", type=float, default=None, help="default 0.1")
    a("--workers", type=int, default=None, help="data-loader processes per rank")
    a("--out", default=None, help="RUN_DIR (default runs/<dataset>-<backbone>-<input>-<joint>-<time>)")
    a("--resume", default=None, metavar="RUN_DIR|auto",
      help="continue the run in RUN_DIR (its last.pt) exactly; its own flags are used, except "
           + ", ".join("--" + k.replace("_", "-") for k in RESUME_OVERRIDABLE) + " (--lr changes the run). "
           "auto: resume --out if it holds last.pt, else start it (one command for a first start and "
           "every requeue)")
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
    a("--device", default="auto", help="auto | cpu | cuda (default auto; may change on --resume, as --amp)")
    a("--log-every", type=int, default=None, help="steps between progress lines / log.csv rows")
    a("--tensorboard", action="store_true",
      help="also write log.csv's scalars to RUN_DIR/tensorboard (needs the tensorboard package)")
    return p


def resolve_defaults(args, world_size, start):
    """Fill every flag left at None: the CPU configuration for synthetic; otherwise the recipe of
    the starting point `start` (see choose_recipe), which is printed with its reason."""
    if args.dataset == "synthetic":
        for k, v in SYNTHETIC_DEFAULTS.items():
            if getattr(args, k, None) is None:
                setattr(args, k, v)
    args.backbone = args.backbone or "tsm"
    args.joint = args.joint or "mgda"
    bb = BACKBONE_DEFAULTS[args.backbone]
    r, why = choose_recipe(args, start)
    args.recipe = "synthetic quick start (CPU-sized)" if args.dataset == "synthetic" else why
    args.depth = args.depth if args.depth is not None else 50
    args.small = bool(args.small)
    for k, default in (("segments", bb["segments"]), ("frames", 8), ("crop_size", bb["crop_size"])):
        if getattr(args, k) is None:      # `is None`, not falsy: --segments 0 is an error, not 8
            setattr(args, k, default)
    for k in ("epochs", "batch_size", "weight_decay", "dropout", "warmup_epochs", "freeze_bn",
              "clip_grad", "label_smoothing", "pwtp_lr_mult"):
        if getattr(args, k) is None:
            setattr(args, k, r[k])
    if args.lr is None:   # linear scaling rule: the recipe's lr is for its total batch
        args.lr = r["lr"] * args.batch_size * args.accum_steps * world_size / r["global_batch"]
    args.workers = 4 if args.workers is None else args.workers
    args.log_every = 20 if args.log_every is None else args.log_every
    if args.separate_epochs is None:
        args.separate_epochs = max(args.epochs / 4, 1e-9)
    if args.out is None:
        args.out = os.path.join("runs", f"{args.dataset}-{args.backbone}-{args.input}-{args.joint}-"
                                        f"{time.strftime('%Y%m%d-%H%M%S')}")
    check_flags(args)
    return args


def check_flags(args):
    """Reject every out-of-range flag with a message that names it (argparse only checks types).
    The crop bounds are ours: below them a backbone's feature map vanishes (ResNet and X3D
    downsample 32x; ViT needs whole 16-pixel patches); above 1024 a clip no longer fits memory."""
    min_crop = 16 if args.backbone.startswith("vit") else 32
    rules = [
        ("epochs", args.epochs >= 1, ">= 1"), ("batch_size", args.batch_size >= 1, ">= 1"),
        ("accum_steps", args.accum_steps >= 1, ">= 1"),
        ("segments", args.segments >= 1, ">= 1"), ("frames", args.frames >= 1, ">= 1"),
        ("crop_size", min_crop <= args.crop_size <= 1024, f"in [{min_crop}, 1024] for {args.backbone}"),
        ("lr", args.lr > 0, "> 0"), ("dropout", 0 <= args.dropout < 1, "in [0, 1)"),
        ("weight_decay", args.weight_decay >= 0, ">= 0"), ("workers", args.workers >= 0, ">= 0"),
        ("warmup_epochs", args.warmup_epochs >= 0, ">= 0"), ("clip_grad", args.clip_grad >= 0, ">= 0 (0 = off)"),
        ("label_smoothing", 0 <= args.label_smoothing < 1, "in [0, 1)"),
        ("pwtp_lr_mult", args.pwtp_lr_mult > 0, "> 0"), ("lam", args.lam >= 0, ">= 0"),
        ("input_scale", args.input_scale > 0, "> 0"),
        ("sched_a", 0 < args.sched_a <= 1, "in (0, 1] (Eq. 13)"), ("sched_b", args.sched_b > 0, "> 0 (Eq. 13)"),
        ("lam_min", 0 <= args.lam_min <= args.lam, "in [0, --lam] (Eq. 13)"),
        ("separate_epochs", args.separate_epochs > 0, "> 0"), ("log_every", args.log_every >= 1, ">= 1"),
        ("split", args.split >= 1, ">= 1"),
        ("max_steps", args.max_steps is None or args.max_steps >= 1, ">= 1"),
        ("subset", args.subset is None or args.subset >= 1, ">= 1"),
        ("overfit", args.overfit is None or args.overfit >= 1, ">= 1"),
    ]
    for flag, ok, expected in rules:
        if not ok:
            raise SystemExit(f"train.py: --{flag.replace('_', '-')} must be {expected}, got {getattr(args, flag)}")
    if args.backbone.startswith("vit") and args.crop_size % 16:
        raise SystemExit(f"train.py: --crop-size must be a multiple of 16 for vit_b16, got {args.crop_size}")
    if args.input == "da" and not 1 <= args.proj_dim < args.frames:
        raise SystemExit(f"train.py: --proj-dim must satisfy 1 <= D < T (--frames {args.frames}), got {args.proj_dim}")
    if args.input in ("da", "rgbdiff", "dynimg") and args.frames < 2:
        raise SystemExit(f"train.py: --input {args.input} needs --frames >= 2 (a segment of T frames), got {args.frames}")


# =============================================================================================
# 2. Opening or resuming a run
# =============================================================================================
VIDEO_FORMATS = ("tsm", "pytorchvideo-x3d", "this-project")    # backbones.checkpoint_format's video models


def starting_point(args, log):
    """(start, weights): what --pretrained asks for, as "kinetics" (a video model), "imagenet" or
    "none", and the loaded file for a PATH (None otherwise). No flag: ImageNet weights where
    torchvision publishes them (tsm and vit_b16 at full size), random weights elsewhere."""
    import backbones

    p = args.pretrained
    if p is None:
        has_imagenet = (args.backbone or "tsm") in ("tsm", "vit_b16") and not args.small
        if args.dataset == "synthetic" or not has_imagenet:
            if args.dataset != "synthetic":
                log(f"note: no ImageNet weights exist for {args.backbone or 'tsm'}{' (small)' if args.small else ''}: "
                    "training from random weights (--pretrained none); pass --pretrained PATH for a Kinetics model")
            args.pretrained = "none"
            return "none", None
        args.pretrained = "imagenet"
        return "imagenet", None
    if p in ("none", "imagenet"):
        return p, None
    weights = read_weights(p)
    try:
        fmt = backbones.checkpoint_format(weights, f"train.py: --pretrained {p}")[0]
    except ValueError as e:
        raise SystemExit(str(e)) from None
    return ("kinetics" if fmt in VIDEO_FORMATS else "imagenet"), weights


def read_weights(path):
    """A --pretrained file (evaluate.read_torch_file: weights-only first, with a warning when the
    file needs full unpickling)."""
    from evaluate import read_torch_file
    try:
        return read_torch_file(path, "train.py: --pretrained", warn=True)
    except FileNotFoundError as e:
        raise SystemExit(f"{e} (expected PATH, imagenet or none)") from None
    except ValueError as e:
        raise SystemExit(str(e)) from None


def open_run(parser, args, argv, world, log):
    """(args, checkpoint or None, weights or None): a fresh run's completed flags (and its
    --pretrained file), or a resumed run's own flags (plus the RESUME_OVERRIDABLE ones given now)
    and its last.pt."""
    if args.resume == "auto":
        if not args.out:
            raise SystemExit("train.py: --resume auto needs --out RUN_DIR (the run to start or continue)")
        args.resume = args.out if os.path.isfile(os.path.join(args.out, "last.pt")) else None
        if args.resume:
            log(f"--resume auto: {args.out} holds last.pt; continuing it")
    if not args.resume:
        start, weights = starting_point(args, log)
        args = resolve_defaults(args, world, start)
        if os.path.exists(os.path.join(args.out, "last.pt")):
            raise SystemExit(f"train.py: --out {args.out} already holds a run (last.pt); "
                             f"continue it with --resume {args.out} or choose another --out")
        return args, None, weights
    path = args.resume if args.resume.endswith(".pt") else os.path.join(args.resume, "last.pt")
    if not os.path.isfile(path):
        raise SystemExit(f"train.py: --resume {args.resume}: no checkpoint at {path}")
    try:
        ckpt = load_checkpoint(path, "train.py", "--resume")
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(str(e)) from None
    missing = [k for k in ("args", "optimizer", "scheduler", "rng", *new_state()) if k not in ckpt]
    if missing:
        raise SystemExit(f"train.py: --resume {path} is not a training checkpoint (no {', '.join(missing)}): "
                         "an evaluate.py --export file? Use it as --pretrained PATH to start a new run")
    given = vars(parser.parse_args(argv))
    saved = dict(ckpt["args"])
    explicit = {k for k, v in given.items() if v != parser.get_default(k) and v != saved.get(k)}
    ignored = sorted(explicit - set(RESUME_OVERRIDABLE) - {"resume", "device", "amp", "out"})
    if ignored:
        log("warning: --resume uses the run's own settings; ignoring "
            + ", ".join("--" + k.replace("_", "-") for k in ignored))
    for k in RESUME_OVERRIDABLE + ("device", "amp"):
        if k in explicit or k == "max_steps":    # a new --max-steps or none: never the old one
            saved[k] = given[k]
    saved["resume"] = args.resume
    # Continue in the folder the checkpoint is in, even if the run was moved or copied since
    # (its saved --out may point elsewhere, or nowhere).
    saved["out"] = os.path.dirname(os.path.abspath(path))
    if saved.get("amp") is True:           # checkpoints of older runs stored --amp as a bool
        saved["amp"] = "bf16"
    for k, v in vars(parser.parse_args([])).items():    # flags added since the run was started
        saved.setdefault(k, v)
    args = argparse.Namespace(**saved)
    check_flags(args)                      # the flags given now (--lr, --workers, ...) too
    return args, ckpt, None


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


def seed_everything(seed):
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def rng_state():
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(s):
    torch.set_rng_state(s["torch"])
    np.random.set_state(s["numpy"])
    random.setstate(s["python"])
    if s.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


# =============================================================================================
# 3. The model, the optimiser and the schedule
# =============================================================================================
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
    no weight decay on biases and normalisation weights (1-D parameters). Each group remembers its
    `lr_mult`, so the base learning rate of a step is group["lr"] / group["lr_mult"]."""
    head = {id(p) for p in model.head_parameters()}
    shared = {id(p) for p in model.shared_parameters()}
    groups = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        lr_mult = 5.0 if id(p) in head else (args.pwtp_lr_mult if id(p) in shared else 1.0)
        wd = args.weight_decay * (5.0 if id(p) in head else 1.0) if p.ndim > 1 else 0.0
        groups.setdefault((lr_mult, wd), []).append(p)
    param_groups = [{"params": ps, "lr": args.lr * m, "weight_decay": wd, "lr_mult": m}
                    for (m, wd), ps in sorted(groups.items())]
    return torch.optim.SGD(param_groups, lr=args.lr, momentum=0.9)


def base_lr(optimizer):
    """The base learning rate the optimiser will use for its next step (before the multipliers)."""
    g = optimizer.param_groups[0]
    return g["lr"] / g.get("lr_mult", 1.0)


def lr_lambda_factory(warmup_steps, total_steps):
    """Per-step factor of the base lr: linear warm-up to 1, then cosine annealing to 0."""
    def f(step):
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return f


class Run(NamedTuple):
    """What a run builds once and every later function uses."""
    args: argparse.Namespace
    run_dir: str
    rank: int
    world: int
    device: torch.device
    amp: Optional[torch.dtype]          # autocast dtype, or None: float32
    loaders: object                     # data.Loaders
    model: nn.Module
    frozen_bns: list
    optimizer: torch.optim.Optimizer
    scheduler: object
    scaler: torch.amp.GradScaler
    joint: object                       # mgda.JointTraining
    steps_per_epoch: int
    total_steps: int
    log: object                         # print on rank 0 only


def build_run(args, rank, world, device, log, weights=None, resuming=False):
    """Data, model, optimiser, schedule and joint-training strategy of a run (fresh or resumed).
    `weights`: the loaded --pretrained file; a resumed run takes its weights from last.pt."""
    import backbones
    import data

    seed_everything(args.seed)            # model initialisation identical on every rank
    data_root = args.data_root
    if args.dataset == "synthetic" and data_root is None:
        data_root = data.default_synthetic_root()
    if world > 1 and rank != 0:
        dist.barrier()                    # rank 0 first: it may write the synthetic set on first use
    # One loader batch = one optimiser step = --accum-steps micro-batches (train_step splits it),
    # so the sampler's position (and an exact resume) counts optimiser steps.
    try:                                  # a missing root, a bad split file: data.py says what
        loaders = data.build_loaders(args.dataset, data_root, split=args.split, segments=args.segments,
                                     frames=args.frames, crop_size=args.crop_size,
                                     batch_size=args.batch_size * args.accum_steps,
                                     workers=args.workers, subset=args.subset, overfit=args.overfit,
                                     seed=args.seed)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"train.py: {e}") from None
    if world > 1 and rank == 0:
        dist.barrier()
    steps_per_epoch = len(loaders.train)
    if steps_per_epoch == 0:
        raise SystemExit(f"train.py: the training set of {args.dataset} at {data_root} gives no batch "
                         f"of {args.batch_size}; lower --batch-size or check --data-root")
    total_steps = args.epochs * steps_per_epoch

    imagenet = args.pretrained == "imagenet" and not resuming
    try:                                  # an offline ImageNet download says what to pass instead
        model = backbones.build_model(args.backbone, loaders.num_classes, input=args.input,
                                      segments=args.segments, frames=args.frames, proj_dim=args.proj_dim,
                                      depth=args.depth, dropout=args.dropout, small=args.small,
                                      pretrained="imagenet" if imagenet else None, crop_size=args.crop_size,
                                      input_scale=args.input_scale)
    except (RuntimeError, ValueError) as e:
        raise SystemExit(f"train.py: {e}") from None
    if weights is not None and not resuming:          # prints what was loaded and what was not
        quiet = contextlib.redirect_stdout(io.StringIO()) if rank else contextlib.nullcontext()
        with quiet:                       # rank 0 alone prints
            backbones.load_starting_point(model, weights, f"--pretrained {args.pretrained}")
    model.to(device)
    if device.type == "cuda":             # channels-last for the convolutions
        for p in model.parameters():
            if p.dim() in (4, 5):
                p.data = p.data.contiguous(memory_format=torch.channels_last if p.dim() == 4
                                           else torch.channels_last_3d)
    frozen_bns = frozen_batchnorms(model) if args.freeze_bn else []
    for m in frozen_bns:
        m.requires_grad_(False)
    optimizer, scheduler, joint, scaler = build_optimization(model, args, steps_per_epoch, device)
    return Run(args, args.out, rank, world, device, AMP_DTYPES.get(args.amp), loaders, model, frozen_bns,
               optimizer, scheduler, scaler, joint, steps_per_epoch, total_steps, log)


def build_optimization(model, args, steps_per_epoch, device):
    """(optimizer, scheduler, joint, scaler) of a run: SGD groups, warm-up + cosine over --epochs,
    the joint-training strategy, and the GradScaler (fp16 only). bench.py times with these too."""
    import mgda

    total_steps = args.epochs * steps_per_epoch
    optimizer = build_optimizer(model, args)
    warmup_steps = int(round(args.warmup_epochs * steps_per_epoch))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda_factory(warmup_steps, total_steps))
    joint = mgda.JointTraining(args.joint, lam=args.lam, total_steps=total_steps, lam_min=args.lam_min,
                               a=args.sched_a, b=args.sched_b,
                               separate_steps=max(1, int(round(args.separate_epochs * steps_per_epoch))),
                               normalize=args.mgda_normalize, space=args.mgda_space)
    # fp16 has 5 exponent bits: small gradients underflow to 0. The scaler multiplies the losses by
    # a large factor before backward and divides the gradients by it before the step, skipping steps
    # whose gradients overflowed (and shrinking the factor). bf16 has float32's range: no scaler.
    scaler = torch.amp.GradScaler(device.type, enabled=args.amp == "fp16")
    return optimizer, scheduler, joint, scaler


def new_state():
    """Everything about a run's progress that a checkpoint saves and --resume restores, whole."""
    return {"epoch": 0, "batch_in_epoch": 0, "step": 0, "best_top1": -1.0, "history": [],
            "epoch_acc": {"loss_sum": 0.0, "steps": 0, "correct": 0, "seen": 0}}


def restore(run, ckpt):
    """Load a checkpoint into the run's objects; returns its progress state."""
    run.model.load_state_dict(ckpt["model"])
    run.optimizer.load_state_dict(ckpt["optimizer"])
    run.scheduler.load_state_dict(ckpt["scheduler"])
    if run.scaler.is_enabled() and ckpt.get("scaler"):
        run.scaler.load_state_dict(ckpt["scaler"])
    states = ckpt["rng"]["per_rank"]
    if len(states) != run.world:
        run.log(f"warning: the checkpoint has RNG states of {len(states)} ranks, this run has "
                f"{run.world}; the continuation will not be bit-identical")
    set_rng_state(states[run.rank] if len(states) == run.world else states[0])
    old_lr = ckpt["args"]["lr"]
    if run.args.lr != old_lr:
        # --resume ... --lr: the schedule keeps its shape and position, scaled to the new base lr.
        ratio = run.args.lr / old_lr
        run.scheduler.base_lrs = [b * ratio for b in run.scheduler.base_lrs]
        for g in run.optimizer.param_groups:
            g["initial_lr"] *= ratio
            g["lr"] *= ratio
        run.log(f"warning: --lr {run.args.lr:g} replaces the run's {old_lr:g} from step {ckpt['step']} on; "
                "the continuation is no longer the same run as an uninterrupted one")
    return {k: ckpt[k] for k in new_state()}


# =============================================================================================
# 4. One training step
# =============================================================================================
def classification_loss(logits, labels, label_smoothing):
    """L_c: cross-entropy with label smoothing, computed in float32 (also under bf16 autocast)."""
    return F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)


def broadcast_buffers(model):
    """BatchNorm running statistics from rank 0 to every rank (what DDP does by default), so all
    ranks hold identical models at every step boundary."""
    if not distributed():
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


class StepResult(NamedTuple):
    loss_c: float               # L_c of this step, averaged over micro-batches and ranks
    loss_p: Optional[float]     # L_p (Eq. 8), likewise; None without PWTP
    correct: int                # training top-1 hits on this rank's clips
    seen: int                   # this rank's clips
    info: dict                  # alpha (mgda) / lam / phase, and ||g_c||, ||g_p||, cos (mgda.py)
    lr: float                   # the base learning rate this step used
    stop: bool                  # some rank was asked to stop (SIGINT/SIGTERM): stop after it


def train_step(run, clip, labels, step, stop_requested=False):
    """Forward, both losses, the joint-training backward, clip, SGD step, LR schedule.

    clip (K*B, S*T, C, H, W), labels (K*B,): one optimiser step over --accum-steps K micro-batches
    of B clips. Raises SystemExit on a non-finite loss, before the model is touched. Every rank
    must call it (it all-reduces)."""
    args, model, scaler = run.args, run.model, run.scaler
    sums, correct = torch.zeros(3, dtype=torch.float64), 0        # L_c, L_p, stop flag
    run.optimizer.zero_grad(set_to_none=True)
    for x, y in zip(clip.chunk(args.accum_steps), labels.chunk(args.accum_steps)):
        w = len(y) / len(labels)      # 1/K: the K micro-batch means add up to the batch mean
        x = x.to(run.device, non_blocking=True)                  # (B, S*T, C, H, W)
        y = y.to(run.device, non_blocking=True)                  # (B,)
        with autocast(run.device, run.amp):                      # --amp: bf16 / fp16, else float32
            out = model(x)
        loss_c = classification_loss(out.logits, y, args.label_smoothing) * w
        loss_p = None if out.pwtp is None else pwtp.projection_loss(out.pwtp.enopr) * w     # Eq. 8
        # The same factor on both losses leaves alpha (Eq. 12) and lambda unchanged; mgda.py keeps
        # g_c and g_p of every micro-batch apart and derives alpha once, in step().
        # scaler.scale is the identity unless --amp fp16 (then the loss scale s, see build_run).
        run.joint.accumulate(model, scaler.scale(loss_c), None if loss_p is None else scaler.scale(loss_p),
                             bases=None if out.pwtp is None else out.pwtp.A, scale=scaler.get_scale(),
                             step=step)
        sums += torch.tensor([loss_c.item(), 0.0 if loss_p is None else loss_p.item(), 0.0], dtype=torch.float64)
        correct += int((out.logits.detach().argmax(1) == y).sum())
        del out                       # free x_hat and residual (each as large as the clip) now
    # One small all-reduce: the losses for the log (averaged over ranks), a stop flag, so that
    # every rank agrees to stop after this step, and the finiteness check.
    sums[2] = float(stop_requested)
    if run.world > 1:
        dist.all_reduce(sums)
        sums[:2] /= run.world
    l_c, l_p, stop = sums.tolist()
    if not (math.isfinite(l_c) and math.isfinite(l_p)):
        stop_on_divergence(run, f"non-finite loss at step {step + 1}: L_c={l_c}, L_p={l_p}")
    info = run.joint.step(model, step)                          # every .grad, averaged over ranks
    scaler.unscale_(run.optimizer)                               # true gradients before clipping
    trainable = [p for p in model.parameters() if p.grad is not None]
    norm = torch.nn.utils.clip_grad_norm_(trainable, args.clip_grad if args.clip_grad > 0 else math.inf)
    # Under fp16 an overflow is routine: the scaler skips this step and lowers its factor.
    # Otherwise it means the run has diverged.
    if not scaler.is_enabled() and not torch.isfinite(norm):
        stop_on_divergence(run, f"non-finite gradient norm at step {step + 1}")
    lr = base_lr(run.optimizer)
    scaler.step(run.optimizer)                                   # optimizer.step(), or a skip
    scaler.update()
    run.scheduler.step()
    broadcast_buffers(model)
    return StepResult(l_c, l_p if run.model.pwtp is not None else None, correct, labels.numel(), info, lr, stop > 0)


def stop_on_divergence(run, what):
    """A non-finite loss or gradient: stop before the model is updated, and say what to do."""
    last = os.path.join(run.run_dir, "last.pt")
    lower = f"{run.args.lr / 10:g}"
    todo = (f"the last good checkpoint {last} is untouched; continue from it with a lower learning "
            f"rate: python train.py --resume {run.run_dir} --lr {lower}" if os.path.exists(last) else
            f"no checkpoint was written yet; start again with a lower --lr (e.g. {lower})")
    raise SystemExit(f"train.py: {what}. Stopped before updating the model; {todo}.")


# =============================================================================================
# 5. The end of an epoch: validation, checkpoint, metrics.json
# =============================================================================================
def validate(model, loader, device, amp, num_classes):
    """Single-view validation on this rank's shard, gathered over ranks; returns the metrics dict.

    The validation set never substitutes (data.py substitute=False): unreadable videos are left out
    of every number and counted in val_unreadable. val_loss is the held-out L_c: the mean
    cross-entropy, without label smoothing, of the predicted probabilities (bench.py's Fig. 3)."""
    with torch.random.fork_rng(devices=[]):      # creating loader iterators draws from the RNG
        p = gather_predictions(predict(model, loader, device, amp=amp))
    m = classification_metrics(p.scores, p.labels, num_classes)
    return {"val_top1": m["top1"], "val_top5": m["top5"], "val_mean_class_acc": m["mean_class_acc"],
            "val_loss": mean_nll(p.scores, p.labels),
            "val_enopr": p.enopr_sum / p.enopr_count if p.enopr_count else None,
            "val_videos": int(p.labels.numel()), "val_unreadable": p.unreadable}


def make_checkpoint(run, state):
    """Model, optimiser, schedule, scaler, every rank's RNG states and the progress `state`."""
    states = [rng_state()]
    if run.world > 1:
        states = [None] * run.world
        dist.all_gather_object(states, rng_state())
    return {"model": run.model.state_dict(), "model_config": run.model.config, "args": vars(run.args),
            "optimizer": run.optimizer.state_dict(), "scheduler": run.scheduler.state_dict(),
            "scaler": run.scaler.state_dict() if run.scaler.is_enabled() else None,
            "rng": {"per_rank": states}, "classes": list(run.loaders.classes), **state}


def save_checkpoint(run, state, best=False):
    """last.pt (and best.pt) on rank 0; a failed write (a full disk) stops the run with a clear
    message and the previous files intact (see evaluate.atomic_write)."""
    ck = make_checkpoint(run, state)              # collective: every rank takes part
    if run.rank != 0:
        return
    try:
        if best:
            atomic_torch_save(ck, os.path.join(run.run_dir, "best.pt"))
        atomic_torch_save(ck, os.path.join(run.run_dir, "last.pt"))
        atomic_json(state["history"], os.path.join(run.run_dir, "metrics.json"))
    except OSError as e:
        raise SystemExit(f"train.py: {e.strerror or e}. Free some space, then continue with: "
                         f"python train.py --resume {run.run_dir}") from None


def end_of_period(run, state, partial):
    """Validate, record metrics, save best.pt/last.pt. `partial`: stopped mid-epoch."""
    t0 = time.time()
    metrics = validate(run.model, run.loaders.val, run.device, run.amp, run.loaders.num_classes)
    acc = state["epoch_acc"]
    correct, seen = acc["correct"], acc["seen"]
    if run.world > 1:
        t = torch.tensor([correct, seen], dtype=torch.float64)
        dist.all_reduce(t)
        correct, seen = t.tolist()
    done = state["batch_in_epoch"] / run.steps_per_epoch if partial else 1
    entry = {"epoch": state["epoch"] + done, "step": state["step"],
             "train_loss": acc["loss_sum"] / max(1, acc["steps"]),
             "train_top1": 100.0 * correct / max(1, seen), **metrics, "partial": partial}
    state["history"].append(entry)
    improved = metrics["val_top1"] > state["best_top1"]
    state["best_top1"] = max(state["best_top1"], metrics["val_top1"])
    if not partial:                               # the checkpoint points at the next epoch's start
        state.update(epoch=state["epoch"] + 1, batch_in_epoch=0, epoch_acc=new_state()["epoch_acc"])
    save_checkpoint(run, state, best=improved)
    for ds in (run.loaders.train.dataset, run.loaders.val.dataset):   # unreadable videos (data.py)
        note = ds.report_skipped() if hasattr(ds, "report_skipped") else ""
        if note:
            run.log("warning: " + note)
    enopr = f" | ENoPR {metrics['val_enopr']:.4f}" if metrics["val_enopr"] is not None else ""
    run.log(f"epoch {entry['epoch']:.2f} validation ({metrics['val_videos']} videos, {time.time() - t0:.1f} s): "
            f"top-1 {metrics['val_top1']:.2f} % | top-5 {metrics['val_top5']:.2f} % | "
            f"mean class {metrics['val_mean_class_acc']:.2f} %{enopr} | train loss "
            f"{entry['train_loss']:.4f} train top-1 {entry['train_top1']:.1f} %{' *best*' if improved else ''}")


# =============================================================================================
# 6. The log: log.csv (rank 0) and the progress line
# =============================================================================================
# alpha: MGDA's weight (Eq. 12); lam: lambda of constant / scheduler / recognition (Eq. 13); phase:
# `separate`'s phase (1 = PWTP on L_p alone, 2 = backbone on frozen DA). Empty where it does not
# apply. visualize.py reads log.csv with these same columns.
# gc_norm, gp_norm, cos: ||g_c||, ||g_p|| and their cosine on the PWTP parameters (mgda.py), the
# numbers that tell whether MGDA's alpha collapses and why.
LOG_FIELDS = ["step", "epoch", "loss_c", "loss_p", "alpha", "lam", "phase", "gc_norm", "gp_norm", "cos",
              "lr", "clips_per_s"]


def summary_writer_class():
    """torch.utils.tensorboard's SummaryWriter, imported only for --tensorboard (optional extra)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise SystemExit("train.py: --tensorboard needs the tensorboard package (pip install tensorboard); "
                         "log.csv is written either way") from None
    return SummaryWriter


class LogWriter:
    """log.csv, one row per logged step, written by rank 0 (and, with --tensorboard, the same
    scalars as TensorBoard events in RUN_DIR/tensorboard; log.csv stays the record). On resume,
    rows past the checkpoint's step (written before a hard kill) are dropped, so the file matches
    an uninterrupted run's."""

    def __init__(self, run, step):
        self.file, self.writer, self.tb = None, None, None
        if run.rank != 0:
            return
        if run.args.tensorboard:
            self.tb = summary_writer_class()(os.path.join(run.run_dir, "tensorboard"), purge_step=step + 1)
        path = os.path.join(run.run_dir, "log.csv")
        rows = []
        if os.path.exists(path):
            with open(path) as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= step]
        self.file = open(path, "w", newline="")
        self.writer = csv.DictWriter(self.file, fieldnames=LOG_FIELDS)
        self.writer.writeheader()
        self.writer.writerows({k: r.get(k, "") for k in LOG_FIELDS} for r in rows)
        self.file.flush()

    def write(self, row):
        if self.writer is not None:
            self.writer.writerow(row)
            self.file.flush()
        if self.tb is not None:
            for k, v in row.items():
                if k != "step" and v != "":
                    self.tb.add_scalar(f"train/{k}", float(v), int(row["step"]))

    def close(self):
        if self.file is not None:
            self.file.close()
        if self.tb is not None:
            self.tb.close()


def log_step(run, state, r: StepResult, writer, step_time):
    """One log.csv row and one progress line."""
    info = r.info
    clips_per_s = r.seen * run.world / max(step_time, 1e-9)
    fmt = lambda k, f=".6f": format(info[k], f) if k in info else ""
    writer.write({"step": state["step"], "epoch": state["epoch"] + 1, "loss_c": f"{r.loss_c:.6f}",
                  "loss_p": "" if r.loss_p is None else f"{r.loss_p:.6f}", "alpha": fmt("alpha"),
                  "lam": fmt("lam"), "phase": info.get("phase", ""), "gc_norm": fmt("gc_norm", ".6g"),
                  "gp_norm": fmt("gp_norm", ".6g"), "cos": fmt("cos"), "lr": f"{r.lr:.6g}",
                  "clips_per_s": f"{clips_per_s:.2f}"})
    weight = (f" alpha {info['alpha']:.3f}" if "alpha" in info else f" lam {info['lam']:.3f}" if "lam" in info
              else f" phase {info['phase']}" if "phase" in info else "")
    lp = "" if r.loss_p is None else f" L_p {r.loss_p:.4f}"
    run.log(f"epoch {state['epoch'] + 1}/{run.args.epochs} step {state['step']}/{run.total_steps} | "
            f"L_c {r.loss_c:.4f}{lp}{weight} | lr {r.lr:.3g} | {clips_per_s:.1f} clips/s | "
            f"ETA {fmt_time(step_time * (run.total_steps - state['step']))}")


def describe(run):
    """The two lines that say what this run is."""
    a, m = run.args, run.model
    n_params = sum(p.numel() for p in m.parameters())
    n_pwtp = sum(p.numel() for p in m.shared_parameters())
    run.log(f"{a.dataset}: {len(run.loaders.train.dataset)} training / {len(run.loaders.val.dataset)} validation "
            f"videos, {run.loaders.num_classes} classes | {a.input.upper()}-{a.backbone}"
            f"{'-R' + str(a.depth) if a.backbone == 'tsm' else ''}{' (small)' if a.small else ''} "
            f"{n_params / 1e6:.2f} M parameters (PWTP {n_pwtp:,}) | S={a.segments} T={a.frames} "
            f"D={a.proj_dim} crop {a.crop_size} | joint {a.joint}"
            f"{f' ({a.mgda_normalize}, {a.mgda_space})' if a.joint == 'mgda' else ''} | {run.world} x {run.device}"
            f"{' ' + a.amp if run.amp is not None else ''}")
    warmup = int(round(a.warmup_epochs * run.steps_per_epoch))
    run.log(f"{a.epochs} epochs x {run.steps_per_epoch} steps, batch {a.batch_size}"
            f"{f' x {a.accum_steps} micro-batches' if a.accum_steps > 1 else ''} x {run.world}, "
            f"lr {a.lr:g} (warm-up {warmup} steps, cosine), wd {a.weight_decay:g}, dropout {a.dropout}, "
            f"label smoothing {a.label_smoothing}, clip {a.clip_grad}"
            f"{', frozen BN: ' + str(len(run.frozen_bns)) if run.frozen_bns else ''} -> {run.run_dir}")


# =============================================================================================
# 7. main
# =============================================================================================
def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    stop = StopRequest()
    stop.install()
    try:
        return train(parser, args, argv, stop)
    finally:
        stop.restore()
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


def train(parser, args, argv, stop):
    rank, world, device = setup_distributed(args.device, "train.py")
    log = (lambda *a: print(*a, flush=True)) if rank == 0 else (lambda *a: None)
    args, ckpt, weights = open_run(parser, args, argv, world, log)
    if ckpt is None and args.dataset != "synthetic":
        log(f"recipe: {args.recipe}")
    if args.tensorboard and rank == 0:
        summary_writer_class()            # fail now, not after the data and model are built
    if args.amp is not None and device.type != "cuda":
        log(f"note: --amp {args.amp} on {device}: CPU autocast is correct, but faster than float32 only "
            "on CPUs with native bf16/fp16 units")
    created = prepare_out(args.out) if rank == 0 else []
    try:
        run = build_run(args, rank, world, device, log, weights, resuming=ckpt is not None)
    except BaseException:
        for d in created:                 # an early error leaves no orphan run folder behind
            with contextlib.suppress(OSError):
                os.rmdir(d)
        raise
    if rank == 0:
        atomic_json(vars(args), os.path.join(args.out, "args.json"))
    if ckpt is not None:
        state = restore(run, ckpt)
        log(f"resumed {run.run_dir} at step {state['step']} (epoch {state['epoch'] + 1}, "
            f"batch {state['batch_in_epoch']})")
    else:
        state = new_state()
        seed_everything(args.seed + rank)           # dropout masks differ across ranks
    describe(run)
    reason = loop(run, state, stop)
    return finish(run, state, reason, stop)


def prepare_out(out):
    """Create --out (returning the folders it created, deepest first) and check that it is
    writable before any work starts."""
    created, d = [], os.path.abspath(out)
    while not os.path.exists(d):
        created.append(d)
        d = os.path.dirname(d)
    try:
        os.makedirs(out, exist_ok=True)
        probe = os.path.join(out, f".write-test.{os.getpid()}")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        for c in created:
            with contextlib.suppress(OSError):
                os.rmdir(c)
        raise SystemExit(f"train.py: --out {out} is not a writable folder ({e.strerror or e})") from None
    return created


def loop(run, state, stop):
    """The epochs and their batches. Returns why it ended: None (done), "signal" or "max_steps"."""
    args, writer = run.args, LogWriter(run, state["step"])
    step_time, t_last = None, time.time()
    try:
        while state["epoch"] < args.epochs:
            epoch = state["epoch"]
            run.loaders.train_sampler.set_epoch(epoch, skip_batches=state["batch_in_epoch"])
            set_train_mode(run.model, run.frozen_bns)
            # Creating the iterator draws a base seed from the global torch RNG; keep that draw out
            # of the RNG stream so an uninterrupted and a resumed run see the same dropout masks.
            with torch.random.fork_rng(devices=[]):
                batches = iter(run.loaders.train)
            for clip, labels in batches:
                r = train_step(run, clip, labels, state["step"], stop.signum is not None)
                state["step"] += 1
                state["batch_in_epoch"] += 1
                acc = state["epoch_acc"]
                acc["loss_sum"] += r.loss_c
                acc["steps"] += 1
                acc["correct"] += r.correct
                acc["seen"] += r.seen
                now = time.time()
                dt, t_last = now - t_last, now
                step_time = dt if step_time is None else 0.9 * step_time + 0.1 * dt
                last_of_epoch = state["batch_in_epoch"] == run.steps_per_epoch
                if state["step"] == 1 or state["step"] % args.log_every == 0 or last_of_epoch:
                    log_step(run, state, r, writer, step_time)
                if r.stop:
                    return end_early(run, state, "signal")
                if args.max_steps is not None and args.max_steps <= state["step"] < run.total_steps:
                    return end_early(run, state, "max_steps")
            end_of_period(run, state, partial=False)
    finally:
        writer.close()
    return None


def end_early(run, state, reason):
    """Stopped by a signal or --max-steps: at an epoch end the usual work, else the position (and,
    for --max-steps, a validation) so that --resume continues exactly here."""
    if state["batch_in_epoch"] >= run.steps_per_epoch:       # it came with the epoch's last step
        end_of_period(run, state, partial=False)
    elif reason == "max_steps":
        end_of_period(run, state, partial=True)
    else:                                                     # mid-epoch signal: no validation
        save_checkpoint(run, state)
    return reason


def finish(run, state, reason, stop):
    """The closing lines; a signal exits with 128 + its number, as a killed process would."""
    history, run_dir = state["history"], run.run_dir
    if reason == "signal":
        run.log(f"stopped by {signal.Signals(stop.signum).name} at step {state['step']}; saved "
                f"{run_dir}/last.pt. Continue with: python train.py --resume {run_dir}")
        raise SystemExit(128 + int(stop.signum))
    if reason == "max_steps":
        run.log(f"stopped at --max-steps {run.args.max_steps} (step {state['step']} of {run.total_steps}); "
                f"continue with: python train.py --resume {run_dir}")
    if history:
        last = history[-1]
        enopr = f", ENoPR {last['val_enopr']:.4f}" if last["val_enopr"] is not None else ""
        run.log(f"final validation: top-1 {last['val_top1']:.2f} %, top-5 {last['val_top5']:.2f} %, "
                f"mean class accuracy {last['val_mean_class_acc']:.2f} %{enopr} "
                f"(best top-1 {state['best_top1']:.2f} %)")
    run.log(f"files: {run_dir}/log.csv, metrics.json, args.json, last.pt, best.pt; "
            f"multi-view test: python evaluate.py --checkpoint {run_dir}/best.pt --clips 2 --crops 3")
    return {"history": history, "best_top1": state["best_top1"], "step": state["step"],
            "finished": reason is None, "run_dir": run_dir, "model": run.model}


if __name__ == "__main__":
    main()
