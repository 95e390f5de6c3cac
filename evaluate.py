"""Test protocol of the paper (Appendix A) for a trained checkpoint, plus the metric functions
that train.py reuses for its per-epoch validation.

    python evaluate.py --checkpoint RUN_DIR/best.pt                    # 1 clip x centre crop
    python evaluate.py --checkpoint RUN_DIR/best.pt --clips 2 --crops 3   # 6 views, softmax averaged

Two protocols, as in the paper:
  * ablations: a single clip per video, one centre crop ("1 view");
  * accuracy tables: N temporal clips x 3 spatial crops covering the frame ("views"); the softmax
    scores of all views of a video are averaged before taking the arg-max (Feichtenhofer et al.).

What is reported (printed, and written as JSON; the per-class accuracy and the confusion matrix
go to CSV files next to the JSON):
  top-1 / top-5 accuracy (%), mean class accuracy (%) (the mean of the per-class recalls, the
  usual UCF101/HMDB51 metric next to top-1), ENoPR (Eq. 7, mean over every segment of every view;
  DA input only), parameters (total and PWTP), FLOPs of one view, and the number of views.

FLOPs are counted by torch.utils.flop_counter.FlopCounterMode, which counts matrix products and
convolutions only (one multiply-add = 2 FLOPs) and ignores element-wise work (activations,
normalisation, the small D x D solves inside PWTP). Papers in this area (TSM, X3D, this one)
quote "FLOPs" that are in fact multiply-adds, so we print both: GFLOPs, and G multiply-adds =
FLOPs / 2, the number comparable with the paper's tables.
"""
import argparse
import contextlib
import csv
import errno
import json
import os
import pickle
import shutil
import time

import torch
import torch.nn.functional as F


# ---------------------------------------------------------------------------------------------
# Metric functions: small, pure, tensor in -> number out. All accuracies are in percent.
# ---------------------------------------------------------------------------------------------
def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor, ks=(1, 5)) -> dict:
    """Top-k accuracy in percent for each k in ks.

    scores: (N, K) logits or probabilities (only their order matters); labels: (N,) int.
    Returns {k: percent}. A k larger than the number of classes K is clipped to K (so top-5 on a
    4-class problem is 100 %): the true class is always among "all classes".
    """
    if scores.dim() != 2 or labels.dim() != 1 or scores.shape[0] != labels.shape[0]:
        raise ValueError(f"topk_accuracy: expected scores (N, K) and labels (N,), got "
                         f"{tuple(scores.shape)} and {tuple(labels.shape)}")
    n = max(1, labels.numel())
    kmax = min(max(ks), scores.shape[1])
    top = scores.topk(kmax, dim=1).indices                  # (N, kmax) best class first
    hit = top.eq(labels.view(-1, 1))                        # (N, kmax)
    return {k: 100.0 * hit[:, :min(k, kmax)].any(dim=1).sum().item() / n for k in ks}


