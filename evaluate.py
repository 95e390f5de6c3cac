"""The paper's test protocol (Appendix A) for a trained checkpoint, and the metrics that train.py's
validation reports too.

    python evaluate.py --checkpoint RUN_DIR/best.pt                      # 1 clip x centre crop
    python evaluate.py --checkpoint RUN_DIR/best.pt --clips 2 --crops 3  # 6 views, softmax averaged
    python evaluate.py --checkpoint RUN_DIR/best.pt --static-probe       # + how much is static bias
    python evaluate.py --checkpoint RUN_DIR/best.pt --video a.mp4 [b.avi ...] [--topk 5] [--da-png da.png]
    python evaluate.py --checkpoint RUN_DIR/best.pt --video FOLDER       # every video in it -> CSV
    python evaluate.py --checkpoint RUN_DIR/best.pt --export model.pt    # shareable weights only
    torchrun --nproc_per_node=8 evaluate.py --checkpoint RUN_DIR/best.pt --clips 2 --crops 3

Two protocols, as in the paper: ablations use a single clip per video and one centre crop ("1
view"); accuracy tables use N temporal clips x 3 spatial crops covering the frame, and the softmax
scores of all views of a video are averaged before the arg-max (Feichtenhofer et al.).

Reported (printed, and written as eval_{dataset}-split{split}-{clips}x{crops}.json next to the
checkpoint, with per-class accuracy, confusion-matrix and per-video prediction CSVs beside it):
top-1 / top-5 (%), mean class accuracy (%, the usual UCF101/HMDB51 metric next to top-1), ENoPR
(Eq. 7, mean over every segment of every view; DA input only), parameters (total and PWTP), FLOPs
of one view, views.

Unreadable videos. The test protocol never substitutes a video (training does, data.py): an
undecodable test video comes back as (zeros, label -1); `predict` drops those rows, every metric is
over the N readable videos of the M in the split, the headline says "top-1 over N of M videos; K
unreadable", and the JSON lists the K paths. A substitute would score some other video twice.

FLOPs (count_flops) and multiply-adds = FLOPs / 2, the number papers in this area call "FLOPs".
Under torchrun the videos are split over the ranks (each video once), the predictions gathered,
and rank 0 alone prints and writes.
"""
import argparse
import copy
import itertools
import os
import time
from typing import NamedTuple, Optional

import numpy as np
import torch
import torch.nn.functional as F

import backbones
import data
from support import layouts, synthetic     # --video folders; the synthetic set's default root
from support.loading import unreadable_over_ranks   # the unreadable test videos of every rank
from support.checkpoints import (class_list_error, export_weights, load_checkpoint, result_path,
                                 write_per_video, write_result_csvs)
from support.system import (AMP_DTYPES, Progress, atomic_csv, atomic_json, autocast, available_cores,
                            close_distributed, gather_objects, resolve_device, setup_distributed)


# ========== Metrics ==============================================================================
# Small and pure: tensors in, a number out. All accuracies are in percent.
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


def mean_nll(probs: torch.Tensor, labels: torch.Tensor, eps: float = 1e-12) -> float:
    """Mean over the videos of -log p(true class): the cross-entropy, without label smoothing, of
    the view-averaged probabilities probs (N, K) (average_view_scores). With one view it is
    F.cross_entropy of the logits. This is the held-out L_c that bench.py sets against L_p
    (the L_c-L_p correlation of Fig. 3). A probability rounded to 0 counts as `eps` so that one
    video cannot make the mean infinite (ours). NaN for no video."""
    if labels.numel() == 0:
        return float("nan")
    p = probs.double().gather(1, labels.long().view(-1, 1)).squeeze(1)     # (N,) p(true class)
    return float(-p.clamp_min(eps).log().mean())


def classification_metrics(scores: torch.Tensor, labels: torch.Tensor, num_classes: int) -> dict:
    """The numbers train.py logs at each epoch end and evaluate.py reports."""
    top = topk_accuracy(scores, labels, ks=(1, 5))
    return {"top1": top[1], "top5": top[5],
            "mean_class_acc": mean_class_accuracy(scores, labels, num_classes)}


