"""Run management for train.py: the run folder, resuming, signals, RNG states, checkpoints, the log,
the closing lines and --dry-run. None of it is in the paper; train.py calls each piece in one line.

RUN_DIR (--out) holds:
    train.lock      "PID HOST" of the train.py that owns the folder (removed when it exits)
    args.json       the run's flags (a record: the checkpoint's copy rules on --resume)
    log.csv         one row per logged step (LOG_FIELDS)
    metrics.json    one entry per epoch (and per --max-steps stop): train loss/top-1, validation
                    top-1/top-5/mean class accuracy, ENoPR, held-out L_c, mean DC gain
    last.pt         the newest state: every epoch end, and on SIGINT/SIGTERM or --max-steps mid-epoch
    best.pt         the state of the best validation top-1
Checkpoints hold the model, optimiser, LR schedule, GradScaler, every rank's RNG states and the
progress `state` (new_state), so --resume continues bit-exactly on CPU.
"""
import argparse
import contextlib
import copy
import csv
import json
import math
import os
import random
import signal
import socket
import time
from typing import NamedTuple, Optional

import numpy as np
import torch
import torch.distributed as dist

from support.checkpoints import class_list_error, load_checkpoint, read_torch_file
from support.system import (AMP_DTYPES, atomic_json, atomic_text, atomic_torch_save, autocast, available_cores,
                            fmt_time, rank_zero_first, sum_over_ranks)


class Run(NamedTuple):
    """What train.py builds once for a run and every later function uses."""
    args: argparse.Namespace
    run_dir: str
    rank: int
    world: int
    device: torch.device
    amp: Optional[torch.dtype]          # autocast dtype, or None: float32
    loaders: object                     # data.Loaders
    model: torch.nn.Module
    frozen_bns: list
    optimizer: torch.optim.Optimizer
    scheduler: object
    scaler: torch.amp.GradScaler
    joint: object                       # mgda.JointTraining
    steps_per_epoch: int
    total_steps: int
    log: object                         # print on rank 0 only


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


def open_run(parser, args, argv, log, complete):
    """(args, checkpoint or None, weights or None): a fresh run's flags completed by
    `complete(args, start)` (train.py's recipe for the starting point) and its --pretrained file;
    or a resumed run's own flags (plus the RESUME_OVERRIDABLE ones given now) and its last.pt."""
    path = resume_path(args, log)         # --resume auto / RUN_DIR / FILE -> last.pt, or None
    if path is None:
        start, weights = starting_point(args, log)
        args = complete(args, start)
        if args.dataset != "synthetic" and not args.dry_run:
            log(f"recipe: {args.recipe}")
        if os.path.exists(os.path.join(args.out, "last.pt")) and not args.dry_run:
            raise SystemExit(f"train.py: --out {args.out} already holds a run (last.pt); "
                             f"continue it with --resume {args.out} or choose another --out")
        return args, None, weights
    ckpt = read_training_checkpoint(path)
    args = resumed_args(parser, argv, ckpt, path, RESUME_OVERRIDABLE, log)
    check_flags(args)                     # the flags given now (--lr, --workers, ...) too
    return args, ckpt, None


def early_checks(args, device, rank, log):
    """What can fail or surprise before the data and the model are built: --tensorboard's
    package, and --amp on a CPU (correct, but rarely faster)."""
    if args.tensorboard and rank == 0:
        summary_writer_class()
    if args.amp is not None and device.type != "cuda":
        log(f"note: --amp {args.amp} on {device}: CPU autocast is correct, but faster than float32 only "
            "on CPUs with native bf16/fp16 units")


def build_loaders(args, rank, world):
    """data.build_loaders for the flags, rank 0 first (it may write the synthetic set on first use),
    with errors that name the dataset. One loader batch = one optimiser step = --accum-steps
    micro-batches (train_step splits it), so the sampler's position counts optimiser steps."""
    import data
    from support import synthetic    # where the synthetic set lives when no --data-root is given
    root = args.data_root or (synthetic.default_synthetic_root() if args.dataset == "synthetic" else None)
    with rank_zero_first(world, rank):
        try:                              # a missing root, a bad split file: data.py says what
            loaders = data.build_loaders(args.dataset, root, split=args.split, segments=args.segments,
                                         frames=args.frames, crop_size=args.crop_size,
                                         batch_size=args.batch_size * args.accum_steps, workers=args.workers,
                                         subset=args.subset, overfit=args.overfit, seed=args.seed)
        except (FileNotFoundError, ValueError) as e:
            raise SystemExit(f"train.py: {e}") from None
    if len(loaders.train) == 0:
        raise SystemExit(f"train.py: the training set of {args.dataset} at {root} gives no batch "
                         f"of {args.batch_size}; lower --batch-size or check --data-root")
    return loaders


