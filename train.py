"""Train a dynamic-appearance (DA) action-recognition model with joint training (Sec. 3.4-3.5).

    python train.py                                             # quick start: synthetic set, CPU, minutes
    python train.py --dataset ucf101 --data-root DIR --backbone tsm --pretrained K400.pt
    torchrun --nproc_per_node=8 train.py --dataset sthv1 --data-root DIR --backbone tsm --amp
    python train.py --resume RUN_DIR                            # continue a stopped run exactly
    python train.py --dataset ucf101 --data-root DIR --dry-run  # what the run would take; writes nothing

In the order a run happens: 1. the recipe and the paper's flags; 2. the model, the optimiser and
the schedule; 3. one training step (train_step); 4. the loop (validation: evaluate.validate) and main. Run
management lives in support/, one line per call. Several GPUs: torchrun, without DDP
(mgda.JointTraining averages g_c and g_p over the ranks itself); rank 0 alone prints and writes.
"""
import argparse
import functools
import math
import os
from typing import NamedTuple, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

import backbones
import data
import evaluate
import mgda
import pwtp
from support import dryrun, flags, recipes, runlog, runs
from support import weights as weights_formats    # other codebases' checkpoints onto our names
from support.system import (AMP_DTYPES, any_rank, atomic_json, broadcast_buffers, close_distributed,
                            quiet_unless, setup_distributed, stop_workers, to_device)

# ========== 1. The recipe and the flags =====================================================
# Unset flags come from the recipe of the starting point (choose_recipe), printed first with each value marked
# paper, ours (the paper does not state it) or yours (a flag). The CPU quick start: a narrow TSM-R18, 64x64,
# S=4 x T=4, constant lambda = 30 (ours), which learns the synthetic set in minutes; real data: MGDA with
# --mgda-normalize loss+ (ours; plain Eq. 12 is --mgda-normalize none). Why these two defaults: docs/CLAIMS.md.
SYNTHETIC_DEFAULTS = dict(
    backbone="tsm", depth=18, small=True, segments=4, frames=4, crop_size=64, joint="constant", lam=30.0, epochs=30,
    batch_size=8, lr=0.005, weight_decay=1e-4, dropout=0.2, warmup_epochs=1, freeze_bn=False, clip_grad=20.0,
    label_smoothing=0.1, pwtp_lr_mult=1.0, workers=2, log_every=5)

# Frames the backbone itself sees (S segments -> S DA frames) and crop size (Appendix A).
BACKBONE_DEFAULTS = {"tsm": dict(segments=8, crop_size=224), "x3d_xs": dict(segments=4, crop_size=160),
                     "x3d_m": dict(segments=16, crop_size=224), "vit_b16": dict(segments=8, crop_size=224)}

# Appendix A's recipes (SGD, momentum 0.9, warm-up then cosine; the classifier's lr and weight decay x5):
# lr for `total` clips, `per_gpu` on each GPU; `stated`: the family, datasets and start the paper gives
# the row for, `ours`: what it does not state there. Used anywhere else a row is ours as a whole.
FIELDS = ("lr", "global_batch", "batch_size", "epochs", "weight_decay", "dropout", "warmup_epochs", "stated", "ours")
RECIPES = {name: dict(zip(FIELDS, row[:-1]), **row[-1]) for name, row in {
    #                  lr   total per_gpu epochs wd  dropout warm-up  stated                         ours         also
    "resnet-kinetics": (0.08, 512, 8, 100, 2e-4, 0.5, 7, ("ResNet", "kinetics400", "imagenet"), (), {}),
    "resnet-sthv1": (0.12, 256, 8, 50, 8e-4, 0.8, 7, ("ResNet", "sthv1", "imagenet"), (), {}),
    "x3d-kinetics": (0.4, 256, 8, 256, 5e-5, 0.5, 7, ("X3D", "kinetics400", "none"), ("warmup_epochs",), {}),
    "x3d-sthv1": (0.12, 256, 8, 50, 4e-4, 0.8, 7, ("X3D", "sthv1", "kinetics"), ("warmup_epochs",), {}),
    "fine-tune": (0.001, 64, 4, 10, 1e-4, 0.8, 0, ("ResNet", "ucf101/hmdb51", "kinetics"), ("warmup_epochs",),
                  dict(freeze_bn=True)),                      # every BN but the first frozen (TSN's partial BN)
    "vit": (0.004, 64, 2, 15, 1e-4, 0.0, 1, ("ViT", "sthv1/kinetics400", "imagenet"), ("warmup_epochs",),
            dict(clip_grad=0.0, label_smoothing=0.0, pwtp_lr_mult=5.0)),   # from ImageNet-21K in the paper
    "small-set": (0.01, 64, 8, 25, 5e-4, 0.8, 1, None, (), dict(freeze_bn=True, why="TSM's recipe for a small set "
                  "(ours: lr 0.02 per 128 clips, dropout 0.8, wd 5e-4, partial BN; the paper only fine-tunes them)")),
    "scratch": (0.04, 64, 8, 50, 1e-4, 0.3, 2, None, (), dict(why="trainable BatchNorm, warm-up, modest dropout, the "
                "synthetic set's lr (ours: the paper starts from weights)")),
}.items()}
APPENDIX_A = dict(label_smoothing=0.1, clip_grad=20.0, pwtp_lr_mult=1.0, freeze_bn=False)   # every row but ViT
RECIPE_KEYS = ("batch_size", "epochs", "weight_decay", "dropout", "warmup_epochs", "freeze_bn", "clip_grad",
               "label_smoothing", "pwtp_lr_mult")