# ========== Running a model over a test loader (train.py's validation too) =======================
class Predictions(NamedTuple):
    """What `predict` returns for this rank's videos (after gather_predictions: for every rank's)."""
    scores: torch.Tensor        # (N, K) softmax averaged over the views of each readable video
    labels: torch.Tensor        # (N,) int64 label of each
    enopr_sum: float            # ENoPR (Eq. 7) summed over every segment of every view; 0 without PWTP
    enopr_count: int            # the number of segments in that sum
    views: Optional[int]        # views per video V (None when the loader was empty)
    forwarded: int              # clips (views) that went through the model
    unreadable: int             # rows with label -1 (unreadable videos): dropped, only counted
    index: Optional[torch.Tensor] = None   # (N,) each row's index in the loader's dataset


def predict(model, loader, device, amp=None, progress=None) -> Predictions:
    """Run every view of every readable video. Test items are (clip, label) with clip
    (V, S*T, C, H, W), so a batch is (B, V, S*T, C, H, W); a (B, S*T, C, H, W) batch is read as V = 1.

    Label -1 marks a video data.py could not read (substitute=False): its row is dropped before the
    forward pass and counted in `unreadable`. progress: None or a callable given the number of
    videos (readable or not) done so far, after each batch."""
    model.eval()
    all_scores, all_labels, all_index = [], [], []
    enopr_sum, enopr_count, views, forwarded, unreadable, seen = 0.0, 0, None, 0, 0, 0
    # the dataset index of each item, in the order batches bring them (a plain list: its own order)
    order = iter(loader.sampler) if hasattr(loader, "sampler") else itertools.count()
    with torch.no_grad():
        for clip, label in loader:
            label = torch.as_tensor(label).view(-1).long()              # (B,)
            index = torch.tensor([next(order) for _ in range(label.numel())], dtype=torch.long)
            if clip.dim() == 5:
                clip = clip.unsqueeze(1)                                 # (B, 1, S*T, C, H, W)
            views, seen = clip.shape[1], seen + label.numel()
            keep = label >= 0
            if not bool(keep.all()):
                unreadable += int((~keep).sum())
                clip, label, index = clip[keep], label[keep], index[keep]
            if label.numel():
                B, V = clip.shape[:2]
                x = clip.flatten(0, 1).to(device, non_blocking=True)    # (B*V, S*T, C, H, W)
                with autocast(device, amp):                              # amp: None or a dtype
                    out = model(x)
                all_scores.append(average_view_scores(out.logits.view(B, V, -1)).cpu())   # (B, K)
                all_labels.append(label)
                all_index.append(index)
                forwarded += B * V
                if out.pwtp is not None:                                 # (B*V*S,) per segment
                    enopr_sum += float(out.pwtp.enopr.float().sum())
                    enopr_count += out.pwtp.enopr.numel()
            if progress is not None:
                progress(seen)
    scores = torch.cat(all_scores) if all_scores else torch.zeros(0, 0)
    labels = torch.cat(all_labels) if all_labels else torch.zeros(0, dtype=torch.long)
    index = torch.cat(all_index) if all_index else torch.zeros(0, dtype=torch.long)
    return Predictions(scores, labels, enopr_sum, enopr_count, views, forwarded, unreadable, index)


def gather_predictions(p: Predictions) -> Predictions:
    """Every rank's Predictions concatenated (rank order), on every rank; `p` itself when not
    distributed. The metrics do not depend on the order of the videos."""
    parts = [Predictions(*q) for q in gather_objects(tuple(p))]
    if len(parts) == 1:
        return p
    scores = [q.scores for q in parts if q.scores.numel()]
    return Predictions(scores=torch.cat(scores) if scores else p.scores,
                       labels=torch.cat([q.labels for q in parts]),
                       enopr_sum=sum(q.enopr_sum for q in parts), enopr_count=sum(q.enopr_count for q in parts),
                       views=next((q.views for q in parts if q.views is not None), None),
                       forwarded=sum(q.forwarded for q in parts), unreadable=sum(q.unreadable for q in parts),
                       index=torch.cat([q.index for q in parts]))


