"""Train a dynamic-appearance (DA) action-recognition model with joint training (Sec. 3.4-3.5).

    python train.py                                             # quick start: synthetic set, CPU, minutes
    python train.py --dataset ucf101 --data-root DIR --backbone tsm --pretrained K400.pt
    torchrun --nproc_per_node=8 train.py --dataset sthv1 --data-root DIR --backbone tsm --amp
    python train.py --resume RUN_DIR                            # continue a stopped run exactly
    python train.py --dataset ucf101 --data-root DIR --dry-run  # what the run would take; writes nothing

The file reads in the order a run happens: 1. the recipe and the flags; 2. the model, optimiser
and schedule; 3. one training step (train_step: forward, L_c, L_p of Eq. 8, the joint-training
backward of Algorithm 1 / Eq. 9-13, clipping, the SGD step); 4. validation and the end of an epoch;
5. the loop and main. Run management (the run folder, resume, signals, checkpoints, log.csv,
--dry-run) is support/runs.py; device, torchrun, AMP and atomic writes are support/system.py; every
flag's help text is support/flags.py. Each is called in one line that says why.

Distributed (torchrun): no DistributedDataParallel, which averages the one gradient of one backward
pass; MGDA needs g_c and g_p apart (Eq. 11-12), averaged over ranks before alpha, so that every rank
takes the same step: mgda.JointTraining averages them itself. Rank 0 alone prints and writes.
"""
import math
import os
import time
from typing import NamedTuple, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

import pwtp
from evaluate import classification_metrics, gather_predictions, mean_nll, predict
from support import flags, runs
from support.checkpoints import write_per_video   # val_per_video.csv, in evaluate.py's columns
from support.runs import LOG_FIELDS, Run  # noqa: F401  (log.csv's columns, a run's parts: bench.py uses them)
from support.system import (AMP_DTYPES, any_rank, atomic_json, autocast, broadcast_buffers,
                            close_distributed, quiet_unless, setup_distributed, stop_workers, sum_over_ranks,
                            to_device)