def confusion_matrix(preds: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(K, K) int64 counts: row = true class, column = predicted class."""
    idx = labels.long() * num_classes + preds.long()
    return torch.bincount(idx, minlength=num_classes * num_classes).view(num_classes, num_classes)


def per_class_accuracy(conf: torch.Tensor) -> torch.Tensor:
    """(K,) recall of every class in percent: diagonal / row sum; NaN for a class with no sample."""
    conf = conf.double()
    support = conf.sum(dim=1)
    acc = 100.0 * conf.diagonal() / support
    return torch.where(support > 0, acc, torch.full_like(acc, float("nan")))


def mean_class_accuracy(scores: torch.Tensor, labels: torch.Tensor, num_classes: int = None) -> float:
    """Mean over the classes that occur in `labels` of the per-class top-1 accuracy, in percent.
    Unlike top-1, every class counts the same whatever its number of test videos."""
    num_classes = num_classes or scores.shape[1]
    acc = per_class_accuracy(confusion_matrix(scores.argmax(dim=1), labels, num_classes))
    acc = acc[~torch.isnan(acc)]
    return float(acc.mean()) if acc.numel() else float("nan")


def average_view_scores(logits: torch.Tensor) -> torch.Tensor:
    """Multi-view testing: logits (B, V, K) of V views per video -> (B, K) mean of the softmaxes."""
    return F.softmax(logits.float(), dim=-1).mean(dim=1)


def classification_metrics(scores: torch.Tensor, labels: torch.Tensor, num_classes: int) -> dict:
    """The numbers train.py logs at each epoch end and evaluate.py reports."""
    top = topk_accuracy(scores, labels, ks=(1, 5))
    return {"top1": top[1], "top5": top[5],
            "mean_class_acc": mean_class_accuracy(scores, labels, num_classes)}


# ---------------------------------------------------------------------------------------------
# Running a model over a test loader (shared with train.py's validation)
# ---------------------------------------------------------------------------------------------
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device, dtype):
    """Mixed-precision context for `dtype` (torch.bfloat16 / torch.float16), or none for None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def predict(model, loader, device, amp=None):
    """Run every view of every video. Test items are (clip, label) with clip (V, S*T, C, H, W), so
    a batch is (B, V, S*T, C, H, W); a (B, S*T, C, H, W) batch is read as V = 1.

    Returns (scores (N, K) softmax averaged over views, labels (N,), enopr_sum, enopr_count,
    views per video, clips forwarded)."""
    model.eval()
    all_scores, all_labels = [], []
    enopr_sum, enopr_count, views, forwarded = 0.0, 0, None, 0
    with torch.no_grad():
        for clip, label in loader:
            if clip.dim() == 5:
                clip = clip.unsqueeze(1)                              # (B, 1, S*T, C, H, W)
            B, V = clip.shape[:2]
            views = V
            x = clip.flatten(0, 1).to(device, non_blocking=True)     # (B*V, S*T, C, H, W)
            with autocast(device, amp):                               # amp: None or a dtype
                out = model(x)
            all_scores.append(average_view_scores(out.logits.view(B, V, -1)).cpu())   # (B, K)
            all_labels.append(torch.as_tensor(label).view(-1).long())
            forwarded += B * V
            if out.pwtp is not None:                                  # (B*V*S,) per segment
                enopr_sum += float(out.pwtp.enopr.float().sum())
                enopr_count += out.pwtp.enopr.numel()
    scores = torch.cat(all_scores) if all_scores else torch.zeros(0, 0)
    labels = torch.cat(all_labels) if all_labels else torch.zeros(0, dtype=torch.long)
    return scores, labels, enopr_sum, enopr_count, views, forwarded


def count_flops(model, segments, frames, crop_size, device):
    """FLOPs of one view (a (1, S*T, 3, crop, crop) clip), counted by FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode
    model.eval()
    x = torch.zeros(1, segments * frames, 3, crop_size, crop_size, device=device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops()


def skipped_count(ds):
    """How many reads of unreadable videos the dataset skipped (data.py counts them per path)."""
    s = getattr(ds, "skipped", 0)
    return int(sum(s.values())) if hasattr(s, "values") else int(s)


# ---------------------------------------------------------------------------------------------
# One home for what train.py, visualize.py and bench.py share with this file: the device rule,
# atomic file writes, reading checkpoints and turning one into a model. They import it from here.
# ---------------------------------------------------------------------------------------------
def resolve_device(arg="auto", local_rank=0, prog="evaluate.py"):
    """--device auto|cpu|cuda|cuda:K -> torch.device. `auto` (and a bare `cuda`) pick this process's
    GPU under torchrun (LOCAL_RANK), else the CPU. Asking for CUDA without one is an error."""
    if arg == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(arg)
    except RuntimeError:
        raise SystemExit(f"{prog}: --device {arg!r}: expected auto, cpu, cuda or cuda:K") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit(f"{prog}: --device {arg} asked for CUDA but none is available")
        if device.index is None:
            device = torch.device(f"cuda:{local_rank}")
    return device


def atomic_write(path, write_fn):
    """Write `path` through a temporary file in the same folder, then os.replace it over `path`.

    Why: a kill or a crash mid-write then never leaves a truncated file under `path`, and the
    previous version stays readable until the new one is complete. If the write fails (a full
    disk raises OSError ENOSPC, often deep inside torch.save as "unexpected pos ..."), the
    temporary file is removed, so it cannot keep the disk full, and an OSError that names the file
    is raised; the old `path` is untouched."""
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        write_fn(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        if isinstance(e, (OSError, RuntimeError)) and not isinstance(e, FileNotFoundError):
            free = shutil.disk_usage(os.path.dirname(os.path.abspath(path))).free
            raise OSError(getattr(e, "errno", None) or errno.EIO,
                          f"could not write {path} ({type(e).__name__}: {e}); {free / 2**20:.0f} MiB free "
                          f"there (disk full?). The previous {os.path.basename(path)}, if any, is untouched "
                          "and no temporary file was left behind") from e
        raise


def atomic_torch_save(obj, path):
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def atomic_json(obj, path):
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2)
    atomic_write(path, write)


def read_torch_file(path, what, weights_only=False):
    """torch.load(path) with errors that say which file and flag: `what` is e.g.
    "train.py: --resume". A missing, empty, truncated or foreign file raises ValueError (or
    FileNotFoundError) naming it, instead of a bare EOFError / UnpicklingError / zip error.

    weights_only=False runs the pickle: our own checkpoints hold numpy RNG states, which need it.
    Only load checkpoints you trust (ones this code wrote)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} {path!r} does not exist")
    if os.path.getsize(path) == 0:
        raise ValueError(f"{what} {path!r} is empty (0 bytes): an interrupted copy or a full disk?")
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only)
    except (EOFError, RuntimeError, pickle.UnpicklingError, ValueError, TypeError, AttributeError,
            ModuleNotFoundError, UnicodeDecodeError) as e:
        raise ValueError(f"{what} {path!r} is not a readable PyTorch file: truncated, corrupt or "
                         f"not written by torch.save ({type(e).__name__}: {str(e).splitlines()[0][:160]})") from None