OURS_IF_ELSEWHERE = ("lr", "batch_size", "epochs", "weight_decay", "dropout", "warmup_epochs", "freeze_bn")
KINETICS, OWN_VIDEOS = ("kinetics400", "minikinetics"), ("list", "csv")
STARTS = {"kinetics": ("fine-tuning a video (Kinetics) model", "a Kinetics model"),    # (the run, a recipe's)
          "imagenet": ("from ImageNet weights", "ImageNet"), "none": ("from random weights", "scratch")}


def paper_recipe(dataset, backbone, start="imagenet"):
    """The RECIPES entry for the backbone's family, the dataset and the starting point, with its name.
    The paper always starts from weights, except X3D on Kinetics; small sets it only fine-tunes."""
    family = "vit" if backbone.startswith("vit") else ("x3d" if backbone.startswith("x3d") else "resnet")
    if start == "none" and not (family == "x3d" and dataset in KINETICS):
        name = "scratch"
    elif family == "vit" or dataset in KINETICS + ("sthv1",):
        name = "vit" if family == "vit" else f"{family}-{'sthv1' if dataset == 'sthv1' else 'kinetics'}"
    else:                                 # UCF101, HMDB51 and your own videos: a small set's recipe
        name = "fine-tune" if start == "kinetics" else "small-set"
    r = dict(APPENDIX_A, name=name, **RECIPES[name])
    fam, sets, first = r["stated"] or ("", "", "")
    if (fam.lower(), first) != (family, start) or dataset not in sets.split("/"):
        r["ours"] = OURS_IF_ELSEWHERE
    return r


def choose_recipe(args, start):
    """(recipe, why) for the starting point: "kinetics" (a video model), "imagenet" or "none"."""
    r = paper_recipe(args.dataset, args.backbone, start)
    fam, sets, first = r["stated"] or ("", "", "none")
    told = f"the paper's recipe for {fam} on {sets} from {STARTS[first][1]} (Appendix A)"
    why = r.get("why") or (told if r["ours"] != OURS_IF_ELSEWHERE else
                           f"ours: {told}; none for {args.backbone} on {args.dataset} from {STARTS[start][1]}")
    if args.dataset in OWN_VIDEOS:        # a small set's recipe, never silently Kinetics' 100 epochs
        why += "; your own videos take a small set's recipe (give --epochs, --lr ... for a Kinetics-sized set)"
    return r, f"{STARTS[start][0]}: {why}"


# --pwtp-NAME flag -> pwtp.PWTP argument, with what the paper calls it (defaults: Sec. 4, config #7).
PWTP_OPTIONS = (("kernel", int, "kernel_size: Eq. 2 conv kernel k (default 9)"),
                ("stride", int, "stride: Eq. 2 conv stride s (default 8)"),
                ("channels", int, "channels: Eq. 2 conv channels C' (default 24)"),
                ("expansion", float, "expansion: Eq. 4 MLP width factor e (default 2)"),
                ("blocks", int, "blocks: Eq. 4 MLP bottleneck blocks K (default 1)"),
                ("bottleneck", float, "bottleneck_ratio: Eq. 4 bottleneck ratio rho (default 0.25)"))