# ========== 1. The recipe and the flags =====================================================
# Appendix A: SGD with momentum 0.9; cosine learning rate with linear warm-up; label smoothing 0.1;
# gradient clipping at 20; dropout before the classifier; learning rate and weight decay x5 for the
# classifier; weight decay on conv/linear weights only ("L2 regularisation of the convolutional and
# classification layers"); UCF101/HMDB51 fine-tuning freezes every BatchNorm but the first. ViT: no
# dropout, no clipping, no label smoothing, PWTP learning rate x5. Every flag left unset comes from
# the recipe of the run's starting point (--pretrained, choose_recipe); learning rates are for a
# total batch, scaled linearly to yours (--batch-size x --accum-steps x processes).
#
# The CPU quick start (--dataset synthetic, flag by flag, for every flag the user leaves unset):
# a narrow TSM-R18 at 64x64, S=4 segments of T=4 frames, that learns the synthetic set in a few
# minutes on 2 cores. It uses constant lambda = 30 rather than MGDA (ours, measured by bench.py claims;
# README, "The paper's claims"): on these clips ||g_c|| on PWTP is about 1000 x ||g_p||, so plain
# Eq. 12's alpha collapses, PWTP barely moves and the model stays at chance, while a constant weight
# on L_p learns the motion (lambda 1-30: 45-61 % on the balanced benchmark set, 5 seeds); lambda = 30
# because the quick start's own run ends at 95 % with it and at 75 % with lambda = 1. Real datasets
# default to MGDA, as in the paper, with --mgda-normalize loss+ (ours: support/flags.py says why);
# the paper's plain Eq. 12 is --mgda-normalize none.
SYNTHETIC_DEFAULTS = dict(
    backbone="tsm", depth=18, small=True, segments=4, frames=4, crop_size=64, joint="constant",
    lam=30.0, epochs=30, batch_size=8, lr=0.005, weight_decay=1e-4, dropout=0.2, warmup_epochs=1,
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
        return paper_recipe(args.dataset, args.backbone), ("fine-tuning a video (Kinetics) model: "
                                                            "the paper's recipe (Appendix A)")
    if start == "imagenet":
        small = args.dataset in ("ucf101", "hmdb51") and not args.backbone.startswith("vit")
        return imagenet_recipe(args.dataset, args.backbone), "from ImageNet weights: " + (
            "TSM's recipe for a small set" if small else "the paper's recipe (Appendix A)")
    return scratch_recipe(args.dataset, args.backbone), (
        "from random weights: trainable BatchNorm, warm-up, modest dropout (the paper's recipes "
        "assume pretrained weights and learn nothing from scratch)")


def build_parser():
    """train.py's flags, each with its help (support/flags.py: not needed to follow the paper); every
    flag left unset is filled in by resolve_defaults from the recipe."""
    return flags.build_parser(SYNTHETIC_DEFAULTS)


def resolve_defaults(args, world_size, start):
    """Fill every flag left at None: the CPU configuration for synthetic; otherwise the recipe of
    the starting point `start` (see choose_recipe)."""
    workers_given = args.workers is not None
    if args.dataset == "synthetic":
        for k, v in SYNTHETIC_DEFAULTS.items():
            if getattr(args, k, None) is None:
                setattr(args, k, v)
    args.backbone = args.backbone or "tsm"
    args.joint = args.joint or "mgda"
    args.lam = 1.0 if args.lam is None else args.lam
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
    if args.separate_epochs is None:
        args.separate_epochs = max(args.epochs / 4, 1e-9)
    runs.fill_run_defaults(args, workers_given)   # --workers (at most the cores), --log-every, --out
    runs.check_flags(args)                # every out-of-range flag, named
    return args


# ========== 2. The model, the optimiser and the schedule ====================================
def build_model(args, num_classes, imagenet=False):
    """The DA model of the flags: PWTP in front of the backbone (backbones.DAModel)."""
    import backbones
    try:                                  # an offline ImageNet download says what to pass instead
        return backbones.build_model(args.backbone, num_classes, input=args.input, segments=args.segments,
                                     frames=args.frames, proj_dim=args.proj_dim, depth=args.depth,
                                     dropout=args.dropout, small=args.small, crop_size=args.crop_size,
                                     pretrained="imagenet" if imagenet else None, input_scale=args.input_scale,
                                     **flags.pwtp_options(args))
    except (RuntimeError, ValueError) as e:
        raise SystemExit(f"train.py: {e}") from None


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


def warmup_steps(args, steps_per_epoch):
    """(warm-up steps, asked): --warmup-epochs in steps, at most half the run (ours), so that the
    cosine always has the other half to decay; a recipe's 7 epochs in a 1-epoch run would
    otherwise never leave the warm-up and end at half the learning rate."""
    asked = int(round(args.warmup_epochs * steps_per_epoch))
    return min(asked, args.epochs * steps_per_epoch // 2), asked


def build_run(args, rank, world, device, log, weights=None, resuming=False):
    """Data, model, optimiser, schedule and joint-training strategy of a run (fresh or resumed).
    `weights`: the loaded --pretrained file; a resumed run takes its weights from last.pt."""
    from support import weights as formats   # other codebases' checkpoints onto our parameter names
    runs.seed_everything(args.seed)       # model initialisation identical on every rank
    loaders = runs.build_loaders(args, rank, world)   # data.build_loaders; errors named, rank 0 first
    steps_per_epoch = len(loaders.train)
    model = build_model(args, loaders.num_classes, imagenet=args.pretrained == "imagenet" and not resuming)
    if weights is not None and not resuming:          # prints what was loaded and what was not
        with quiet_unless(rank == 0):
            formats.load_starting_point(model, weights, f"--pretrained {args.pretrained}")
    to_device(model, device)         # on CUDA, channels-last for the convolutions
    frozen_bns = frozen_batchnorms(model) if args.freeze_bn else []
    for m in frozen_bns:
        m.requires_grad_(False)
    optimizer, scheduler, joint, scaler = build_optimization(model, args, steps_per_epoch, device, log)
    return Run(args, args.out, rank, world, device, AMP_DTYPES.get(args.amp), loaders, model, frozen_bns,
               optimizer, scheduler, scaler, joint, steps_per_epoch, args.epochs * steps_per_epoch, log)


def build_optimization(model, args, steps_per_epoch, device, log=None):
    """(optimizer, scheduler, joint, scaler) of a run: SGD groups, warm-up + cosine over --epochs,
    the joint-training strategy, and the GradScaler (fp16 only). bench.py times with these too."""
    import mgda
    total_steps = args.epochs * steps_per_epoch
    optimizer = build_optimizer(model, args)
    warmup, asked = warmup_steps(args, steps_per_epoch)
    if warmup < asked and log is not None:
        log(f"warning: --warmup-epochs {args.warmup_epochs:g} ({asked} steps) is longer than half the run of "
            f"{total_steps} steps; the warm-up is shortened to {warmup} steps so that the cosine decays")
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda_factory(warmup, total_steps))
    joint = mgda.JointTraining(args.joint, lam=args.lam, total_steps=total_steps, lam_min=args.lam_min,
                               a=args.sched_a, b=args.sched_b,
                               separate_steps=max(1, int(round(args.separate_epochs * steps_per_epoch))),
                               normalize=args.mgda_normalize, space=args.mgda_space)
    # fp16 has 5 exponent bits: small gradients underflow to 0. The scaler multiplies the losses by
    # a large factor before backward and divides the gradients by it before the step, skipping steps
    # whose gradients overflowed (and shrinking the factor). bf16 has float32's range: no scaler.
    scaler = torch.amp.GradScaler(device.type, enabled=args.amp == "fp16")
    return optimizer, scheduler, joint, scaler


# ========== 3. One training step ============================================================
def classification_loss(logits, labels, label_smoothing):
    """L_c: cross-entropy with label smoothing, computed in float32 (also under bf16 autocast)."""
    return F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)