def load_checkpoint(path, prog="evaluate.py", flag="--checkpoint"):
    """train.py's checkpoint (or an exported weights file), checked for the entries that rebuild the
    model. Raises FileNotFoundError / ValueError naming `prog`, `flag`, the file and what was
    expected. Used by evaluate.py, visualize.py and train.py --resume."""
    ckpt = read_torch_file(path, f"{prog}: {flag}")
    for key in ("model", "model_config"):
        if not isinstance(ckpt, dict) or key not in ckpt:
            raise ValueError(f"{prog}: {flag} {path!r} has no {key!r} entry; expected a checkpoint "
                             "written by train.py (keys 'model', 'model_config', ...) or by "
                             "evaluate.py --export")
    return ckpt


def _strip_prefix(state, prefix):
    # DistributedDataParallel ("module.") and torch.compile ("_orig_mod.") rename every key.
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items()}
    return state


def model_from_checkpoint(ckpt):
    """The DAModel a checkpoint (or export) describes, with its weights, on the CPU."""
    import backbones

    config = dict(ckpt["model_config"])
    config["pretrained"] = None            # the weights come from the checkpoint: no download
    model = backbones.build_model(**config)
    model.load_state_dict(_strip_prefix(_strip_prefix(ckpt["model"], "module."), "_orig_mod."))
    return model


