"""train.py --dry-run: what a run would be and take, measured here; nothing is trained, downloaded
or written. Not in the paper: train.py hands it the model builder, the training step and the FLOP
counter, so what is timed is what a run does."""
import contextlib
import math
import os
import statistics
import time
from typing import NamedTuple

import torch

from support import layouts, synthetic
from support.loading import ResumableSampler
from support.system import autocast, available_cores, fmt_time


class DatasetCounts(NamedTuple):
    train: int                  # training videos (after --subset / --overfit)
    val: int                    # validation videos
    classes: int
    note: str                   # how they were counted


def dataset_counts(args):
    """Videos in the split lists and classes, read from the list files alone: no video is opened.
    A synthetic set that is not written yet is counted from its plan (support.synthetic.synthetic_plan with
    write_synthetic's defaults: 4 classes of 40 videos, static-bias lists of 3/2 and 3/4 of that)."""
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
        note = "read from the dataset's list files; no video opened"
    if args.subset or args.overfit:
        n_train = min(args.subset or args.overfit, n_train)
    return DatasetCounts(n_train, n_train if args.overfit else n_val, n_classes, note)


def steps_per_epoch(n_train, batch, world):
    """Optimiser steps per epoch: the training sampler's share of one rank, in batches of `batch`."""
    return math.ceil(len(ResumableSampler(range(n_train), batch, rank=0, world_size=world)) / batch)


def seconds_per_call(fn, device, budget_s=60.0, most=3):
    """(median seconds, calls timed): one untimed warm-up call (allocation, thread pools, autotuning),
    then `most` timed calls, fewer once `budget_s` is spent (at least one). The median, not the
    mean: a call slowed by another process on the machine moves it least."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    fn(0)
    sync()
    times = []
    while len(times) < most and (not times or sum(times) < budget_s):
        t0 = time.perf_counter()
        fn(len(times) + 1)
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), len(times)


def timed_clips(device, flops, batch, cpu_budget=20e9):
    """Clips per timed step: the whole batch, but on a CPU at most what keeps one step near
    `cpu_budget` FLOPs (forward + backward ~ 3 x the forward): a full step of a big model (TSM-R50
    at 224^2, say) takes minutes there, while its time grows linearly with the clips."""
    return batch if device.type != "cpu" else max(1, min(batch, int(cpu_budget // (3 * flops))))


def dry_run(args, world, device, log, make_run, train_step, count_flops):
    """Print what the run would be and take, and return the numbers. make_run(classes, steps per
    epoch) is train.py's run with random weights (the same cost as the real one, no download);
    train_step is the training step itself, timed on random uint8 clips of the run's shape; count_flops
    is evaluate.py's. Data loading is not included (bench.py's loader benchmark measures it)."""
    counts = dataset_counts(args)
    batch = args.batch_size * args.accum_steps
    spe = steps_per_epoch(counts.train, batch, world)
    log(f"dry run: nothing is trained, downloaded or written\nrecipe: {args.recipe}")
    log(f"{args.dataset}, split {args.split}: {counts.train} training / {counts.val} validation videos, "
        f"{counts.classes} classes ({counts.note})")
    log(f"{spe} steps per epoch (batch {args.batch_size} x {args.accum_steps} micro-batches x {world} "
        f"processes), {spe * args.epochs} steps in {args.epochs} epochs")
    run = make_run(counts.classes, spe)
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
    """Seconds per validation view: a no-grad forward of random uint8 clips (pixels, as the loader gives
    them; timed_clips of them), after one warm-up, divided by the clips."""
    args, n = run.args, timed_clips(device, flops, batch)
    shape = (n, args.segments * args.frames, 3, args.crop_size, args.crop_size)
    clip = torch.randint(0, 256, shape, dtype=torch.uint8, device=device)
    run.model.eval()
    with torch.no_grad(), autocast(device, run.amp):
        seconds, _ = seconds_per_call(lambda i: run.model(clip), device, most=2)
    return seconds / n


def step_seconds(run, train_step, num_classes, batch, flops, device):
    """(seconds per training step, how it was measured): train_step itself on random uint8 clips (pixels,
    as the loader gives them) of the run's shape, the median of 3 timed steps after 1 warm-up step. Where
    the whole batch would take minutes (timed_clips), a smaller batch is timed and scaled linearly to the
    batch, and said so."""
    args, n = run.args, timed_clips(device, flops, batch)
    shape = (n, args.segments * args.frames, 3, args.crop_size, args.crop_size)
    clip, labels = torch.randint(0, 256, shape, dtype=torch.uint8), torch.randint(0, num_classes, shape[:1])
    run.model.train()
    with _fixed_accum(args, args.accum_steps if n == batch else 1):
        seconds, k = seconds_per_call(lambda i: train_step(run, clip, labels, i), device)
    how = f"median of {k} timed steps after 1 warm-up, random input {tuple(shape)}"
    if n == batch:
        return seconds, how
    return seconds * batch / n, f"{how}, scaled x {batch}/{n} clips: a full step would take minutes on this CPU"


@contextlib.contextmanager
def _fixed_accum(args, k):
    """--accum-steps set to k for the timed steps (one clip cannot be split into K micro-batches)."""
    saved, args.accum_steps = args.accum_steps, k
    try:
        yield
    finally:
        args.accum_steps = saved