def build_parser():
    """The paper's flags, named like the paper (--segments S, --frames T, --proj-dim D, --lam);
    None = from the recipe (resolve_defaults). support/flags.py adds run management's own."""
    synthetic = ", ".join(f"{k}={v}" for k, v in SYNTHETIC_DEFAULTS.items())
    p = argparse.ArgumentParser(description=f"Train a DA model with joint training. Unset flags: the recipe of "
                                f"--pretrained; synthetic: {synthetic}")
    flag = p.add_argument
    flag("--dataset", default="synthetic", choices=data.DATASETS, help="dataset (default synthetic)")
    flag("--data-root", default=None, help="dataset folder (synthetic: written to a cache folder on first use)")
    flag("--split", type=int, default=1, help="UCF101/HMDB51 split 1-3; synthetic also 4 and 5 (static bias)")
    flag("--backbone", default=None, choices=backbones.BACKBONES, help="default tsm")
    flag("--depth", type=int, default=None, help="ResNet depth for tsm (default 50; synthetic 18)")
    flag("--small", default=None, action=argparse.BooleanOptionalAction, help="narrow CPU-sized backbone")
    flag("--input", default="da", choices=backbones.INPUTS, help="what the backbone sees (default da)")
    flag("--segments", type=int, default=None, help="S segments (default: 8 tsm/vit, 4 x3d_xs, 16 x3d_m)")
    flag("--frames", type=int, default=None, help="T frames per segment (default 8)")
    flag("--proj-dim", type=int, default=1, help="D, dimension of the per-pixel subspace (default 1)")
    for name, kind, paper in PWTP_OPTIONS:       # PWTP's shape: Table 4 (Eq. 2 conv), Table 8 (Eq. 4 MLP)
        flag(f"--pwtp-{name}", type=kind, default=None, help=f"PWTP {paper}")
    flag("--joint", default=None, choices=mgda.STRATEGIES, help="Table 5 (default mgda; synthetic constant)")
    flag("--mgda-normalize", default="loss+", choices=mgda.NORMALIZERS, help="divide g by 1, ||g||, L or L*||g|| "
         "before Eq. 12 (Sener & Koltun's normalisers; ours: default loss+; none = the paper's plain Eq. 12)")
    flag("--mgda-space", default="params", choices=mgda.SPACES, help="where Eq. 12 is solved: the PWTP "
         "parameters (Algorithm 1) or the per-pixel bases A (the MGDA-UB analogue, ours)")
    flag("--lam", type=float, default=None, help="lambda; scheduler's lambda_max (default 1; synthetic 30)")
    flag("--lam-min", type=float, default=0.0, help="Eq. 13 floor lambda_min (default 0)")
    flag("--sched-a", type=float, default=1.0, help="Eq. 13: the fraction of training over which lambda decays, (0, 1]")
    flag("--sched-b", type=float, default=1.0, help="Eq. 13: the sharpness of the decay, > 0 (default 1)")
    flag("--separate-epochs", type=float, default=None, help="separate: epochs of PWTP alone (default E/4, ours)")
    flag("--crop-size", type=int, default=None, help="training/test crop (default 224; x3d_xs 160)")
    flag("--epochs", type=int, default=None)
    flag("--batch-size", type=int, default=None, help="clips per process per micro-batch")
    flag("--accum-steps", type=int, default=1, metavar="K", help="K micro-batches per optimiser step (MGDA "
         "derives alpha once, from the summed g_c and g_p), so 1-2 GPUs reach the paper's total batch")
    flag("--lr", type=float, default=None, help="base lr (default: the recipe's, scaled linearly to your total batch)")
    flag("--weight-decay", type=float, default=None)
    flag("--dropout", type=float, default=None, help="dropout before the classifier")
    flag("--warmup-epochs", type=float, default=None, help="linear warm-up (at most half the run, ours)")
    flag("--pwtp-lr-mult", type=float, default=None, help="PWTP learning-rate multiplier (ViT: 5)")
    flag("--input-scale", type=float, default=1.0, help="fixed gain on the backbone's frames (ours; 1 = the paper)")
    flag("--pretrained", default=None, metavar="{none,imagenet,PATH}", help="starting point, which picks the recipe: "
         "PATH = a Kinetics video model (TSM's, pytorchvideo's, train.py's) or a torchvision state dict; imagenet = "
         "torchvision's (downloaded once); none = random. Default: imagenet for full-size tsm/vit_b16 on real data")
    flag("--freeze-bn", default=None, action=argparse.BooleanOptionalAction, help="freeze every BN but the first")
    flag("--clip-grad", type=float, default=None, help="grad-norm clip per parameter group (PWTP, backbone), 0 = off")
    flag("--label-smoothing", type=float, default=None, help="default 0.1")
    flags.add_run_flags(flag)             # support's own: --out, --resume, --seed, --amp, --dry-run, ...
    return p