def write_csvs(stem, classes, conf, per_class):
    """{stem}_per_class.csv (class, videos, correct, accuracy) and {stem}_confusion.csv
    (rows = true class, columns = predicted class)."""
    with open(stem + "_per_class.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["class_index", "class", "videos", "correct", "accuracy"])
        for k, name in enumerate(classes):
            acc = per_class[k].item()
            w.writerow([k, name, int(conf[k].sum()), int(conf[k, k]), "" if acc != acc else f"{acc:.4f}"])
    with open(stem + "_confusion.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["true\\pred"] + list(classes))
        for k, name in enumerate(classes):
            w.writerow([name] + [int(v) for v in conf[k]])


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="a train.py checkpoint (RUN_DIR/best.pt or last.pt)")
    p.add_argument("--dataset", default=None, help="dataset name (default: the one the model was trained on)")
    p.add_argument("--data-root", default=None, help="dataset folder (default: the training run's)")
    p.add_argument("--split", type=int, default=None, help="split (default: the training run's)")
    p.add_argument("--clips", type=int, default=1, help="temporal clips per video (default 1)")
    p.add_argument("--crops", type=int, default=1, choices=(1, 3),
                   help="1 = centre crop, 3 = three crops covering the frame (default 1)")
    p.add_argument("--batch-size", type=int, default=4, help="videos per batch (each has clips*crops views)")
    p.add_argument("--workers", type=int, default=2, help="data loader processes")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:K")
    p.add_argument("--amp", nargs="?", const="bf16", default=None, choices=AMP_DTYPES,
                   help="autocast to bf16 (plain --amp) or fp16")
    p.add_argument("--out", default=None,
                   help="JSON file (default: next to the checkpoint, eval_{clips}x{crops}.json); "
                        "the CSVs are written beside it")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import backbones
    import data

    if args.clips < 1:
        raise SystemExit(f"evaluate.py: --clips must be >= 1, got {args.clips}")
    try:
        ckpt = load_checkpoint(args.checkpoint)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(str(e)) from None
    targs = ckpt.get("args", {})
    dataset = args.dataset or targs.get("dataset", "synthetic")
    data_root = args.data_root or targs.get("data_root")
    if dataset == "synthetic" and data_root is None:
        data_root = data.default_synthetic_root()
    split = args.split if args.split is not None else targs.get("split", 1)
    cfg = ckpt["model_config"]
    segments, frames = cfg.get("segments", 8), cfg.get("frames", 8)
    crop_size = targs.get("crop_size") or cfg.get("crop_size", 224)

    device = resolve_device(args.device)
    amp = AMP_DTYPES[args.amp] if args.amp else None

    model = model_from_checkpoint(ckpt).to(device)

    ds = data.build_dataset(dataset, data_root, split=split, train=False, segments=segments,
                            frames=frames, crop_size=crop_size, clips=args.clips, crops=args.crops,
                            seed=targs.get("seed", 0))
    classes = list(getattr(ds, "classes", ckpt.get("classes") or []))
    num_classes = cfg.get("num_classes", len(classes))
    if len(classes) != num_classes:
        raise SystemExit(f"evaluate.py: the dataset has {len(classes)} classes but the checkpoint's model "
                         f"{num_classes}; wrong --dataset/--data-root?")
    trained = ckpt.get("classes")
    if trained and list(trained) != classes:
        # Same count, different names or order: label k would be scored against the wrong class.
        diff = next(k for k, (a, b) in enumerate(zip(trained, classes)) if a != b)
        raise SystemExit(f"evaluate.py: {dataset} at {data_root} lists class {diff} as {classes[diff]!r}, but "
                         f"the checkpoint was trained with {trained[diff]!r} there; wrong --dataset, "
                         f"--data-root or --split?")
    loader = torch.utils.data.DataLoader(ds, batch_size=args.batch_size, shuffle=False,
                                         num_workers=args.workers, pin_memory=device.type == "cuda")

    t0 = time.time()
    scores, labels, enopr_sum, enopr_count, views, forwarded = predict(model, loader, device, amp=amp)
    elapsed = time.time() - t0
    metrics = classification_metrics(scores, labels, num_classes)
    conf = confusion_matrix(scores.argmax(dim=1), labels, num_classes)
    per_class = per_class_accuracy(conf)
    flops = count_flops(model, segments, frames, crop_size, device)
    n_params = sum(p.numel() for p in model.parameters())
    n_pwtp = sum(p.numel() for p in model.shared_parameters())

    result = {
        "checkpoint": os.path.abspath(args.checkpoint),
        "dataset": dataset, "data_root": data_root, "split": split,
        "model_config": cfg,
        "videos": int(labels.numel()),
        "clips": args.clips, "crops": args.crops,
        "views_per_video": views, "clips_forwarded": forwarded,
        "top1": metrics["top1"], "top5": metrics["top5"],
        "mean_class_acc": metrics["mean_class_acc"],
        "enopr": enopr_sum / enopr_count if enopr_count else None,
        "parameters": n_params, "parameters_pwtp": n_pwtp,
        "flops_per_view": flops,
        "gflops_per_view": flops / 1e9,
        "gmacs_per_view": flops / 2e9,
        "flops_note": "FlopCounterMode: matmul/conv only, 1 multiply-add = 2 FLOPs; "
                      "gmacs_per_view (multiply-adds) is the number papers call FLOPs",
        "skipped_reads": skipped_count(ds),
        "seconds": elapsed,
    }
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(args.checkpoint)),
                                   f"eval_{args.clips}x{args.crops}.json")
    os.makedirs(os.path.dirname(os.path.abspath(out)) or ".", exist_ok=True)
    with open(out, "w") as f:
        json.dump(result, f, indent=2)
    stem = out[:-5] if out.endswith(".json") else out
    write_csvs(stem, classes or [str(k) for k in range(num_classes)], conf, per_class)

    enopr_txt = f"{result['enopr']:.4f}" if result["enopr"] is not None else "n/a (no PWTP)"
    print(f"{dataset} split {split}: {result['videos']} videos x {views} views "
          f"({args.clips} clips x {args.crops} crops)")
    print(f"  top-1 {result['top1']:.2f} %   top-5 {result['top5']:.2f} %   "
          f"mean class acc {result['mean_class_acc']:.2f} %   ENoPR {enopr_txt}")
    print(f"  parameters {n_params / 1e6:.3f} M (PWTP {n_pwtp:,})   per view: {flops / 1e9:.3f} GFLOPs "
          f"= {flops / 2e9:.3f} G multiply-adds (paper-style 'FLOPs')")
    print(f"  wrote {out}, {stem}_per_class.csv, {stem}_confusion.csv")
    return result


if __name__ == "__main__":
    main()