def count_flops(model, segments, frames, crop_size, device):
    """FLOPs of one view (a (1, S*T, 3, crop, crop) clip), counted by torch's FlopCounterMode: matrix
    products and convolutions only, one multiply-add = 2 FLOPs."""
    from torch.utils.flop_counter import FlopCounterMode
    model.eval()
    x = torch.zeros(1, segments * frames, 3, crop_size, crop_size, device=device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops()


# ========== The static-bias probe ================================================================
# --static-probe (ours, after the StillMix paper's SCUBA/SCUFO idea): how much of
# the accuracy static cues alone buy. Two extra passes over the test set:
#   frozen    every clip replaced by its own middle frame repeated over all S*T frames: no motion;
#   conflict  every clip mixed 50/50 with the middle frame of a video of ANOTHER class (partner_order):
#             the motion is intact, the static scene points at a wrong class.
# A model that reads motion keeps its conflict accuracy and loses its frozen accuracy. For FIXED bases
# that contain the constant direction, a static image added to a clip leaves DA unchanged (Eq. 5-6;
# tests/test_evaluate.py checks the algebra); PWTP computes its bases from the clip itself (Eq. 2-4)
# and the mix halves the moving part too, so for the model the probe is an experiment, not an identity.
def still_frame(clip: torch.Tensor) -> torch.Tensor:
    """(..., S*T, C, H, W) -> (..., C, H, W): the clip's middle frame, index S*T // 2 (the later of
    the two middle ones for even S*T). The middle rather than the first is our choice: it is the
    frame most likely to show the action's scene."""
    return clip.select(-4, clip.shape[-4] // 2)


def frozen_clip(clip: torch.Tensor) -> torch.Tensor:
    """(..., S*T, C, H, W) -> same shape, every frame the middle one: the appearance stays, all
    motion is gone. For DA input the PWTP sees a constant temporal profile at every pixel."""
    return still_frame(clip).unsqueeze(-4).expand_as(clip).contiguous()


def conflict_clip(clip: torch.Tensor, other_still: torch.Tensor) -> torch.Tensor:
    """clip (..., S*T, C, H, W) and a still frame other_still (..., C, H, W) of a video of another
    class -> 0.5 * clip + 0.5 * other_still on every frame (same shape as clip).

    Mixed in normalised space, which is the same as mixing the pixels: ImageNet normalisation is
    affine and the two weights sum to 1."""
    if other_still.shape != clip.shape[:-4] + clip.shape[-3:]:
        raise ValueError(f"conflict_clip: the still must be (..., C, H, W) matching the clip "
                         f"{tuple(clip.shape)}, got {tuple(other_still.shape)}")
    return 0.5 * clip + 0.5 * other_still.unsqueeze(-4)


def partner_order(labels, index, seed=0):
    """The videos whose still may be mixed into video `index` for `conflict`: every video of another
    class than labels[index], shuffled by numpy's default_rng([seed, index]) (deterministic, and
    independent of ranks and workers). The first readable one is used."""
    labels = np.asarray(labels)
    others = np.flatnonzero(labels != labels[index])
    return np.random.default_rng([int(seed), int(index)]).permutation(others).tolist()


class StaticProbeDataset(torch.utils.data.Dataset):
    """The test set `ds` (items (clip (V, S*T, C, H, W), label), label -1 = unreadable) with every
    readable clip replaced by frozen_clip(clip) ("frozen") or by conflict_clip(clip, the still of
    the same view of its partner video) ("conflict"; partner: partner_order over ds.samples' labels)."""

    def __init__(self, ds, mode, seed=0):
        if mode not in ("frozen", "conflict"):
            raise ValueError(f"StaticProbeDataset: mode must be 'frozen' or 'conflict', got {mode!r}")
        self.ds, self.mode, self.seed = ds, mode, seed
        self.labels = np.array([label for _, label in ds.samples])

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, index):
        clip, label = self.ds[index]
        if label < 0:
            return clip, label                          # unreadable: stays out of the probe too
        if self.mode == "frozen":
            return frozen_clip(clip), label
        for j in partner_order(self.labels, index, self.seed):
            other, other_label = self.ds[j]
            if other_label >= 0:
                return conflict_clip(clip, still_frame(other)), label
        raise RuntimeError(f"--static-probe: no readable video of a class other than "
                           f"{label} to mix into video {index}")


# ========== Command line =========================================================================
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    flag = p.add_argument
    flag("--checkpoint", required=True, help="a train.py checkpoint (RUN_DIR/best.pt or last.pt) or an --export file")
    flag("--dataset", default=None, help="dataset name (default: the one the model was trained on)")
    flag("--data-root", default=None, help="dataset folder (default: the training run's)")
    flag("--split", type=int, default=None, help="split (default: the training run's)")
    flag("--clips", type=int, default=1, help="temporal clips per video (default 1)")
    flag("--crops", type=int, default=1, choices=(1, 3),
         help="1 = centre crop, 3 = three crops covering the frame (default 1)")
    flag("--batch-size", type=int, default=4, help="videos per batch (each has clips*crops views)")
    flag("--workers", type=int, default=min(2, available_cores()),
         help="data loader processes (default 2, at most this machine's cores)")
    flag("--device", default="auto", help="auto | cpu | cuda | cuda:K")
    flag("--amp", nargs="?", const="bf16", default=None, choices=AMP_DTYPES,
         help="autocast to bf16 (plain --amp) or fp16")
    flag("--log-every", type=int, default=10, help="a progress line every N batches (default 10)")
    flag("--out", default=None,
         help="test protocol: the JSON file (default: next to the checkpoint, eval_{dataset}-split{split}-"
              "{clips}x{crops}.json; the CSVs go beside it). --video: the predictions CSV (default for a "
              "folder: FOLDER_predictions.csv next to it; files alone: printed only)")
    flag("--static-probe", action="store_true",
         help="also report top-1 on 'frozen' clips (middle frame repeated) and 'conflict' clips "
              "(mixed 50/50 with a still of another class's video)")
    flag("--probe-seed", type=int, default=0, help="seed that picks each conflict partner (default 0)")
    flag("--video", nargs="+", default=None, metavar="PATH",
         help="predict these video files, or every video file directly inside a folder")
    flag("--topk", type=int, default=5, help="--video: classes shown per video (default 5)")
    flag("--da-png", default=None, metavar="OUT.png",
         help="--video: save the DA picture of what the model saw (DA models only); several videos: "
              "OUT_{video name}.png")
    flag("--export", default=None, metavar="OUT.pt",
         help="write the weights only (model, model_config, classes, args) and exit")
    return p.parse_args(argv)


def check_flags(args):
    """Bad flags stop here, named, before anything is loaded."""
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
    if args.dataset is not None and args.dataset not in data.DATASETS:
        bad(f"--dataset {args.dataset!r}: expected one of {', '.join(data.DATASETS)}")


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


def start(args, ckpt):
    """The process group (under torchrun), the device and the model: a Context."""
    resolve_device(args.device, int(os.environ.get("LOCAL_RANK", "0")))   # a bad --device, named here
    rank, _, device = setup_distributed(args.device)   # torchrun's environment, if any
    cfg, targs = ckpt["model_config"], ckpt.get("args") or {}
    return Context(args=args, ckpt=ckpt, model=backbones.model_from_checkpoint(ckpt).to(device).eval(), device=device,
                   amp=AMP_DTYPES[args.amp] if args.amp else None, rank=rank,
                   log=(lambda *a: print(*a, flush=True)) if rank == 0 else (lambda *a: None),
                   segments=cfg.get("segments", 8), frames=cfg.get("frames", 8),
                   crop_size=targs.get("crop_size") or cfg.get("crop_size", 224))


def run_protocol(ctx, ds, what):
    """Every video of `ds` through the model (this rank's shard), gathered over ranks."""
    sampler = data.ShardSampler(len(ds))
    loader = torch.utils.data.DataLoader(ds, batch_size=ctx.args.batch_size, sampler=sampler,
                                         num_workers=ctx.args.workers, pin_memory=ctx.device.type == "cuda")
    progress = Progress(what, len(sampler), len(ds), ctx.log, ctx.args.log_every)
    return gather_predictions(predict(ctx.model, loader, ctx.device, ctx.amp, progress))


# ========== The test protocol on a dataset's test split ==========================================
def load_test_split(ctx):
    """(ds, dataset, data_root, split): the test split as the run was trained (unless flags say
    otherwise), with the test protocol's views and substitute=False (unreadable -> label -1)."""
    args, targs = ctx.args, ctx.ckpt.get("args") or {}
    dataset = args.dataset or targs.get("dataset", "synthetic")
    data_root = args.data_root or targs.get("data_root")
    if dataset == "synthetic" and data_root is None:
        data_root = synthetic.default_synthetic_root()
    split = args.split if args.split is not None else targs.get("split", 1)
    try:
        ds = data.build_dataset(dataset, data_root, split=split, train=False, segments=ctx.segments,
                                frames=ctx.frames, crop_size=ctx.crop_size, clips=args.clips, crops=args.crops,
                                seed=targs.get("seed", 0), substitute=False)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"evaluate.py: {e}") from None
    return ds, dataset, data_root, split