def resolve_defaults(args, world_size, start):
    """Fill every flag left at None: the CPU configuration for synthetic; otherwise the recipe of
    the starting point `start` (see choose_recipe). args.recipe: the recipe in words, as printed."""
    workers_given, given = args.workers is not None, {k for k, v in vars(args).items() if v is not None}
    for k, v in (SYNTHETIC_DEFAULTS if args.dataset == "synthetic" else {}).items():
        setattr(args, k, v if getattr(args, k, None) is None else getattr(args, k))
    args.backbone, args.joint, args.small = args.backbone or "tsm", args.joint or "mgda", bool(args.small)
    r, why = choose_recipe(args, start)
    fill = dict(lam=1.0, depth=50, frames=8, **BACKBONE_DEFAULTS[args.backbone], **{k: r[k] for k in RECIPE_KEYS})
    vars(args).update({k: v for k, v in fill.items() if getattr(args, k) is None})   # is None: --segments 0 is an error
    if args.lr is None:   # linear scaling rule: the recipe's lr is for its total batch
        args.lr = r["lr"] * args.batch_size * args.accum_steps * world_size / r["global_batch"]
    args.separate_epochs = max(args.epochs / 4, 1e-9) if args.separate_epochs is None else args.separate_epochs
    flags.fill_run_defaults(args, workers_given)   # --workers (at most the cores), --log-every, --out
    flags.check_flags(args)                # every out-of-range flag, named
    if args.dataset == "synthetic":       # the quick start's values are ours, not a recipe's
        r, why = dict(r, ours=tuple(SYNTHETIC_DEFAULTS) + ("lr",)), "synthetic quick start (CPU-sized, ours)"
    args.recipe = recipes.describe(args, r, why, given, world_size)   # each value: paper, ours or yours
    return args


# ========== 2. The model, the optimiser and the schedule ====================================
def build_model(args, num_classes, imagenet=False):
    """The DA model of the flags: PWTP in front of the backbone (backbones.DAModel, Sec. 3.3)."""
    given = {p.split(":")[0]: getattr(args, f"pwtp_{n}", None) for n, _, p in PWTP_OPTIONS}
    try:                                  # an offline ImageNet download says what to pass instead
        return backbones.build_model(args.backbone, num_classes, input=args.input, segments=args.segments,
                                     frames=args.frames, proj_dim=args.proj_dim, depth=args.depth,
                                     dropout=args.dropout, small=args.small, crop_size=args.crop_size,
                                     pretrained="imagenet" if imagenet else None, input_scale=args.input_scale,
                                     **{k: v for k, v in given.items() if v is not None})
    except (RuntimeError, ValueError) as e:
        raise SystemExit(f"train.py: {e}") from None


def frozen_batchnorms(model):
    """--freeze-bn (TSN's partial BN): every BatchNorm of the backbone but the first. PWTP's own
    BatchNorm (in its MLP) belongs to the DA task and keeps learning."""
    shared = {id(p) for p in model.shared_parameters()}
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
           and not any(id(p) in shared for p in m.parameters(recurse=False))]
    return bns[1:]


def set_train_mode(model, frozen_bns, pwtp_frozen=False):
    """Train mode, but frozen BNs (and separate's frozen PWTP) use and keep their statistics."""
    model.train()
    for m in frozen_bns + ([model.pwtp] if pwtp_frozen else []):
        m.eval()


