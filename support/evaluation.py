"""evaluate.py's infrastructure, not the paper: the flags that are not the test protocol's and the
checks of every flag; the checkpoint read with errors that name it, and --export; the process group,
device and model placement (Context); which test split a checkpoint means when the flags do not
say; the class-list check; the printed list of unreadable videos.
"""
import argparse
import os
from typing import NamedTuple, Optional

import torch

from support import predict_videos, probe
from support.checkpoints import class_list_error, export_weights, finite_weights, load_checkpoint
from support.synthetic import default_synthetic_root
from support.system import AMP_DTYPES, available_cores, gather_objects, resolve_device, setup_distributed


def add_flags(flag):
    """The flags that are not the protocol's, on the caller's argparse add_argument `flag`."""
    flag("--dataset", default=None, help="dataset name (default: the one the model was trained on)")
    flag("--data-root", default=None, help="dataset folder (default: the training run's)")
    flag("--split", type=int, default=None, help="split (default: the training run's)")
    flag("--out", default=None,
         help="test protocol: the JSON file (default: next to the checkpoint, eval_{dataset}-split{split}-"
              "{clips}x{crops}.json; the CSVs go beside it). --video: the predictions CSV (default for a "
              "folder: FOLDER_predictions.csv next to it; files alone: printed only)")
    flag("--batch-size", type=int, default=4, help="videos per batch (each has clips*crops views)")
    flag("--workers", type=int, default=min(2, available_cores()),
         help="data loader processes (default 2, at most this machine's cores)")
    flag("--device", default="auto", help="auto | cpu | cuda | cuda:K")
    flag("--amp", nargs="?", const="bf16", default=None, choices=AMP_DTYPES,
         help="autocast to bf16 (plain --amp) or fp16")
    flag("--log-every", type=int, default=10, help="a progress line every N batches (default 10)")
    probe.add_flags(flag)
    predict_videos.add_flags(flag)
    flag("--export", default=None, metavar="OUT.pt",
         help="write the weights only (model, model_config, classes, args) and exit")


def check_flags(args, datasets):
    """Bad flags stop here, named, before anything is loaded. datasets: the --dataset choices."""
    def bad(msg):
        raise SystemExit(f"evaluate.py: {msg}")
    for flag, value, low in (("--clips", args.clips, 1), ("--topk", args.topk, 1),
                             ("--batch-size", args.batch_size, 1), ("--workers", args.workers, 0),
                             ("--log-every", args.log_every, 1), ("--probe-seed", args.probe_seed, 0)):
        if value < low:
            bad(f"{flag} must be >= {low}, got {value}")
    if args.export and (args.video or args.static_probe or args.da_png):
        other = "--video" if args.video else "--static-probe" if args.static_probe else "--da-png"
        bad(f"--export writes the weights and exits; it cannot be combined with {other}")
    if args.da_png and not args.video:
        bad("--da-png draws the videos given by --video; add --video FILE")
    if args.video and args.static_probe:
        bad("--static-probe needs the labelled test set; it cannot be combined with --video")
    for path in args.video or []:
        if not os.path.exists(path):
            bad(f"--video {path!r} does not exist")
    if args.dataset is not None and args.dataset not in datasets:
        bad(f"--dataset {args.dataset!r}: expected one of {', '.join(datasets)}")


def read_checkpoint(args):
    """--checkpoint, checked for what the flags ask of it; SystemExit naming the file otherwise."""
    try:
        ckpt = load_checkpoint(args.checkpoint)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(str(e)) from None
    if not finite_weights(ckpt["model"]):         # a diverged run's weights score nothing honestly
        raise SystemExit(f"evaluate.py: --checkpoint {args.checkpoint} holds weights that are not finite (NaN or "
                         "inf: a training run that diverged); test a checkpoint saved before it diverged")
    if args.da_png and ckpt["model_config"].get("input", "da") != "da":
        raise SystemExit(f"evaluate.py: --da-png needs a DA model, but --checkpoint {args.checkpoint} has "
                         f"input={ckpt['model_config'].get('input')!r}: no PWTP, no dynamic appearance to draw")
    return ckpt