def check_classes(ctx, ds, dataset, data_root):
    """The dataset's class names, refused unless they are the checkpoint's (count and order)."""
    classes, n = list(ds.classes), ctx.ckpt["model_config"].get("num_classes", len(ds.classes))
    trained = ctx.ckpt.get("classes") or (classes if n == len(classes) else ["?"] * n)   # names, else the count
    error = class_list_error(trained, classes, f"{dataset} at {data_root}")
    if error:
        raise SystemExit(f"evaluate.py: {error}; wrong --dataset, --data-root or --split?")
    return classes


def static_probe(ctx, ds):
    """Top-1 (%) on the frozen and the conflict version of every readable test clip."""
    res = {}
    for mode in ("frozen", "conflict"):
        p = run_protocol(ctx, StaticProbeDataset(ds, mode, ctx.args.probe_seed), f"static probe ({mode})")
        res[f"{mode}_top1"] = topk_accuracy(p.scores, p.labels, ks=(1,))[1]
        res[f"{mode}_videos"] = int(p.labels.numel())
    res["frozen_rule"] = "each clip replaced by its middle frame (index S*T//2) repeated over all S*T frames"
    res["conflict_rule"] = (f"each clip mixed 0.5/0.5 with the middle frame of the same view of another "
                            f"class's video: the first readable of partner_order(labels, index, "
                            f"seed={ctx.args.probe_seed}) (numpy default_rng([seed, index]))")
    return res