class StepResult(NamedTuple):
    loss_c: float               # L_c of this step, averaged over micro-batches and ranks
    loss_p: Optional[float]     # L_p (Eq. 8), likewise; None without PWTP
    correct: int                # training top-1 hits on this rank's clips
    seen: int                   # this rank's clips
    info: dict                  # alpha (mgda) / lam / phase, and ||g_c||, ||g_p||, cos (mgda.py)
    lr: float                   # the base learning rate this step used
    stop: bool                  # some rank was asked to stop (SIGINT/SIGTERM): stop after it
    dc_gain: Optional[float] = None   # DA's mean DC gain s (pwtp.dc_gain), like loss_p


def train_step(run, clip, labels, step, stop_requested=False):
    """Forward, both losses, the joint-training backward, clip, SGD step, LR schedule.

    clip (K*B, S*T, C, H, W), labels (K*B,): one optimiser step over --accum-steps K micro-batches
    of B clips. Raises SystemExit on a non-finite loss, before the model is touched. Every rank
    must call it (it all-reduces)."""
    args, model, scaler = run.args, run.model, run.scaler
    logged = torch.tensor([0.0, 0.0, 0.0, float(stop_requested)], dtype=torch.float64)  # L_c, L_p, s, stop
    correct = 0
    run.optimizer.zero_grad(set_to_none=True)
    if run.joint.pwtp_frozen(step):   # separate's phase 2: DA fixed, BatchNorm statistics too
        model.pwtp.eval()
    for x, y in zip(clip.chunk(args.accum_steps), labels.chunk(args.accum_steps)):
        w = len(y) / len(labels)      # 1/K: the K micro-batch means add up to the batch mean
        x, y = x.to(run.device, non_blocking=True), y.to(run.device, non_blocking=True)  # (B, S*T, C, H, W), (B,)
        with autocast(run.device, run.amp):                      # --amp: bf16 / fp16, else float32
            out = model(x)            # logits (B, K); PWTP's enopr (B*S,) and bases A (B*S, H, W, T, D)
        loss_c = classification_loss(out.logits, y, args.label_smoothing) * w                # L_c
        loss_p = None if out.pwtp is None else pwtp.projection_loss(out.pwtp.enopr) * w     # L_p, Eq. 8
        # g_c and g_p stay apart (Eq. 11); alpha comes once, in step(). scaler.scale is the identity
        # unless --amp fp16 (the loss scale s, see build_optimization); s leaves alpha unchanged.
        run.joint.accumulate(model, scaler.scale(loss_c), None if loss_p is None else scaler.scale(loss_p),
                             bases=None if out.pwtp is None else out.pwtp.A, scale=scaler.get_scale(), step=step)
        gain = 0.0 if out.pwtp is None else pwtp.dc_gain(out.pwtp.A.detach()).mean().item()   # DA's DC gain s
        logged[:3] += torch.tensor([loss_c.item(), 0.0 if loss_p is None else loss_p.item(), gain * w],
                                   dtype=torch.float64)
        correct += int((out.logits.detach().argmax(1) == y).sum())
        del out                       # free x_hat and residual (each as large as the clip) now
    l_c, l_p, s, stop = (sum_over_ranks(logged) / run.world).tolist()  # rank means; stop > 0: a rank was signalled
    runs.stop_if_diverged(run, step, losses=(l_c, l_p))                # a non-finite loss: stop, say what to do
    info = run.joint.step(model, step)               # Algorithm 1 / Eq. 9, 13: every .grad, rank-averaged
    scaler.unscale_(run.optimizer)                   # true gradients before clipping (fp16; else a no-op)
    norm = torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None],
                                          args.clip_grad if args.clip_grad > 0 else math.inf)
    if not scaler.is_enabled():       # under fp16 an overflow is routine: the scaler skips that step
        runs.stop_if_diverged(run, step, norm=norm)
    lr = base_lr(run.optimizer)
    scaler.step(run.optimizer)                       # optimizer.step(), or a skip of an fp16 overflow
    scaler.update()
    run.scheduler.step()                             # warm-up, then cosine, per step
    broadcast_buffers(model)                         # BatchNorm statistics of rank 0 on every rank, as DDP
    has_p = run.model.pwtp is not None
    return StepResult(l_c, l_p if has_p else None, correct, labels.numel(), info, lr, stop > 0, s if has_p else None)


