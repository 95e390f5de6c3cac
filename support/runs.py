"""Run management for train.py: the run folder and its lock, the starting point, resuming, signals,
RNG states and checkpoints. None of it is in the paper; train.py calls each piece in one line.
(The log is support/runlog.py, the flags support/flags.py, --dry-run support/dryrun.py.)

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
import json
import math
import os
import random
import signal
import shlex
import socket
import time
from typing import NamedTuple, Optional

import numpy as np
import torch
import torch.distributed as dist

from support import synthetic, weights as formats
from support.checkpoints import class_list_error, finite_weights, load_checkpoint, read_torch_file
from support.flags import RESUME_OVERRIDABLE, check_flags
from support.runlog import epoch_entry, epoch_line, report_skipped, summary_writer_class, validation_due
from support.system import atomic_json, atomic_torch_save, rank_zero_first


class Run(NamedTuple):
    """A run's parts, built once by train.make_run and handed to everything after."""
    args: argparse.Namespace            # the resolved flags
    model: torch.nn.Module                    # backbones.DAModel
    optimizer: torch.optim.Optimizer    # build_optimizer
    scheduler: object                   # warm-up + cosine, stepped per optimiser step
    joint: object                       # mgda.JointTraining: the strategy of Table 5
    scaler: torch.amp.GradScaler        # --amp fp16's loss scale (disabled otherwise)
    frozen_bns: list                    # --freeze-bn
    steps_per_epoch: int
    device: torch.device
    amp: Optional[torch.dtype]          # autocast dtype, or None: float32
    rank: int
    world: int
    log: object                         # print on rank 0 only
    loaders: object = None              # data.Loaders (none in a dry run)
    run_dir: Optional[str] = None

    @property
    def total_steps(self):
        return self.args.epochs * self.steps_per_epoch


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


def build_loaders(args, rank, world, build):
    """build(...) (data.build_loaders) for the flags, rank 0 first (it may write the synthetic set on
    first use), with errors that name the dataset. One loader batch = one optimiser step =
    --accum-steps micro-batches (train_step splits it): the sampler's position counts steps."""
    root = args.data_root or (synthetic.default_synthetic_root() if args.dataset == "synthetic" else None)
    with rank_zero_first(world, rank):
        try:                              # a missing root, a bad split file: data.py says what
            loaders = build(args.dataset, root, split=args.split, segments=args.segments,
                                         frames=args.frames, crop_size=args.crop_size,
                                         batch_size=args.batch_size * args.accum_steps, workers=args.workers,
                                         subset=args.subset, overfit=args.overfit, seed=args.seed)
        except (FileNotFoundError, ValueError) as e:
            raise SystemExit(f"train.py: {e}") from None
    if len(loaders.train) == 0:
        raise SystemExit(f"train.py: the training set of {args.dataset} at {root} gives no batch "
                         f"of {args.batch_size}; lower --batch-size or check --data-root")
    return loaders


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


def _started_after(pid, when):
    """Whether process `pid` started after the time `when` (then it is not the one that wrote a lock
    at `when`: the PID was reused). False where /proc cannot tell (not Linux)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])        # field 22: start time since boot
        with open("/proc/stat") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith("btime"))
    except (OSError, ValueError, IndexError, StopIteration):
        return False
    return boot + ticks / os.sysconf("SC_CLK_TCK") > when + 2.0        # 2 s: btime is whole seconds


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
        try:
            written = os.path.getmtime(path)
        except OSError:
            return
        if pid > 0 and pid != os.getpid() and _pid_alive(pid) and not _started_after(pid, written):
            raise SystemExit(f"train.py: {os.path.dirname(path)} is in use by PID {pid}, which has run since it "
                             f"took {path}: another train.py; two runs in one folder would overwrite each other's "
                             "files. Wait for it, stop it, or choose another --out")
        stale = f"{path}.stale.{os.getpid()}"
        try:                                      # rename first: of two processes, one wins
            os.rename(path, stale)
        except FileNotFoundError:
            return
        if _read(stale) != holder:                # we took a fresh lock that another run just made
            os.replace(stale, path)
            return
        os.remove(stale)
        log(f"warning: took over {path} left by PID {pid}, which is no longer running (a killed run; "
            "the PID may since belong to another program)")

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


VIDEO_FORMATS = ("tsm", "pytorchvideo-x3d", "this-project")    # support.weights.checkpoint_format's video models


def starting_point(args, log):
    """(start, weights): what --pretrained asks for, as "kinetics" (a video model), "imagenet" or
    "none", and the loaded file for a PATH (None otherwise). No flag: ImageNet weights where
    torchvision publishes them (tsm and vit_b16 at full size), random weights elsewhere."""
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


def new_state(seed=None):
    """Everything about a run's progress that a checkpoint saves and --resume restores, whole.
    epoch_sums: the running sums of the epoch so far (train loss, top-1, DC gain). seed: a fresh
    run's random state is seeded here too."""
    if seed is not None:
        seed_everything(seed)
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
    """last.pt (then best.pt) on rank 0, from `ck` or a checkpoint made now. Weights that are not
    finite are never saved (stop_if_diverged says what to do); a failed write (a full disk) stops
    the run with the previous files intact (system.atomic_write) and a way on that works."""
    ck = make_checkpoint(run, state) if ck is None else ck    # collective: every rank takes part
    if not finite_weights(ck["model"]):
        stop_if_diverged(run, state["step"] - 1, weights=False)
    if run.rank != 0:
        return
    last = os.path.join(run.run_dir, "last.pt")
    try:
        atomic_torch_save(ck, last)       # first: the file --resume continues from
        if best:
            atomic_torch_save(ck, os.path.join(run.run_dir, "best.pt"))
        atomic_json(ck["history"], os.path.join(run.run_dir, "metrics.json"))
    except OSError as e:
        raise SystemExit(f"train.py: {e.strerror or e}. Free some space, then " + (   # atomic: whole or absent
            f"continue with: python train.py --resume {shlex.quote(run.run_dir)}" if os.path.isfile(last) else
            f"start the run again with the same command: no checkpoint of it was written yet "
            f"(its flags are in {shlex.quote(os.path.join(run.run_dir, 'args.json'))})")) from None