def build_optimizer(model, args):
    """SGD, momentum 0.9: classifier x5 lr and weight decay, PWTP x --pwtp-lr-mult lr, no weight
    decay on 1-D parameters (biases, norms); each group's `lr_mult` gives the base lr back."""
    head, shared = {id(p) for p in model.head_parameters()}, {id(p) for p in model.shared_parameters()}
    groups = {}
    for p in model.parameters():
        if p.requires_grad:
            lr_mult = 5.0 if id(p) in head else (args.pwtp_lr_mult if id(p) in shared else 1.0)
            wd = args.weight_decay * (5.0 if id(p) in head else 1.0) if p.ndim > 1 else 0.0
            groups.setdefault((lr_mult, wd), []).append(p)
    return torch.optim.SGD([{"params": ps, "lr": args.lr * m, "weight_decay": wd, "lr_mult": m}
                            for (m, wd), ps in sorted(groups.items())], lr=args.lr, momentum=0.9)


def warmup_cosine(step, warmup, total, restart=0):
    """The learning rate's factor at `step`: linear warm-up to 1, then cosine annealing to 0; anew at `restart`."""
    if restart:                           # separate's two phases, each its own (ours; the paper does not say)
        step, total = (step, restart) if step < restart else (step - restart, total - restart)
    warmup = min(warmup, total // 2)      # at most half of its phase (one phase: warmup_steps did it already)
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


def warmup_steps(args, steps_per_epoch, log=None):
    """--warmup-epochs in steps, at most half the run (ours): the cosine always has half to decay in."""
    asked, total = int(round(args.warmup_epochs * steps_per_epoch)), args.epochs * steps_per_epoch
    if asked > total // 2 and log:
        log(f"warning: --warmup-epochs {args.warmup_epochs:g} ({asked} steps) is longer than half the run of "
            f"{total} steps; the warm-up is shortened to {total // 2} steps so that the cosine decays")
    return min(asked, total // 2)


def make_run(args, model, steps_per_epoch, device, rank, world, log, **rest):
    """The run around a built model: frozen BNs, SGD, warm-up + cosine, the joint strategy, fp16's scaler."""
    frozen_bns = frozen_batchnorms(model) if args.freeze_bn else []
    nn.ModuleList(frozen_bns).requires_grad_(False)           # out of SGD and of theta_c
    total, warmup = args.epochs * steps_per_epoch, warmup_steps(args, steps_per_epoch, log)
    separate = max(1, int(round(args.separate_epochs * steps_per_epoch)))    # separate: steps of PWTP alone
    optimizer = build_optimizer(model, args)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, functools.partial(   # RGB: one phase for any --joint
        warmup_cosine, warmup=warmup, total=total, restart=separate if args.joint == "separate" and model.pwtp else 0))
    joint = mgda.JointTraining(model.shared_parameters(), model.recognition_parameters(), args.joint, lam=args.lam,
                               total_steps=total, lam_min=args.lam_min, fraction=args.sched_a, sharpness=args.sched_b,
                               separate_steps=separate, normalize=args.mgda_normalize, space=args.mgda_space)
    # fp16's 5 exponent bits underflow small gradients: scale the losses up (bf16 has float32's range).
    scaler = torch.amp.GradScaler(device.type, enabled=args.amp == "fp16")
    return runs.Run(args, model, optimizer, scheduler, joint, scaler, frozen_bns, steps_per_epoch, device,
               AMP_DTYPES.get(args.amp), rank, world, log, **rest)


def build_run(args, rank, world, device, log, weights=None, resuming=False):
    """Data, model and make_run's parts, fresh or resumed (a resumed run's weights come from last.pt)."""
    runs.seed_everything(args.seed)       # model initialisation identical on every rank
    loaders = runs.build_loaders(args, rank, world, data.build_loaders)   # errors named, rank 0 first
    model = build_model(args, loaders.num_classes, imagenet=args.pretrained == "imagenet" and not resuming)
    if weights is not None and not resuming:          # prints what was loaded and what was not
        with quiet_unless(rank == 0):
            try:                                      # another T, D or PWTP shape: said, not a traceback
                weights_formats.load_starting_point(model, weights, f"--pretrained {args.pretrained}")
            except ValueError as e:
                raise SystemExit(f"train.py: {e}") from None
    to_device(model, device)              # on CUDA, channels-last for the convolutions
    return make_run(args, model, len(loaders.train), device, rank, world, log, loaders=loaders, run_dir=args.out)


# ========== 3. One training step ============================================================
def classification_loss(logits, labels, label_smoothing):
    """L_c: cross-entropy with label smoothing, in float32 (also under bf16 autocast)."""
    return F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)