# =============================================================================================
# The run folder: created, checked writable, owned (train.lock)
# =============================================================================================
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
        remove_folders(created)
        raise SystemExit(f"train.py: --out {out} is not a writable folder ({e.strerror or e})") from None
    return created


def remove_folders(created):
    """An early error leaves no orphan run folder behind (only empty folders this run made)."""
    for d in created:
        try:
            os.rmdir(d)
        except OSError:
            pass


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:          # alive, another user's
        return True
    return True


class RunLock:
    """RUN_DIR/train.lock, created exclusively (O_EXCL) and holding "PID HOST": a second train.py
    on the same folder stops and names the holder. A lock whose process is gone (a killed run) is
    taken over with a warning; one from another host cannot be checked and is reported instead."""
    NAME = "train.lock"

    def __init__(self):
        self.path, self.mine = None, f"{os.getpid()} {socket.gethostname()}"

    def acquire(self, run_dir, log):
        path = os.path.join(run_dir, self.NAME)
        for _ in range(3):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._take_over_if_stale(path, log)
                continue
            with os.fdopen(fd, "w") as f:
                f.write(self.mine + "\n")
            self.path = path
            return self
        raise SystemExit(f"train.py: could not take {path}: other processes keep taking it")

    def _take_over_if_stale(self, path, log):
        holder = _read(path)
        pid, _, host = holder.partition(" ")
        pid = int(pid) if pid.isdigit() else 0        # empty or garbled: a writer died mid-write
        if host and host != socket.gethostname():
            raise SystemExit(f"train.py: {os.path.dirname(path)} is in use by PID {pid} on {host} "
                             f"({path}); if no run is using it, delete that file")
        if pid > 0 and pid != os.getpid() and _pid_alive(pid):
            raise SystemExit(f"train.py: {os.path.dirname(path)} is in use by another train.py, PID {pid} "
                             f"({path}); two runs in one folder would overwrite each other's files. "
                             "Wait for it, stop it, or choose another --out")
        stale = f"{path}.stale.{os.getpid()}"
        try:                                      # rename first: of two processes, one wins
            os.rename(path, stale)
        except FileNotFoundError:
            return
        if _read(stale) != holder:                # we took a fresh lock that another run just made
            os.replace(stale, path)
            return
        os.remove(stale)
        log(f"warning: took over {path} left by PID {pid}, which is no longer running (a killed run)")

    def release(self):
        if self.path is not None and _read(self.path) == self.mine:
            os.remove(self.path)
        self.path = None


def _read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read().strip()
    except FileNotFoundError:
        return ""


@contextlib.contextmanager
def own_folder(out, rank, lock, log):
    """Rank 0 creates --out (checked writable) and takes its lock; an error inside the block
    releases the lock and removes the folders it created, so it leaves no orphan run folder."""
    created = prepare_out(out) if rank == 0 else []
    try:
        if rank == 0:
            lock.acquire(out, log)
        yield
    except BaseException:
        lock.release()
        remove_folders(created)
        raise


# =============================================================================================
# The starting point (--pretrained)
# =============================================================================================
VIDEO_FORMATS = ("tsm", "pytorchvideo-x3d", "this-project")    # support.weights.checkpoint_format's video models


def starting_point(args, log):
    """(start, weights): what --pretrained asks for, as "kinetics" (a video model), "imagenet" or
    "none", and the loaded file for a PATH (None otherwise). No flag: ImageNet weights where
    torchvision publishes them (tsm and vit_b16 at full size), random weights elsewhere."""
    from support import weights as formats    # checkpoint_format: which codebase wrote a weights file

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
    try:                                  # weights-only first; says so when the file needs more
        weights = read_torch_file(p, "train.py: --pretrained", warn=True)
        fmt = formats.checkpoint_format(weights, f"train.py: --pretrained {p}")[0]
    except FileNotFoundError as e:
        raise SystemExit(f"{e} (expected PATH, imagenet or none)") from None
    except ValueError as e:
        raise SystemExit(str(e)) from None
    return ("kinetics" if fmt in VIDEO_FORMATS else "imagenet"), weights


