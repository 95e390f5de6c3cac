"""What a training run says and records: log.csv (and TensorBoard), the progress line, metrics.json's
epoch entries and the closing lines. Not in the paper; train.py calls each piece in one line."""
import csv
import glob
import os
import shlex
import signal
import time

import torch

from support.system import atomic_text, fmt_time, sum_over_ranks


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
    if "step" not in header:          # nothing of it can be read (all NUL bytes, say): start it anew
        log(f"warning: {path} is unreadable (no header; {len(lines)} line(s), NUL bytes?); it is written anew "
            "from this step on, and the steps logged before are lost from it (metrics.json keeps the epochs)")
        return []
    rows, broken = [], []
    for n, line in enumerate(lines[1:], start=2):
        values = next(csv.reader([line]), [])
        ok = "\x00" not in line and line.endswith("\n") and len(values) == len(header)
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
        for tmp in glob.glob(glob.escape(path) + ".tmp.*"):    # a rewrite a kill cut short (the run holds the lock)
            os.remove(tmp)

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


def count_step(state, r, dc_gain=None):
    """The step's place in the run and in the epoch's running sums (train loss, top-1, DC gain)."""
    state["step"] += 1
    state["batch_in_epoch"] += 1
    sums = state["epoch_sums"]
    sums["loss_sum"] += r.info["loss_c"]
    sums["steps"] += 1
    sums["correct"] += r.correct
    sums["seen"] += r.seen
    if dc_gain is not None:                # logged steps only: the DC gain is a diagnostic
        sums["dc_gain_sum"] += dc_gain
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


def log_step(run, state, r, writer, step_time, dc_gain=None):
    """One log.csv row and one progress line."""
    info, loss_c, loss_p = r.info, r.info["loss_c"], r.info["loss_p"]
    clips_per_s = r.seen * run.world / max(step_time, 1e-9)
    fmt = lambda k, f=".6f": format(info[k], f) if k in info else ""
    writer.write({"step": state["step"], "epoch": state["epoch"] + 1, "loss_c": f"{loss_c:.6f}",
                  "loss_p": "" if loss_p is None else f"{loss_p:.6f}",
                  "dc_gain": "" if dc_gain is None else f"{dc_gain:.6g}", "alpha": fmt("alpha"),
                  "lam": fmt("lam"), "phase": info.get("phase", ""), "gc_norm": fmt("gc_norm", ".6g"),
                  "gp_norm": fmt("gp_norm", ".6g"), "cos": fmt("cos"), "lr": f"{r.lr:.6g}",
                  "clips_per_s": f"{clips_per_s:.2f}"})
    weight = (f" alpha {info['alpha']:.3f}" if "alpha" in info else f" lam {info['lam']:.3f}" if "lam" in info
              else f" phase {info['phase']}" if "phase" in info else "")
    lp = "" if loss_p is None else f" L_p {loss_p:.4f}"
    run.log(f"epoch {state['epoch'] + 1}/{run.args.epochs} step {state['step']}/{run.total_steps} | "
            f"L_c {loss_c:.4f}{lp}{weight} | lr {r.lr:.3g} | {clips_per_s:.1f} clips/s | "
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
            f"lr {a.lr:g} (warm-up {warmup} steps, cosine{', in each phase' if a.joint == 'separate' and n_pwtp else ''}), "
            f"wd {a.weight_decay:g}, dropout {a.dropout}, label smoothing {a.label_smoothing}, "
            f"clip {a.clip_grad} per group"
            f"{', frozen BN: ' + str(len(run.frozen_bns)) if run.frozen_bns else ''} -> {run.run_dir}")


def closing_lines(run, state, reason, signum):
    """What a run says when it ends; a signal exits with 128 + its number, as a killed process would."""
    history, run_dir = state["history"], run.run_dir
    if reason == "signal":
        run.log(f"stopped by {signal.Signals(signum).name} at step {state['step']}; saved "
                f"{run_dir}/last.pt. Continue with: python train.py --resume {shlex.quote(run_dir)}")
        raise SystemExit(128 + int(signum))
    if reason == "max_steps":
        run.log(f"stopped at --max-steps {run.args.max_steps} (step {state['step']} of {run.total_steps}); "
                f"continue with: python train.py --resume {shlex.quote(run_dir)}")
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
            f"multi-view test: python evaluate.py --checkpoint {shlex.quote(os.path.join(run_dir, test))} "
            "--clips 2 --crops 3")