class StepResult(NamedTuple):
    info: dict                  # L_c, L_p (rank means), alpha / lam / phase, gradient statistics (mgda.py)
    correct: int                # training top-1 hits on this rank's clips
    seen: int                   # this rank's clips
    lr: float                   # the base learning rate this step used
    bases: Optional[torch.Tensor] = None   # a logged step's bases A, for DA's DC gain (pwtp.dc_gain)


def train_step(run, clip, labels, step, log=False):
    """One optimiser step over --accum-steps K micro-batches: clip (K*B, S*T, C, H, W), labels (K*B,).
    log: a step whose numbers are logged (gradient statistics, the bases). Every rank calls it."""
    args, model, scaler = run.args, run.model, run.scaler
    run.optimizer.zero_grad(set_to_none=True)
    correct, bases = 0, None
    for x, y in zip(clip.chunk(args.accum_steps), labels.chunk(args.accum_steps)):
        w = len(y) / len(labels)      # 1/K: the K micro-batch means add up to the batch mean
        x, y = x.to(run.device, non_blocking=True), y.to(run.device, non_blocking=True)  # (B, S*T, C, H, W), (B,)
        with torch.autocast(run.device.type, dtype=run.amp, enabled=run.amp is not None):    # --amp
            out = model(x)            # logits (B, classes); PWTP's enopr (B*S,), bases A (B*S, H, W, T, D)
        loss_c = classification_loss(out.logits, y, args.label_smoothing) * w                # L_c
        loss_p = None if out.pwtp is None else pwtp.projection_loss(out.pwtp.enopr) * w     # L_p, Eq. 8
        # g_c and g_p stay apart (Eq. 11); alpha comes once, in step(). scaler.scale is the identity
        # unless --amp fp16, whose loss scale leaves alpha unchanged.
        run.joint.accumulate(scaler.scale(loss_c), None if loss_p is None else scaler.scale(loss_p), step,
                             bases=None if out.pwtp is None else out.pwtp.A, scale=scaler.get_scale(), stats=log)
        correct += int((out.logits.detach().argmax(1) == y).sum())
        bases = out.pwtp.A.detach() if log and out.pwtp is not None else None
        del out                       # free x_hat and residual (each as large as the clip) now
    info = run.joint.step(step)       # Algorithm 1 (or Eq. 9 / 13): every .grad, averaged over ranks
    runs.stop_if_diverged(run, step, losses=(info["loss_c"], info["loss_p"] or 0.0))   # before any update
    scaler.unscale_(run.optimizer)    # true gradients before clipping (fp16; else a no-op)
    # Appendix A's clip, per group (over what, it does not say; ours): a large lambda's g_p spares the backbone
    norms = [torch.nn.utils.clip_grad_norm_(theta, args.clip_grad or math.inf)   # theta_p: PWTP (none in RGB);
             for theta in (run.joint.theta_p, run.joint.theta_c) if theta]       # theta_c: backbone + head
    if not scaler.is_enabled():       # under fp16 an overflow is routine: the scaler skips that step
        runs.stop_if_diverged(run, step, norm=torch.stack(norms).double().norm())   # non-finite if any gradient is
    lr = run.optimizer.param_groups[0]["lr"] / run.optimizer.param_groups[0]["lr_mult"]   # this step's base lr
    scaler.step(run.optimizer)        # SGD: optimizer.step(), or a skip of an fp16 overflow
    scaler.update()
    run.scheduler.step()              # warm-up, then cosine, per step
    broadcast_buffers(model)          # BatchNorm statistics of rank 0 on every rank, as DDP would
    return StepResult(info, correct, labels.numel(), lr, bases)