def evaluate_dataset(ctx):
    """The test protocol on the test split: metrics over the readable videos, JSON + CSVs on rank 0."""
    ds, dataset, data_root, split = load_test_split(ctx)
    classes = check_classes(ctx, ds, dataset, data_root)
    if ctx.args.static_probe and len({label for _, label in ds.samples}) < 2:
        raise SystemExit("evaluate.py: --static-probe needs test videos of at least two classes")
    a = ctx.args                          # never replaces the evaluation of another dataset or root
    out = result_path(a.out, a.checkpoint, f"eval_{dataset}-split{split}-{a.clips}x{a.crops}.json", dataset, data_root)
    t0 = time.time()
    p = run_protocol(ctx, ds, f"{dataset} split {split}")
    elapsed = time.time() - t0
    unreadable = unreadable_over_ranks(ds)
    if p.labels.numel() == 0:
        raise SystemExit(f"evaluate.py: none of the {len(ds)} test videos of {dataset} at {data_root} could be "
                         f"read (e.g. {unreadable[:3]}); check them with `python data.py inspect`")
    probe = static_probe(ctx, ds) if ctx.args.static_probe else None
    if ctx.rank != 0:
        return None
    result = build_result(ctx, p, dataset, data_root, split, len(ds), unreadable, elapsed)
    if probe is not None:
        result["static_probe"] = probe
    conf = confusion_matrix(p.scores.argmax(dim=1), p.labels, len(classes))
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    atomic_json(result, out)
    stem = out[:-5] if out.endswith(".json") else out
    write_result_csvs(stem, classes, conf, per_class_accuracy(conf))     # per class, confusion matrix
    write_per_video(stem + "_per_video.csv", ds.samples, classes, p)    # one row per video
    report(ctx, result, out, stem)
    return result


def build_result(ctx, p, dataset, data_root, split, total, unreadable, elapsed):
    """The JSON record of one evaluation."""
    m = classification_metrics(p.scores, p.labels, p.scores.shape[1])
    flops = count_flops(ctx.model, ctx.segments, ctx.frames, ctx.crop_size, ctx.device)
    return {
        "checkpoint": os.path.abspath(ctx.args.checkpoint),
        "dataset": dataset, "data_root": os.path.abspath(data_root) if data_root else None, "split": split,
        "model_config": ctx.ckpt["model_config"],
        "videos_total": total, "videos": int(p.labels.numel()), "unreadable": unreadable,
        "clips": ctx.args.clips, "crops": ctx.args.crops, "views_per_video": p.views, "clips_forwarded": p.forwarded,
        "top1": m["top1"], "top5": m["top5"], "mean_class_acc": m["mean_class_acc"],
        "loss": mean_nll(p.scores, p.labels), "enopr": p.enopr_sum / p.enopr_count if p.enopr_count else None,
        "parameters": sum(q.numel() for q in ctx.model.parameters()),
        "parameters_pwtp": sum(q.numel() for q in ctx.model.shared_parameters()),
        "flops_per_view": flops, "gflops_per_view": flops / 1e9, "gmacs_per_view": flops / 2e9,
        "flops_note": "FlopCounterMode: matmul/conv only, 1 multiply-add = 2 FLOPs; "
                      "gmacs_per_view (multiply-adds) is the number papers call FLOPs",
        "seconds": elapsed,
    }