# =============================================================================================
# Resuming: which file, which flags, which classes
# =============================================================================================
def resume_path(args, log):
    """The checkpoint --resume continues, or None for a fresh run. `auto`: --out's last.pt if it has
    one. RUN_DIR: its last.pt. A FILE: only the folder's newest state; any other file (best.pt)
    would roll the run back and overwrite its last.pt and logs, so it is refused with the two ways
    forward (continue the run, or start a new one from those weights)."""
    if args.resume == "auto":
        if not args.out:
            raise SystemExit("train.py: --resume auto needs --out RUN_DIR (the run to start or continue)")
        args.resume = args.out if os.path.isfile(os.path.join(args.out, "last.pt")) else None
        if args.resume:
            log(f"--resume auto: {args.out} holds last.pt; continuing it")
    if not args.resume:
        return None
    path = args.resume if args.resume.endswith(".pt") else os.path.join(args.resume, "last.pt")
    if not os.path.isfile(path):
        raise SystemExit(f"train.py: --resume {args.resume}: no checkpoint at {path}")
    folder = os.path.dirname(os.path.abspath(path))
    newest = os.path.join(folder, "last.pt")
    if os.path.basename(path) != "last.pt" and os.path.isfile(newest):
        raise SystemExit(f"train.py: --resume {path} is not the run's newest state ({newest} is); resuming "
                         "from it would roll the run back and overwrite last.pt, log.csv and metrics.json. "
                         f"Continue the run with --resume {folder}, or start a new run from these weights "
                         f"with --pretrained {path} --out NEW_DIR")
    return path


def new_state():
    """Everything about a run's progress that a checkpoint saves and --resume restores, whole.
    epoch_sums: the running sums of the epoch so far (train loss, top-1, DC gain)."""
    return {"epoch": 0, "batch_in_epoch": 0, "step": 0, "best_top1": -1.0, "history": [],
            "epoch_sums": {"loss_sum": 0.0, "steps": 0, "correct": 0, "seen": 0, "dc_gain_sum": 0.0,
                           "dc_gain_steps": 0}}


def read_training_checkpoint(path):
    """The checkpoint to resume, with errors that name it; an export (no optimiser) is refused."""
    try:
        ckpt = load_checkpoint(path, "train.py", "--resume")
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(str(e)) from None
    if "epoch_acc" in ckpt and "epoch_sums" not in ckpt:      # the name older checkpoints used
        ckpt["epoch_sums"] = ckpt.pop("epoch_acc")
    missing = [k for k in ("args", "optimizer", "scheduler", "rng", *new_state()) if k not in ckpt]
    if missing:
        raise SystemExit(f"train.py: --resume {path} is not a training checkpoint (no {', '.join(missing)}): "
                         "an evaluate.py --export file? Use it as --pretrained PATH to start a new run")
    ckpt["epoch_sums"] = {**new_state()["epoch_sums"], **ckpt["epoch_sums"]}
    return ckpt


def resumed_args(parser, argv, ckpt, path, overridable, log):
    """The resumed run's flags: the checkpoint's (they rule), plus the `overridable` ones given now,
    --device and --amp. Flags given now that cannot change are named and ignored; so are edits of
    args.json, which only records the flags."""
    given = vars(parser.parse_args(argv))
    saved = dict(ckpt["args"])
    explicit = {k for k, v in given.items() if v != parser.get_default(k) and v != saved.get(k)}
    ignored = sorted(explicit - set(overridable) - {"resume", "device", "amp", "out", "dry_run"})
    if ignored:
        log("warning: --resume uses the run's own settings; ignoring "
            + ", ".join("--" + k.replace("_", "-") for k in ignored))
    warn_if_args_json_edited(os.path.join(os.path.dirname(os.path.abspath(path)), "args.json"), saved, log)
    for k in tuple(overridable) + ("device", "amp", "dry_run"):
        if k in explicit or k == "max_steps":    # a new --max-steps or none: never the old one
            saved[k] = given[k]
    saved["resume"] = path
    # Continue in the folder the checkpoint is in, even if the run was moved or copied since
    # (its saved --out may point elsewhere, or nowhere).
    saved["out"] = os.path.dirname(os.path.abspath(path))
    if saved.get("amp") is True:           # checkpoints of older runs stored --amp as a bool
        saved["amp"] = "bf16"
    for k, v in vars(parser.parse_args([])).items():    # flags added since the run was started
        saved.setdefault(k, v)
    return argparse.Namespace(**saved)