def export(args, ckpt):
    """--export: the shareable weights file, written by rank 0 alone."""
    if int(os.environ.get("RANK", "0")) != 0:
        return None
    return export_weights(ckpt, args.checkpoint, args.export)


class Context(NamedTuple):
    """What every step after start-up needs. log prints on rank 0, nothing elsewhere."""
    args: argparse.Namespace
    ckpt: dict
    model: torch.nn.Module
    device: torch.device
    amp: Optional[torch.dtype]
    rank: int
    log: callable
    segments: int
    frames: int
    crop_size: int


def start(args, ckpt, model):
    """The process group (under torchrun), the device and `model` (rebuilt from ckpt) on it: a Context."""
    resolve_device(args.device, int(os.environ.get("LOCAL_RANK", "0")))   # a bad --device, named here
    rank, _, device = setup_distributed(args.device)   # torchrun's environment, if any
    cfg, targs = ckpt["model_config"], ckpt.get("args") or {}
    return Context(args=args, ckpt=ckpt, model=model.to(device).eval(), device=device,
                   amp=AMP_DTYPES[args.amp] if args.amp else None, rank=rank,
                   log=(lambda *a: print(*a, flush=True)) if rank == 0 else (lambda *a: None),
                   segments=cfg.get("segments", 8), frames=cfg.get("frames", 8),
                   crop_size=targs.get("crop_size") or cfg.get("crop_size", 224))


def merge_over_ranks(p, first=()):
    """Every rank's `p` (a NamedTuple of tensors and numbers) merged, on every rank: tensors
    concatenated in rank order (a rank's empty one left out), numbers summed, and the fields named in
    `first` taken from the first rank where they are not None. `p` itself when not distributed.
    A collective: every rank calls it."""
    parts = [type(p)(*q) for q in gather_objects(tuple(p))]
    if len(parts) == 1:
        return p
    merged = {}
    for name, mine in p._asdict().items():
        values = [getattr(q, name) for q in parts]
        if name in first:
            merged[name] = next((v for v in values if v is not None), None)
        elif isinstance(mine, torch.Tensor):
            full = [v for v in values if v.numel()]
            merged[name] = torch.cat(full) if full else mine
        else:
            merged[name] = sum(values)
    return type(p)(**merged)


def test_split_of(args, ckpt):
    """(dataset, data_root, split, seed): the flags, else the training run's own (train.py's args
    in the checkpoint), else the synthetic set at its default place."""
    targs = ckpt.get("args") or {}
    dataset = args.dataset or targs.get("dataset", "synthetic")
    data_root = args.data_root or targs.get("data_root")
    if dataset == "synthetic" and data_root is None:
        data_root = default_synthetic_root()
    split = args.split if args.split is not None else targs.get("split", 1)
    return dataset, data_root, split, targs.get("seed", 0)


def check_classes(ckpt, ds, where):
    """The dataset's class names, refused unless they are the checkpoint's (count and order)."""
    classes, n = list(ds.classes), ckpt["model_config"].get("num_classes", len(ds.classes))
    trained = ckpt.get("classes") or (classes if n == len(classes) else ["?"] * n)   # names, else the count
    error = class_list_error(trained, classes, where)
    if error:
        raise SystemExit(f"evaluate.py: {error}; wrong --dataset, --data-root or --split?")
    return classes


def report_unreadable(log, unreadable, out):
    """The unreadable videos left out, by name (ten at most; the JSON `out` lists them all)."""
    for path in unreadable[:10]:
        log(f"  unreadable, left out: {path}")
    if len(unreadable) > 10:
        log(f"  ... {len(unreadable) - 10} more unreadable videos, all listed in {out}")