# ========== 4. The loop and main ============================================================
def loop(run, state, stop):
    """The epochs and their batches. Returns why it ended: None (done), "signal" or "max_steps"."""
    args, writer, timer, batches = run.args, runlog.LogWriter(run, state["step"]), runlog.StepTimer(), None
    try:
        while state["epoch"] < args.epochs:
            run.loaders.train_sampler.set_epoch(state["epoch"], skip_batches=state["batch_in_epoch"])
            with torch.random.fork_rng(devices=[]):   # the iterator's seed draw stays out of the RNG stream
                batches = iter(run.loaders.train)
            for clip, labels in batches:
                set_train_mode(run.model, run.frozen_bns, run.joint.pwtp_frozen(state["step"]))
                logged = (state["step"] + 1) % args.log_every == 0 or state["step"] == 0 or \
                    state["batch_in_epoch"] + 1 == run.steps_per_epoch
                r = train_step(run, clip, labels, state["step"], log=logged)
                dc_gain = None if r.bases is None else pwtp.dc_gain(r.bases).mean().item()   # DA's static leak
                runlog.count_step(state, r, dc_gain)        # the step, its place in the epoch, the epoch's sums
                if logged:
                    runlog.log_step(run, state, r, writer, timer(), dc_gain)
                if any_rank(stop.signum is not None):       # a signal on any rank: stop after this step
                    return runs.end_early(run, state, "signal", evaluate.validate, stop)
                if args.max_steps is not None and args.max_steps <= state["step"] < run.total_steps:
                    return runs.end_early(run, state, "max_steps", evaluate.validate, stop)
            batches = stop_workers(batches)      # before validation starts its own workers
            if not runs.validate_and_save(run, state, False, evaluate.validate, stop) or any_rank(stop.signum):
                return "signal"
    finally:
        stop_workers(batches)    # now: at interpreter exit, joining workers that ignore SIGTERM hangs
        writer.close()
    return None


def train(parser, args, argv, stop, lock):
    rank, world, device = setup_distributed(args.device, "train.py")   # torchrun's environment, if any
    log = (lambda *a: print(*a, flush=True)) if rank == 0 else (lambda *a: None)
    complete = lambda a, start: resolve_defaults(a, world, start)    # a fresh run: the recipe of its start
    args, ckpt, weights = runs.open_run(parser, args, argv, log, complete)   # fresh, or resumed as it was
    if args.dry_run:                      # what the run would take, measured here; nothing written
        stop.restore()                    # nothing to save: a signal ends a dry run at once
        return dryrun.dry_run(args, world, device, log, lambda classes, spe: make_run(
            args, build_model(args, classes).to(device), spe, device, 0, world, log), train_step, evaluate.count_flops)
    runs.early_checks(args, device, rank, log)    # --tensorboard's package, --amp on a CPU: said now
    with runs.own_folder(args.out, rank, lock, log):   # created, writable, locked; removed on an early error
        run = build_run(args, rank, world, device, log, weights, resuming=ckpt is not None)
        if ckpt is not None:              # same classes in the same order, or a clear refusal
            runs.check_classes(ckpt, run.loaders.classes, f"{args.dataset} at {args.data_root or 'the default root'}")
    if rank == 0:
        atomic_json(vars(args), os.path.join(args.out, "args.json"))
    # Resumed: weights, optimiser, schedule, RNG exactly where it stopped. Fresh: dropout differs by rank.
    state = runs.restore(run, ckpt) if ckpt is not None else runs.new_state(seed=args.seed + rank)
    runlog.describe(run, warmup_steps(args, run.steps_per_epoch))
    reason = loop(run, state, stop)
    runlog.closing_lines(run, state, reason, stop.signum)     # a signal exits with 128 + its number
    return dict(history=state["history"], best_top1=state["best_top1"], step=state["step"], finished=reason is None,
                run_dir=run.run_dir, model=run.model)


def main(argv=None):
    parser = build_parser()
    args, stop, lock = parser.parse_args(argv), runs.StopRequest(), runs.RunLock()
    stop.install()
    try:
        return train(parser, args, argv, stop, lock)
    finally:
        stop.restore()
        lock.release()
        close_distributed()


if __name__ == "__main__":
    main()