def warn_if_args_json_edited(path, saved, log):
    """Say which flags an edited args.json changes, and that the checkpoint's copy rules."""
    try:
        with open(path) as f:
            on_disk = json.load(f)
    except (OSError, ValueError):
        return                             # missing or unreadable: it is rewritten from the checkpoint
    ours = json.loads(json.dumps(saved))  # tuples as lists, like the file
    skip = {"resume", "out", "max_steps", "workers", "log_every", "tensorboard", "val_every", "device", "amp",
            "dry_run"}
    differ = sorted(k for k in set(on_disk) | set(ours) if k not in skip and on_disk.get(k) != ours.get(k))
    if differ and isinstance(on_disk, dict):
        log(f"warning: {path} differs from the checkpoint in " + ", ".join("--" + k.replace("_", "-") for k in differ)
            + ": the checkpoint rules (args.json only records the flags and is rewritten now). A flag that may "
              "change on --resume is given on the command line")


def check_classes(ckpt, classes, where):
    """A resumed run's dataset must list the checkpoint's classes in its order (support/checkpoints.py
    class_list_error): else every label would train against another class, or not fit at all."""
    error = class_list_error(ckpt.get("classes") or classes, classes, where)
    if error:
        raise SystemExit(f"train.py: --resume: {error}; a run cannot continue with another class list. "
                         "Restore the dataset's class list, or start a new run from these weights with "
                         "--pretrained CHECKPOINT (a new classifier)")


# =============================================================================================
# Signals and random states
# =============================================================================================
class Interrupted(Exception):
    """Raised by StopRequest.check during validation: the run saves its training state and stops."""


class StopRequest:
    """SIGINT/SIGTERM set a flag; the loop finishes the current step, saves last.pt and exits.
    During validation, `check` (called after each batch) ends it at once. A second Ctrl-C
    interrupts at once."""

    def __init__(self):
        self.signum = None
        self._previous = {}

    def _handler(self, signum, frame):
        if self.signum == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def check(self, *_):
        if self.signum is not None:
            raise Interrupted

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
# Checkpoints: make, save, restore
# =============================================================================================
def make_checkpoint(run, state):
    """Model, optimiser, schedule, scaler, every rank's RNG states and (a copy of) the progress
    `state`. Collective under torchrun: every rank calls it."""
    states = [rng_state()]
    if run.world > 1:
        states = [None] * run.world
        dist.all_gather_object(states, rng_state())
    return {"model": run.model.state_dict(), "model_config": run.model.config, "args": vars(run.args),
            "optimizer": run.optimizer.state_dict(), "scheduler": run.scheduler.state_dict(),
            "scaler": run.scaler.state_dict() if run.scaler.is_enabled() else None,
            "rng": {"per_rank": states}, "classes": list(run.loaders.classes), **copy.deepcopy(state)}


def save_checkpoint(run, state, best=False, ck=None):
    """last.pt (and best.pt) on rank 0, from `ck` or a checkpoint made now; a failed write (a full
    disk) stops the run with a clear message and the previous files intact (system.atomic_write)."""
    ck = make_checkpoint(run, state) if ck is None else ck    # collective: every rank takes part
    if run.rank != 0:
        return
    try:
        if best:
            atomic_torch_save(ck, os.path.join(run.run_dir, "best.pt"))
        atomic_torch_save(ck, os.path.join(run.run_dir, "last.pt"))
        atomic_json(ck["history"], os.path.join(run.run_dir, "metrics.json"))
    except OSError as e:
        raise SystemExit(f"train.py: {e.strerror or e}. Free some space, then continue with: "
                         f"python train.py --resume {run.run_dir}") from None


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
    run.log(f"resumed {run.run_dir} at step {ckpt['step']} (epoch {ckpt['epoch'] + 1}, batch {ckpt['batch_in_epoch']})")
    return {k: ckpt[k] for k in new_state()}


def stop_if_diverged(run, step, losses=(), norm=None):
    """A non-finite loss or gradient norm: stop before the model is updated, and say what to do."""
    if all(math.isfinite(v) for v in losses) and (norm is None or bool(torch.isfinite(norm))):
        return
    what = (f"non-finite gradient norm at step {step + 1}" if norm is not None else
            f"non-finite loss at step {step + 1}: L_c={losses[0]}, L_p={losses[1]}")
    last = os.path.join(run.run_dir, "last.pt") if run.run_dir else ""
    lower = f"{run.args.lr / 10:g}"
    todo = (f"the last good checkpoint {last} is untouched; continue from it with a lower learning "
            f"rate: python train.py --resume {run.run_dir} --lr {lower}" if last and os.path.exists(last) else
            f"no checkpoint was written yet; start again with a lower --lr (e.g. {lower})")
    raise SystemExit(f"train.py: {what}. Stopped before updating the model; {todo}.")