def restore(run, ckpt):
    """Load a checkpoint into the run's objects; returns its progress state."""
    try:
        run.model.load_state_dict(ckpt["model"])
    except RuntimeError as e:            # its flags (args) edited by hand, say
        raise SystemExit(f"train.py: --resume {run.args.resume}: its weights do not fit the model its flags "
                         f"describe: {str(e).splitlines()[0]}") from None
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


def stop_if_diverged(run, step, losses=(), norm=None, weights=True):
    """A non-finite loss, gradient norm or weights (weights=False): stop, and say what to do. Every
    checkpoint holds finite weights (save_checkpoint), so the advice always starts from one."""
    if all(math.isfinite(v) for v in losses) and (norm is None or bool(torch.isfinite(norm))) and weights:
        return
    if not weights:
        what = f"the weights are no longer finite after step {step + 1} (an update overflowed); nothing was saved"
    elif norm is not None:
        what = f"non-finite gradient norm at step {step + 1}; stopped before updating"
    else:
        what = f"non-finite loss at step {step + 1}: L_c={losses[0]}, L_p={losses[1]}; stopped before updating"
    last = os.path.join(run.run_dir, "last.pt") if run.run_dir else ""
    lower = f"{run.args.lr / 10:g}"
    todo = (f"the last checkpoint {last} holds finite weights; continue from it with a lower learning "
            f"rate: python train.py --resume {shlex.quote(run.run_dir)} --lr {lower}" if last and os.path.exists(last)
            else f"no checkpoint was written yet; start again with a lower --lr (e.g. {lower})")
    raise SystemExit(f"train.py: {what}. The learning rate {run.args.lr:g} is likely too large: {todo}.")


# =============================================================================================
# The end of an epoch: validation, metrics.json, checkpoints
# =============================================================================================
def validate_and_save(run, state, partial, validate, stop=None, force=False):
    """Validate (unless --val-every skips this epoch and not `force`), record metrics.json, save
    last.pt (and best.pt when top-1 improved). `partial`: stopped mid-epoch; validate:
    evaluate.validate. The training state is saved before validation starts, so that a signal, or a
    validation that cannot run, keeps the epoch (--resume validates again); a signal returns False."""
    t0, due = time.time(), partial or force or validation_due(run.args, state["epoch"])
    before = make_checkpoint(run, state) if due else None     # what a signal mid-validation saves
    if due:
        save_checkpoint(run, state, ck=before)                # finite weights only; the epoch is kept
    try:
        per_video = os.path.join(run.run_dir, "val_per_video.csv") if run.rank == 0 else None
        metrics = validate(run.model, run.loaders.val, run.device, run.amp, run.loaders.num_classes, stop,
                           per_video) if due else {}
    except Interrupted:
        return False
    if due and not metrics["val_videos"]:
        a = run.args
        raise SystemExit(f"train.py: no validation video could be read: all {metrics['val_unreadable']} videos of "
                         f"the validation list of {a.dataset} (split {a.split}) at {a.data_root or 'the default root'} "
                         f"are unreadable. The epoch is saved: fix or replace those videos, then continue with: "
                         f"python train.py --resume {shlex.quote(run.run_dir)}")
    entry = epoch_entry(run, state, metrics, partial)    # train loss / top-1 / DC gain of the epoch
    state["history"].append(entry)
    improved = due and metrics["val_top1"] > state["best_top1"]
    state["best_top1"] = max(state["best_top1"], metrics.get("val_top1", -1.0))
    if not partial:                               # the checkpoint points at the next epoch's start
        state.update(epoch=state["epoch"] + 1, batch_in_epoch=0, epoch_sums=new_state()["epoch_sums"])
    save_checkpoint(run, state, best=improved)
    report_skipped(run)                    # unreadable videos met this epoch (data.py)
    run.log(epoch_line(entry, time.time() - t0, improved))
    return True


def end_early(run, state, reason, validate, stop):
    """Stopped by a signal or --max-steps: at an epoch end the usual work, else the position (and,
    for --max-steps, a validation) so that --resume continues exactly here."""
    partial = state["batch_in_epoch"] < run.steps_per_epoch   # not with the epoch's last step
    if reason == "max_steps" or not partial:      # --max-steps validates, whatever --val-every says
        return reason if validate_and_save(run, state, partial, validate, stop, force=reason == "max_steps") \
            else "signal"
    save_checkpoint(run, state)                          # mid-epoch signal: no validation
    return reason