def report(ctx, r, out, stem):
    """The printed summary; the headline says over how many of the split's videos."""
    k = r["videos_total"] - r["videos"]
    enopr = f"{r['enopr']:.4f}" if r["enopr"] is not None else "n/a (no PWTP)"
    ctx.log(f"{r['dataset']} split {r['split']}: top-1 {r['top1']:.2f} % over {r['videos']} of "
            f"{r['videos_total']} videos; {k} unreadable")
    ctx.log(f"  {r['views_per_video']} views per video ({r['clips']} clips x {r['crops']} crops) | "
            f"top-5 {r['top5']:.2f} % | mean class acc {r['mean_class_acc']:.2f} % | "
            f"loss {r['loss']:.4f} | ENoPR {enopr}")
    ctx.log(f"  parameters {r['parameters'] / 1e6:.3f} M (PWTP {r['parameters_pwtp']:,})   per view: "
            f"{r['gflops_per_view']:.3f} GFLOPs = {r['gmacs_per_view']:.3f} G multiply-adds (paper-style 'FLOPs')")
    if "static_probe" in r:
        s = r["static_probe"]
        ctx.log(f"  static probe: top-1 {r['top1']:.2f} % normal | {s['frozen_top1']:.2f} % frozen (middle frame "
                f"repeated, no motion) | {s['conflict_top1']:.2f} % conflict (50/50 with a still of another "
                f"class, partners seeded by --probe-seed {ctx.args.probe_seed})")
    for path in r["unreadable"][:10]:
        ctx.log(f"  unreadable, left out: {path}")
    if len(r["unreadable"]) > 10:
        ctx.log(f"  ... {len(r['unreadable']) - 10} more unreadable videos, all listed in {out}")
    ctx.log(f"  wrote {out}, {stem}_per_class.csv, {stem}_confusion.csv, {stem}_per_video.csv")


# ========== Predicting videos (--video) ==========================================================
class VideoPrediction(NamedTuple):
    path: str
    index: int                   # position in the --video list (the dataset's sample index)
    names: list                  # top-k class names, best first
    probs: list                  # their view-averaged probabilities


def video_dataset(ctx, files):
    """The files as a test set with the checkpoint's sampling and the protocol's views. Each item's
    label slot carries the file's index in `files` (the files have no class), so the rows predict
    returns name their file; an unreadable file comes back as -1 (substitute=False) and is skipped."""
    targs = ctx.ckpt.get("args") or {}
    dataset = ctx.args.dataset or targs.get("dataset", "synthetic")
    classes = list(ctx.ckpt.get("classes") or [str(k) for k in range(ctx.ckpt["model_config"]["num_classes"])])
    return data.VideoDataset([(f, i) for i, f in enumerate(files)], classes, train=False,
                             segments=ctx.segments, frames=ctx.frames, crop_size=ctx.crop_size,
                             clips=ctx.args.clips, crops=ctx.args.crops, seed=targs.get("seed", 0),
                             dense=dataset in data.DENSE_DATASETS, flip=False, name="evaluate.py --video",
                             substitute=False)