# =============================================================================================
# The log: log.csv (rank 0), TensorBoard, the progress line
# =============================================================================================
# alpha: MGDA's weight (Eq. 12); lam: lambda of constant / scheduler / recognition (Eq. 13); phase:
# `separate`'s phase (1 = PWTP on L_p alone, 2 = backbone on frozen DA). gc_norm, gp_norm, cos:
# ||g_c||, ||g_p|| and their cosine on the PWTP parameters (mgda.py), the numbers that tell whether
# MGDA's alpha collapses and why. dc_gain: DA's mean DC gain s (pwtp.dc_gain), the fraction of a
# pixel's static colour that passes into DA. Empty where it does not apply.
LOG_FIELDS = ["step", "epoch", "loss_c", "loss_p", "dc_gain", "alpha", "lam", "phase", "gc_norm", "gp_norm",
              "cos", "lr", "clips_per_s"]


def summary_writer_class():
    """torch.utils.tensorboard's SummaryWriter, imported only for --tensorboard (optional extra)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise SystemExit("train.py: --tensorboard needs the tensorboard package (pip install tensorboard); "
                         "log.csv is written either way") from None
    return SummaryWriter


def complete_log_rows(path, step, log):
    """log.csv's rows up to `step` (rows past it were written before a hard kill, after the
    checkpoint). A crash can also leave a trailing partial row or NUL bytes (blocks the file system
    allocated but never filled): such rows are dropped with a warning."""
    with open(path, newline="", errors="replace") as f:
        lines = f.read().splitlines(keepends=True)
    header = next(csv.reader(lines[:1]), [])
    rows, broken = [], []
    for n, line in enumerate(lines[1:], start=2):
        values = next(csv.reader([line]), [])
        ok = "\x00" not in line and line.endswith("\n") and len(values) == len(header) and "step" in header
        if not (ok and values[header.index("step")].isdigit()):
            broken.append(n)
        elif int(values[header.index("step")]) <= step:
            rows.append(dict(zip(header, values)))
    if broken:
        log(f"warning: {path}: dropped {len(broken)} incomplete row(s) (line {', '.join(map(str, broken[:5]))}"
            f"{', ...' if len(broken) > 5 else ''}), what a crash mid-write leaves")
    return rows


class LogWriter:
    """log.csv, one row per logged step, written by rank 0 (and, with --tensorboard, the same
    scalars as TensorBoard events in RUN_DIR/tensorboard; log.csv stays the record). On resume the
    file is rewritten atomically (temporary file + rename) with the rows up to the checkpoint's
    step, so it matches an uninterrupted run's; then rows are appended."""

    def __init__(self, run, step):
        self.file, self.writer, self.tb = None, None, None
        if run.rank != 0:
            return
        if run.args.tensorboard:
            self.tb = summary_writer_class()(os.path.join(run.run_dir, "tensorboard"), purge_step=step + 1)
        path = os.path.join(run.run_dir, "log.csv")
        rows = complete_log_rows(path, step, run.log) if os.path.exists(path) else []

        def fill(f):
            w = csv.DictWriter(f, fieldnames=LOG_FIELDS)
            w.writeheader()
            w.writerows({k: r.get(k, "") for k in LOG_FIELDS} for r in rows)
        atomic_text(path, fill)
        self.file = open(path, "a", newline="")
        self.writer = csv.DictWriter(self.file, fieldnames=LOG_FIELDS)

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


def count_step(state, r):
    """The step's place in the run and in the epoch's running sums (train loss, top-1, DC gain)."""
    state["step"] += 1
    state["batch_in_epoch"] += 1
    sums = state["epoch_sums"]
    sums["loss_sum"] += r.loss_c
    sums["steps"] += 1
    sums["correct"] += r.correct
    sums["seen"] += r.seen
    if r.dc_gain is not None:
        sums["dc_gain_sum"] += r.dc_gain
        sums["dc_gain_steps"] += 1


class StepTimer:
    """Seconds per step, smoothed (exponential moving average): the clips/s and the ETA."""

    def __init__(self):
        self.avg, self.last = None, time.time()

    def __call__(self):
        now = time.time()
        dt, self.last = now - self.last, now
        self.avg = dt if self.avg is None else 0.9 * self.avg + 0.1 * dt
        return self.avg