# ========== 4. Validation and the end of an epoch ===========================================
def validate(model, loader, device, amp, num_classes, stop=None, per_video=None):
    """Single-view validation on this rank's shard, gathered over ranks; returns the metrics dict.

    The validation set never substitutes (data.py substitute=False): unreadable videos are left out
    of every number and counted in val_unreadable. val_loss is the held-out L_c: the mean
    cross-entropy, without label smoothing, of the predicted probabilities (bench.py's Fig. 3).
    stop: a runs.StopRequest; a signal ends validation after the current batch (runs.Interrupted).
    per_video: None, or where to write one row per video (evaluate.py's _per_video.csv columns)."""
    with torch.random.fork_rng(devices=[]):      # creating loader iterators draws from the RNG
        p = gather_predictions(predict(model, loader, device, amp=amp, progress=stop and stop.check))
    if per_video:                                # for analyses by video (bench.py claims reads it)
        write_per_video(per_video, loader.dataset.samples, loader.dataset.classes, p)
    m = classification_metrics(p.scores, p.labels, num_classes)
    return {"val_top1": m["top1"], "val_top5": m["top5"], "val_mean_class_acc": m["mean_class_acc"],
            "val_loss": mean_nll(p.scores, p.labels),
            "val_enopr": p.enopr_sum / p.enopr_count if p.enopr_count else None,
            "val_videos": int(p.labels.numel()), "val_unreadable": p.unreadable}


def validate_and_save(run, state, partial, stop=None):
    """Validate (unless --val-every skips this epoch), record metrics.json, save last.pt (and best.pt
    when top-1 improved). `partial`: stopped mid-epoch. A signal during validation saves the training
    state as it was before it (--resume validates again) and returns False; otherwise True."""
    t0, due = time.time(), partial or runs.validation_due(run.args, state["epoch"])
    before = runs.make_checkpoint(run, state) if due else None     # what a signal mid-validation saves
    try:
        per_video = os.path.join(run.run_dir, "val_per_video.csv") if run.rank == 0 else None   # the latest
        metrics = validate(run.model, run.loaders.val, run.device, run.amp, run.loaders.num_classes, stop,
                           per_video) if due else {}
    except runs.Interrupted:
        runs.save_checkpoint(run, state, ck=before)
        return False
    entry = runs.epoch_entry(run, state, metrics, partial)    # train loss / top-1 / DC gain over the epoch
    state["history"].append(entry)
    improved = due and metrics["val_top1"] > state["best_top1"]
    state["best_top1"] = max(state["best_top1"], metrics.get("val_top1", -1.0))
    if not partial:                               # the checkpoint points at the next epoch's start
        state.update(epoch=state["epoch"] + 1, batch_in_epoch=0, epoch_sums=runs.new_state()["epoch_sums"])
    runs.save_checkpoint(run, state, best=improved)
    runs.report_skipped(run)                      # unreadable videos met this epoch (data.py)
    run.log(runs.epoch_line(entry, time.time() - t0, improved))
    return True


