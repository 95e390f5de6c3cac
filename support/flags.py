"""train.py's run-management flags (what is run and how it is kept, never what is computed, but
--amp's precision) and the range check of every flag. Not in the paper: train.py defines the
paper's flags itself and adds these with one call, add_run_flags."""
import math
import os
import time

from support.system import AMP_DTYPES, available_cores


# Flags that may be changed when resuming: they do not change the computation (--lr does, and
# says so when it is used).
RESUME_OVERRIDABLE = ("max_steps", "workers", "log_every", "tensorboard", "val_every", "lr")


def add_run_flags(flag):
    """train.py's flags of run management (none of them changes what is computed, but --amp's
    precision); `flag` is parser.add_argument."""
    flag("--workers", type=int, default=None,
         help="data-loader processes per rank (default 4, synthetic 2; never more than this machine's cores)")
    flag("--out", default=None, help="RUN_DIR (default runs/<dataset>-<backbone>-<input>-<joint>-<time>)")
    flag("--resume", default=None, metavar="RUN_DIR|auto",
         help="continue the run in RUN_DIR (its last.pt, the newest state; other files such as best.pt are "
              "refused, they would roll the run back) exactly; its own flags are used, except "
              + ", ".join("--" + k.replace("_", "-") for k in RESUME_OVERRIDABLE) + " (--lr changes the run). "
              "auto: resume --out if it holds last.pt, else start it (one command for a first start and "
              "every requeue)")
    flag("--seed", type=int, default=0)
    flag("--subset", type=int, default=None, metavar="N", help="train on a random N-video subset")
    flag("--overfit", type=int, default=None, metavar="N",
         help="train and validate on the same N training videos (sanity check: must reach ~100%%)")
    flag("--max-steps", type=int, default=None,
         help="stop after this many optimiser steps (the LR schedule still spans --epochs); "
              "last.pt is saved and the model validated")
    flag("--amp", nargs="?", const="bf16", default=None, choices=AMP_DTYPES,
         help="mixed precision: autocast to bf16 (plain --amp) or fp16 (--amp fp16, with a GradScaler "
              "against fp16's narrow range); losses, PWTP's solve and the optimiser stay in float32")
    flag("--device", default="auto", help="auto | cpu | cuda (default auto; may change on --resume, as --amp)")
    flag("--log-every", type=int, default=None, help="steps between progress lines / log.csv rows")
    flag("--val-every", type=int, default=1, metavar="N", help="validate after every N-th epoch and after the "
         "last (0: after the last only); skipped validations change nothing in training (default 1)")
    flag("--tensorboard", action="store_true",
         help="also write log.csv's scalars to RUN_DIR/tensorboard (needs the tensorboard package)")
    flag("--dry-run", action="store_true",
         help="print the recipe, dataset counts, steps, parameters, FLOPs per view and the time per epoch "
              "measured on a few steps here, then exit: nothing is trained, downloaded or written")


def fill_run_defaults(args, workers_given):
    """The run-management flags left unset: --workers 4 (synthetic 2), never more than this
    machine's cores (more loader processes than cores only slow each other down), --log-every 20,
    --out runs/<dataset>-<backbone>-<input>-<joint>-<time>."""
    if not workers_given:
        args.workers = min(args.workers or 4, available_cores())
    args.log_every = 20 if args.log_every is None else args.log_every
    if args.out is None:
        args.out = os.path.join("runs", f"{args.dataset}-{args.backbone}-{args.input}-{args.joint}-"
                                        f"{time.strftime('%Y%m%d-%H%M%S')}")


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
        ("val_every", args.val_every >= 0, ">= 0 (0 = the last epoch only)"), ("split", args.split >= 1, ">= 1"),
        ("max_steps", args.max_steps is None or args.max_steps >= 1, ">= 1"),
        ("subset", args.subset is None or args.subset >= 1, ">= 1"),
        ("overfit", args.overfit is None or args.overfit >= 1, ">= 1"),
    ] + [(f"pwtp_{name}", getattr(args, f"pwtp_{name}", None) is None or getattr(args, f"pwtp_{name}") >= low,
          f">= {low}") for name, low in (("kernel", 1), ("stride", 1), ("channels", 1), ("expansion", 0.1),
                                          ("blocks", 0), ("bottleneck", 0.01))]
    rules = [(k, math.isfinite(v), "a finite number") for k, v in sorted(vars(args).items())
             if isinstance(v, float)] + rules + [("seed", 0 <= args.seed < 2 ** 32 - 1024, "in [0, 2^32 - 1024)")]
    for flag, ok, expected in rules:
        if not ok:
            raise SystemExit(f"train.py: --{flag.replace('_', '-')} must be {expected}, got {getattr(args, flag)}")
    if args.backbone.startswith("vit") and args.crop_size % 16:
        raise SystemExit(f"train.py: --crop-size must be a multiple of 16 for vit_b16, got {args.crop_size}")
    if args.input == "da" and not 1 <= args.proj_dim < args.frames:
        raise SystemExit(f"train.py: --proj-dim must satisfy 1 <= D < T (--frames {args.frames}), got {args.proj_dim}")
    pwtp_given = [f"--pwtp-{n}" for n in ("kernel", "stride", "channels", "expansion", "blocks", "bottleneck")
                  if getattr(args, f"pwtp_{n.replace('-', '_')}", None) is not None]
    if pwtp_given and args.input != "da":
        raise SystemExit(f"train.py: {', '.join(pwtp_given)} shape PWTP, which --input {args.input} does not have")
    if args.input in ("da", "rgbdiff", "dynimg") and args.frames < 2:
        raise SystemExit(f"train.py: --input {args.input} needs --frames >= 2 (a segment of T frames), "
                         f"got {args.frames}")