def log_step(run, state, r, writer, step_time):
    """One log.csv row and one progress line."""
    info = r.info
    clips_per_s = r.seen * run.world / max(step_time, 1e-9)
    fmt = lambda k, f=".6f": format(info[k], f) if k in info else ""
    writer.write({"step": state["step"], "epoch": state["epoch"] + 1, "loss_c": f"{r.loss_c:.6f}",
                  "loss_p": "" if r.loss_p is None else f"{r.loss_p:.6f}",
                  "dc_gain": "" if r.dc_gain is None else f"{r.dc_gain:.6g}", "alpha": fmt("alpha"),
                  "lam": fmt("lam"), "phase": info.get("phase", ""), "gc_norm": fmt("gc_norm", ".6g"),
                  "gp_norm": fmt("gp_norm", ".6g"), "cos": fmt("cos"), "lr": f"{r.lr:.6g}",
                  "clips_per_s": f"{clips_per_s:.2f}"})
    weight = (f" alpha {info['alpha']:.3f}" if "alpha" in info else f" lam {info['lam']:.3f}" if "lam" in info
              else f" phase {info['phase']}" if "phase" in info else "")
    lp = "" if r.loss_p is None else f" L_p {r.loss_p:.4f}"
    run.log(f"epoch {state['epoch'] + 1}/{run.args.epochs} step {state['step']}/{run.total_steps} | "
            f"L_c {r.loss_c:.4f}{lp}{weight} | lr {r.lr:.3g} | {clips_per_s:.1f} clips/s | "
            f"ETA {fmt_time(step_time * (run.total_steps - state['step']))}")


def epoch_entry(run, state, metrics, partial):
    """The metrics.json entry of the epoch (or of the part of it a --max-steps stop saw): its train
    loss, top-1 (summed over ranks) and mean DC gain (over all its steps), and the validation."""
    sums = state["epoch_sums"]
    correct, seen = sum_over_ranks(torch.tensor([sums["correct"], sums["seen"]], dtype=torch.float64)).tolist()
    done = state["batch_in_epoch"] / run.steps_per_epoch if partial else 1
    return {"epoch": state["epoch"] + done, "step": state["step"],
            "train_loss": sums["loss_sum"] / max(1, sums["steps"]),
            "train_top1": 100.0 * correct / max(1, seen),
            "dc_gain": sums["dc_gain_sum"] / sums["dc_gain_steps"] if sums["dc_gain_steps"] else None,
            **metrics, "partial": partial}


def report_skipped(run):
    """One warning per dataset whose unreadable videos were skipped (data.py counts them)."""
    for ds in (run.loaders.train.dataset, run.loaders.val.dataset):
        note = ds.report_skipped() if hasattr(ds, "report_skipped") else ""
        if note:
            run.log("warning: " + note)


def validation_due(args, epoch):
    """--val-every N: validate after epoch index `epoch` (0-based) when it is every N-th or the last."""
    last = epoch + 1 >= args.epochs
    return last or (args.val_every > 0 and (epoch + 1) % args.val_every == 0)


def epoch_line(entry, seconds, improved):
    if "val_top1" not in entry:                   # --val-every skipped this epoch's validation
        return (f"epoch {entry['epoch']:.2f} (not validated, --val-every): train loss {entry['train_loss']:.4f} "
                f"train top-1 {entry['train_top1']:.1f} %")
    enopr = f" | ENoPR {entry['val_enopr']:.4f}" if entry["val_enopr"] is not None else ""
    return (f"epoch {entry['epoch']:.2f} validation ({entry['val_videos']} videos, {seconds:.1f} s): "
            f"top-1 {entry['val_top1']:.2f} % | top-5 {entry['val_top5']:.2f} % | "
            f"mean class {entry['val_mean_class_acc']:.2f} %{enopr} | train loss "
            f"{entry['train_loss']:.4f} train top-1 {entry['train_top1']:.1f} %{' *best*' if improved else ''}")


def describe(run, warmup):
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
    run.log(f"{a.epochs} epochs x {run.steps_per_epoch} steps, batch {a.batch_size}"
            f"{f' x {a.accum_steps} micro-batches' if a.accum_steps > 1 else ''} x {run.world}, "
            f"lr {a.lr:g} (warm-up {warmup} steps, cosine), wd {a.weight_decay:g}, dropout {a.dropout}, "
            f"label smoothing {a.label_smoothing}, clip {a.clip_grad}"
            f"{', frozen BN: ' + str(len(run.frozen_bns)) if run.frozen_bns else ''} -> {run.run_dir}")