# ========== 5. The loop and main ============================================================
def loop(run, state, stop):
    """The epochs and their batches. Returns why it ended: None (done), "signal" or "max_steps"."""
    args, writer, timer, batches = run.args, runs.LogWriter(run, state["step"]), runs.StepTimer(), None
    try:
        while state["epoch"] < args.epochs:
            run.loaders.train_sampler.set_epoch(state["epoch"], skip_batches=state["batch_in_epoch"])
            set_train_mode(run.model, run.frozen_bns)
            with torch.random.fork_rng(devices=[]):   # the iterator's seed draw stays out of the RNG stream
                batches = iter(run.loaders.train)
            for clip, labels in batches:
                r = train_step(run, clip, labels, state["step"], stop.signum is not None)
                runs.count_step(state, r)             # the step, its place in the epoch, the epoch's sums
                step_time, last_of_epoch = timer(), state["batch_in_epoch"] == run.steps_per_epoch
                if state["step"] == 1 or state["step"] % args.log_every == 0 or last_of_epoch:
                    runs.log_step(run, state, r, writer, step_time)
                if r.stop:
                    return end_early(run, state, "signal", stop)
                if args.max_steps is not None and args.max_steps <= state["step"] < run.total_steps:
                    return end_early(run, state, "max_steps", stop)
            batches = stop_workers(batches)      # before validation starts its own workers
            if not validate_and_save(run, state, partial=False, stop=stop) or any_rank(stop.signum):
                return "signal"
    finally:
        stop_workers(batches)    # now: at interpreter exit, joining workers that ignore SIGTERM hangs
        writer.close()
    return None


def end_early(run, state, reason, stop):
    """Stopped by a signal or --max-steps: at an epoch end the usual work, else the position (and,
    for --max-steps, a validation) so that --resume continues exactly here."""
    partial = state["batch_in_epoch"] < run.steps_per_epoch   # not with the epoch's last step
    if reason == "max_steps" or not partial:
        return reason if validate_and_save(run, state, partial, stop) else "signal"
    runs.save_checkpoint(run, state)                          # mid-epoch signal: no validation
    return reason


def train(parser, args, argv, stop, lock):
    rank, world, device = setup_distributed(args.device, "train.py")   # torchrun's environment, if any
    log = (lambda *a: print(*a, flush=True)) if rank == 0 else (lambda *a: None)
    complete = lambda a, start: resolve_defaults(a, world, start)    # a fresh run: the recipe of its start
    args, ckpt, weights = runs.open_run(parser, args, argv, log, complete)   # fresh, or resumed as it was
    if args.dry_run:                      # what the run would take, measured here; nothing written
        stop.restore()                    # nothing to save: a signal ends a dry run at once
        return runs.dry_run(args, world, device, log, build_model, build_optimization, train_step)
    runs.early_checks(args, device, rank, log)    # --tensorboard's package, --amp on a CPU: said now
    with runs.own_folder(args.out, rank, lock, log):   # created, writable, locked; removed on an early error
        run = build_run(args, rank, world, device, log, weights, resuming=ckpt is not None)
        if ckpt is not None:              # same classes in the same order, or a clear refusal
            runs.check_classes(ckpt, run.loaders.classes, f"{args.dataset} at {args.data_root or 'the default root'}")
    if rank == 0:
        atomic_json(vars(args), os.path.join(args.out, "args.json"))
    if ckpt is not None:
        state = runs.restore(run, ckpt)   # weights, optimiser, schedule, RNG: exactly where it stopped
    else:
        state = runs.new_state()
        runs.seed_everything(args.seed + rank)      # dropout masks differ across ranks
    runs.describe(run, warmup_steps(args, run.steps_per_epoch)[0])
    reason = loop(run, state, stop)
    runs.closing_lines(run, state, reason, stop.signum)     # a signal exits with 128 + its number
    return dict(history=state["history"], best_top1=state["best_top1"], step=state["step"], finished=reason is None,
                run_dir=run.run_dir, model=run.model)


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    stop, lock = runs.StopRequest(), runs.RunLock()
    stop.install()
    try:
        return train(parser, args, argv, stop, lock)
    finally:
        stop.restore()
        lock.release()
        close_distributed()


if __name__ == "__main__":
    main()