def predict_videos(ctx):
    """--video: top-k classes of each file, printed; a CSV for folders (or --out); --da-png. Exits
    non-zero when no file could be read."""
    args = ctx.args
    files, folders, skipped = layouts.video_arguments(args.video)
    csv_out = args.out
    if csv_out is None and len(folders) == 1:
        folder = os.path.normpath(os.path.abspath(folders[0]))
        csv_out = os.path.join(os.path.dirname(folder), os.path.basename(folder) + "_predictions.csv")
    elif csv_out is None and folders:
        raise SystemExit("evaluate.py: several --video folders: say where the predictions go with --out FILE.csv")
    ds = video_dataset(ctx, files)
    p = run_protocol(ctx, ds, "predicting")
    unreadable = unreadable_over_ranks(ds)
    if p.labels.numel() == 0:
        raise SystemExit(f"evaluate.py: none of the {len(files)} --video files could be read "
                         f"(e.g. {unreadable[:3]}); check them with `python data.py inspect`")
    if ctx.rank != 0:
        return None
    if skipped:
        ctx.log(f"skipped {len(skipped)} entries of {', '.join(folders)} that are not video files "
                f"({', '.join(os.path.basename(e) for e in skipped[:5])}{', ...' if len(skipped) > 5 else ''})")
    k = min(args.topk, len(ds.classes))
    rows = []
    for probs, index in sorted(zip(p.scores, p.labels.tolist()), key=lambda r: r[1]):
        top = probs.topk(k)
        rows.append(VideoPrediction(files[index], index, [ds.classes[c] for c in top.indices.tolist()],
                                    top.values.tolist()))
        ctx.log(f"{rows[-1].path}: " + ", ".join(f"{n} {q:.1%}" for n, q in zip(rows[-1].names, rows[-1].probs)))
    for path in unreadable:
        ctx.log(f"{path}: unreadable, skipped (no prediction)")
    if csv_out:                           # path, class_1, prob_1, ..., class_k, prob_k: one row per video
        os.makedirs(os.path.dirname(os.path.abspath(csv_out)), exist_ok=True)
        atomic_csv(csv_out, ["path"] + [c for j in range(1, k + 1) for c in (f"class_{j}", f"prob_{j}")],
                   [[r.path] + [c for n, q in zip(r.names, r.probs) for c in (n, f"{q:.6f}")] for r in rows])
        ctx.log(f"wrote {csv_out}: top-{k} classes of {len(rows)} videos ({len(unreadable)} unreadable, left out)")
    pngs = save_da_pngs(ctx, ds, rows, args.da_png) if args.da_png else []
    return {"predictions": rows, "unreadable": unreadable, "skipped": skipped, "csv": csv_out, "da_png": pngs}


def save_da_pngs(ctx, ds, rows, out):
    """For each predicted video, the DA picture (visualize.draw_da) of the view the model saw: the
    middle temporal clip, centre crop (view clips // 2, crop crops // 2), through the checkpoint's
    own PWTP. Returns the files written."""
    import visualize     # lazily: matplotlib is needed only here
    S, T, a = ctx.segments, ctx.frames, ctx.args
    pwtp = copy.deepcopy(ctx.model.pwtp).cpu().eval()
    c = a.clips // 2
    view = c * a.crops + a.crops // 2
    written = []
    for r, png in zip(rows, visualize.png_names(out, [r.path for r in rows])):
        clip, _ = ds[r.index]                                      # (V, S*T, C, H, W) normalised
        starts = [int(i) for i in ds._indices(ds.num_frames(r.index), None, c).reshape(S, T)[:, 0]]
        title = (f"{os.path.basename(r.path)}: predicted {r.names[0]} ({r.probs[0]:.1%}); view {view + 1} of "
                 f"{a.clips * a.crops}, {S} segments x {T} frames, {clip.shape[-1]}x{clip.shape[-1]}; "
                 f"PWTP from {a.checkpoint}")
        visualize.draw_da(clip[view].reshape(S, T, *clip.shape[-3:]), pwtp, starts, png, title=title)
        ctx.log(f"wrote {png} (DA of {r.path})")
        written.append(png)
    return written


# ========== main =================================================================================
def main(argv=None):
    """Returns the result dict on rank 0 (None on the other ranks)."""
    args = parse_args(argv)
    check_flags(args)
    try:
        ckpt = load_checkpoint(args.checkpoint)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(str(e)) from None
    if args.da_png and ckpt["model_config"].get("input", "da") != "da":
        raise SystemExit(f"evaluate.py: --da-png needs a DA model, but --checkpoint {args.checkpoint} has "
                         f"input={ckpt['model_config'].get('input')!r}: no PWTP, no dynamic appearance to draw")
    if args.export:
        if int(os.environ.get("RANK", "0")) != 0:
            return None
        return export_weights(ckpt, args.checkpoint, args.export)
    ctx = start(args, ckpt)
    try:
        return predict_videos(ctx) if args.video else evaluate_dataset(ctx)
    finally:
        close_distributed()


if __name__ == "__main__":
    main()