def closing_lines(run, state, reason, signum):
    """What a run says when it ends; a signal exits with 128 + its number, as a killed process would."""
    history, run_dir = state["history"], run.run_dir
    if reason == "signal":
        run.log(f"stopped by {signal.Signals(signum).name} at step {state['step']}; saved "
                f"{run_dir}/last.pt. Continue with: python train.py --resume {run_dir}")
        raise SystemExit(128 + int(signum))
    if reason == "max_steps":
        run.log(f"stopped at --max-steps {run.args.max_steps} (step {state['step']} of {run.total_steps}); "
                f"continue with: python train.py --resume {run_dir}")
    last = next((h for h in reversed(history) if "val_top1" in h), None)    # --val-every may skip epochs
    if last is not None:
        enopr = f", ENoPR {last['val_enopr']:.4f}" if last["val_enopr"] is not None else ""
        run.log(f"final validation: top-1 {last['val_top1']:.2f} %, top-5 {last['val_top5']:.2f} %, "
                f"mean class accuracy {last['val_mean_class_acc']:.2f} %{enopr} "
                f"(best top-1 {state['best_top1']:.2f} %)")
    files = [f for f in ("log.csv", "metrics.json", "val_per_video.csv", "args.json", "last.pt", "best.pt")
             if os.path.exists(os.path.join(run_dir, f))]       # best.pt may have been deleted
    test = "best.pt" if "best.pt" in files else "last.pt"
    run.log(f"files: {run_dir}/{', '.join(files)}; "
            f"multi-view test: python evaluate.py --checkpoint {run_dir}/{test} --clips 2 --crops 3")


# =============================================================================================
# Flags
# =============================================================================================
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


# =============================================================================================
# --dry-run: what a run would take, measured here; nothing trained, downloaded or written
# =============================================================================================
class DatasetCounts(NamedTuple):
    train: int                  # training videos (after --subset / --overfit)
    val: int                    # validation videos
    classes: int
    note: str                   # how they were counted


def dataset_counts(args):
    """Videos in the split lists and classes, read from the list files alone: no video is opened.
    A synthetic set that is not written yet is counted from its plan (support.synthetic.synthetic_plan with
    write_synthetic's defaults: 4 classes of 40 videos, static-bias lists of 3/2 and 3/4 of that)."""
    from support import layouts, synthetic
    root = args.data_root or (synthetic.default_synthetic_root() if args.dataset == "synthetic" else None)
    if args.dataset == "synthetic" and not os.path.isfile(os.path.join(root, "synth_meta.json")):
        plan = synthetic.synthetic_plan(4, 40, 60, 30, synthetic.SYNTH_BIAS)
        n_train = sum(f"trainlist0{args.split}.txt" in v.lists for v in plan)
        n_val = sum(f"testlist0{args.split}.txt" in v.lists for v in plan)
        n_classes, note = 4, (f"the synthetic set is not at {root} yet: a real run writes it there first "
                              "(minutes on a CPU); counted from its plan")
    else:
        try:
            classes, train = layouts.parse_dataset(args.dataset, root, args.split, True)
            _, val = layouts.parse_dataset(args.dataset, root, args.split, False)
        except (FileNotFoundError, ValueError) as e:
            raise SystemExit(f"train.py: {e}") from None
        n_train, n_val, n_classes = len(train), len(val), len(classes)
        note = "read from the split lists; no video opened"
    if args.subset or args.overfit:
        n_train = min(args.subset or args.overfit, n_train)
    return DatasetCounts(n_train, n_train if args.overfit else n_val, n_classes, note)


def steps_per_epoch(n_train, batch, world):
    """Optimiser steps per epoch: data.ResumableSampler's share of one rank, in batches of `batch`."""
    import data
    return math.ceil(len(data.ResumableSampler(range(n_train), batch, rank=0, world_size=world)) / batch)


def seconds_per_call(fn, device, budget_s=10.0, most=3, warmup=True):
    """(mean seconds, calls timed): one untimed warm-up call (allocation, autotuning) unless
    warmup=False, then up to `most` timed calls, fewer once `budget_s` is spent."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if warmup:
        fn(0)
        sync()
    times = []
    while len(times) < most and sum(times) < budget_s:
        t0 = time.perf_counter()
        fn(len(times) + 1)
        sync()
        times.append(time.perf_counter() - t0)
    return sum(times) / len(times), len(times)


def dry_run(args, world, device, log, build_model, build_optimization, train_step):
    """Print what the run would be and take, and return the numbers. The model is train.py's
    (build_model, build_optimization) with random weights (the same cost as the real one, no
    download); train_step is the training step itself, timed on random clips of the run's shape.
    Data loading is not included (bench.py's loader_vs_step measures it)."""
    from evaluate import count_flops       # one FLOP counter for the project
    counts = dataset_counts(args)
    batch = args.batch_size * args.accum_steps
    spe = steps_per_epoch(counts.train, batch, world)
    log(f"dry run: nothing is trained, downloaded or written\nrecipe: {args.recipe}")
    log(f"{args.dataset}, split {args.split}: {counts.train} training / {counts.val} validation videos, "
        f"{counts.classes} classes ({counts.note})")
    log(f"{spe} steps per epoch (batch {args.batch_size} x {args.accum_steps} micro-batches x {world} "
        f"processes), {spe * args.epochs} steps in {args.epochs} epochs")
    model = build_model(args, counts.classes).to(device)
    run = Run(args, None, 0, world, device, AMP_DTYPES.get(args.amp), None, model, [],
              *_reorder(build_optimization(model, args, spe, device, log)), spe, spe * args.epochs, log)
    params = sum(p.numel() for p in run.model.parameters())
    flops = count_flops(run.model, args.segments, args.frames, args.crop_size, device)
    log(f"model: {args.input.upper()}-{args.backbone} {params / 1e6:.2f} M parameters; per view "
        f"({args.segments}x{args.frames} frames at {args.crop_size}^2) {flops / 1e9:.3f} GFLOPs = "
        f"{flops / 2e9:.3f} G multiply-adds")
    step_s, how = step_seconds(run, train_step, counts.classes, batch, flops, device)
    val_s = view_seconds(run, batch, flops, device) * math.ceil(counts.val / world)
    epoch_s = spe * step_s + val_s
    log(f"time on this machine ({device}{'' if device.type == 'cuda' else f', {available_cores()} cores'}"
        f"{', ' + args.amp if args.amp else ''}): {step_s:.3f} s per training step ({how}) -> "
        f"~{fmt_time(spe * step_s)} training + ~{fmt_time(val_s)} validation (one view's forward pass x "
        f"{math.ceil(counts.val / world)} videos) = ~{fmt_time(epoch_s)} per epoch, "
        f"~{fmt_time(epoch_s * args.epochs)} for {args.epochs} epochs; data loading not included")
    return {"train_videos": counts.train, "val_videos": counts.val, "classes": counts.classes,
            "steps_per_epoch": spe, "total_steps": spe * args.epochs, "parameters": params,
            "flops_per_view": flops, "seconds_per_step": step_s, "seconds_per_epoch": epoch_s}


def view_seconds(run, batch, flops, device):
    """Seconds per validation view: a no-grad forward of a batch of random clips (one clip for a
    big model on a CPU, as step_seconds), after one warm-up, divided by the clips."""
    args = run.args
    n = 1 if device.type == "cpu" and 3 * flops * batch > 20e9 else batch
    clip = torch.randn(n, args.segments * args.frames, 3, args.crop_size, args.crop_size, device=device)
    run.model.eval()
    with torch.no_grad(), autocast(device, run.amp):
        seconds, _ = seconds_per_call(lambda i: run.model(clip), device, most=2, warmup=n > 1)
    return seconds / n


def step_seconds(run, train_step, num_classes, batch, flops, device):
    """(seconds per training step, how it was measured): train_step on random clips of the run's
    shape, after one warm-up step. On a CPU the cost grows linearly with the clips and a big
    model's full step takes minutes: above ~20 GFLOPs per step (forward + backward ~ 3 x the
    forward) a single clip is timed once, without warm-up, and scaled to the batch."""
    args = run.args
    one = device.type == "cpu" and 3 * flops * batch > 20e9
    shape = (1 if one else batch, args.segments * args.frames, 3, args.crop_size, args.crop_size)
    clip, labels = torch.randn(shape), torch.randint(0, num_classes, shape[:1])
    run.model.train()
    with _fixed_accum(args, 1 if one else args.accum_steps):
        seconds, n = seconds_per_call(lambda i: train_step(run, clip, labels, i), device,
                                      most=1 if one else 3, warmup=not one)
    if one:
        return seconds * batch, f"1 timed step of one clip {tuple(shape)}, x {batch} clips"
    return seconds, f"mean of {n} timed steps after 1 warm-up, random input {tuple(shape)}"


@contextlib.contextmanager
def _fixed_accum(args, k):
    """--accum-steps set to k for the timed steps (one clip cannot be split into K micro-batches)."""
    saved, args.accum_steps = args.accum_steps, k
    try:
        yield
    finally:
        args.accum_steps = saved


def _reorder(optimization):
    optimizer, scheduler, joint, scaler = optimization
    return optimizer, scheduler, scaler, joint
