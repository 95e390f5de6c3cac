"""The paper's test protocol (Appendix A) for a trained checkpoint, and the numbers its tables report:
top-1 / top-5, mean class accuracy, ENoPR and FLOPs. train.py's validation uses the same functions.

    python evaluate.py --checkpoint RUN_DIR/best.pt                      # 1 clip x centre crop
    python evaluate.py --checkpoint RUN_DIR/best.pt --clips 2 --crops 3  # 6 views, softmax averaged
    torchrun --nproc_per_node=8 evaluate.py --checkpoint RUN_DIR/best.pt --clips 2 --crops 3

Appendix A has two protocols. The ablations take "a single clip per video with center cropping"
(1 view). For accuracy (Table 3: 3 crops x 2 clips), N temporal clips x 3 spatial crops that cover
the frame, Feichtenhofer et al.'s approximation of fully-convolutional testing, and "the softmax
scores of multiple spacetime views" are averaged before the arg-max. data.py cuts the views
(eval_crop_boxes); this file runs them and averages them (average_view_scores).

Reported (printed, and written as eval_{dataset}-split{split}-{clips}x{crops}.json next to the
checkpoint, with per-class, confusion-matrix and per-video CSVs beside it): top-1 / top-5 (%), mean
class accuracy (%, Table 3's metric on UCF101 / HMDB51), ENoPR (Eq. 7, mean over every segment of
every view; DA input only), parameters (total and PWTP), FLOPs of one view (Table 1 gives FLOPs x
views) and the views per video.

An unreadable test video is left out, never replaced (a substitute would score another video
twice): every metric is over the N readable videos of the M in the split, and the headline says
"top-1 over N of M videos; K unreadable".

Not the paper, each one call away in support/: --static-probe, how much of the accuracy static cues
alone buy (probe.py); --video, predictions for your own videos (predict_videos.py); --export, the
weights alone (checkpoints.py); the remaining flags, the device and torchrun (evaluation.py).
"""
import argparse
import functools
import itertools
import os
import time
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import backbones
import data
import visualize
from support import evaluation, predict_videos, probe
from support.checkpoints import result_path, write_per_video, write_results
from support.loading import unreadable_over_ranks
from support.system import Progress, autocast, close_distributed


# ========== Multi-view testing (Appendix A) ======================================================
def average_view_scores(logits: torch.Tensor) -> torch.Tensor:
    """logits (B, V, K) of the V = clips x crops views of each video -> (B, K) mean of their
    softmaxes: one probability vector per video. Averaging probabilities, not arg-maxes, lets a
    confident view outvote several unsure ones."""
    return F.softmax(logits.float(), dim=-1).mean(dim=1)


# ========== Metrics ==============================================================================
# Small and pure: scores (N, K) and labels (N,) in, a number out. Accuracies are in percent.
def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor, ks=(1, 5)) -> dict:
    """{k: top-k accuracy} for each k in ks: the share of videos whose true class is among the k
    best-scored. scores: (N, K) logits or probabilities (only their order matters); labels: (N,).
    A k larger than the number of classes K is clipped to K (top-5 of 4 classes is 100 %)."""
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
    """(K,) recall of every class in percent: diagonal / row sum; NaN for a class with no video."""
    conf = conf.double()
    videos = conf.sum(dim=1)
    acc = 100.0 * conf.diagonal() / videos
    return torch.where(videos > 0, acc, torch.full_like(acc, float("nan")))


def mean_class_accuracy(scores: torch.Tensor, labels: torch.Tensor, num_classes: int = None) -> float:
    """Mean over the classes that occur in `labels` of the per-class top-1 accuracy, in percent:
    the metric Table 3 reports for UCF101 and HMDB51. Unlike top-1, every class counts the same
    whatever its number of test videos."""
    num_classes = num_classes or scores.shape[1]
    acc = per_class_accuracy(confusion_matrix(scores.argmax(dim=1), labels, num_classes))
    acc = acc[~torch.isnan(acc)]
    return float(acc.mean()) if acc.numel() else float("nan")


def mean_nll(probs: torch.Tensor, labels: torch.Tensor, eps: float = 1e-12) -> float:
    """Mean over the videos of -log p(true class): the cross-entropy, without label smoothing, of
    the view-averaged probabilities probs (N, K). With one view it is F.cross_entropy of the
    logits. This is the held-out L_c that `bench.py claims` sets against L_p (the L_c-L_p relation of
    Fig. 3). A probability rounded to 0 counts as `eps` so that one video cannot make the mean
    infinite (ours). NaN for no video."""
    if labels.numel() == 0:
        return float("nan")
    p = probs.double().gather(1, labels.long().view(-1, 1)).squeeze(1)     # (N,) p(true class)
    return float(-p.clamp_min(eps).log().mean())


def classification_metrics(scores: torch.Tensor, labels: torch.Tensor, num_classes: int) -> dict:
    """The numbers train.py logs at each validation and evaluate.py reports."""
    top = topk_accuracy(scores, labels, ks=(1, 5))
    return {"top1": top[1], "top5": top[5],
            "mean_class_acc": mean_class_accuracy(scores, labels, num_classes)}


# ========== Running a model over a test set (train.py's validation too) ==========================
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

    @property
    def enopr(self):
        """Mean ENoPR over every segment of every view; None without PWTP (RGB input)."""
        return self.enopr_sum / self.enopr_count if self.enopr_count else None


def predict(model, loader, device, amp=None, progress=None) -> Predictions:
    """Every view of every readable video through the model. Test items are (clip, label) with clip
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
            keep = label >= 0                                            # readable videos only
            if not bool(keep.all()):
                unreadable += int((~keep).sum())
                clip, label, index = clip[keep], label[keep], index[keep]
            if label.numel():
                B, V = clip.shape[:2]
                x = clip.flatten(0, 1).to(device, non_blocking=True)    # (B*V, S*T, C, H, W) every view
                with autocast(device, amp):                              # amp: None or a dtype
                    out = model(x)
                all_scores.append(average_view_scores(out.logits.view(B, V, -1)).cpu())   # (B, K)
                all_labels.append(label)
                all_index.append(index)
                forwarded += B * V
                if out.pwtp is not None:                                 # (B*V*S,) ENoPR per segment
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
    return evaluation.merge_over_ranks(p, first=("views",))   # torchrun plumbing, not the protocol


def validate(model, loader, device, amp, num_classes, stop=None, per_video=None):
    """train.py's validation: the single-view test of this rank's shard, gathered over ranks (unreadable
    videos counted, never scored); val_loss: held-out L_c, unsmoothed (Fig. 3). stop: a signal ends it
    after the current batch; per_video: where to write one row per video."""
    with torch.random.fork_rng(devices=[]):      # creating loader iterators draws from the RNG
        p = gather_predictions(predict(model, loader, device, amp=amp, progress=stop and stop.check))
    if not p.labels.numel():                     # every video unreadable: nothing to score
        return {"val_videos": 0, "val_unreadable": p.unreadable}
    if per_video:
        write_per_video(per_video, loader.dataset.samples, loader.dataset.classes, p)
    m = classification_metrics(p.scores, p.labels, num_classes)
    return {"val_top1": m["top1"], "val_top5": m["top5"], "val_mean_class_acc": m["mean_class_acc"],
            "val_loss": mean_nll(p.scores, p.labels), "val_enopr": p.enopr,
            "val_videos": int(p.labels.numel()), "val_unreadable": p.unreadable}


def run_protocol(ctx, ds, what):
    """Every video of `ds` once over all ranks (each rank its shard), the predictions gathered."""
    sampler = data.ShardSampler(len(ds))
    loader = data.data_loader(ds, ctx.args.batch_size, sampler, ctx.args.workers, ds.item_shape,
                              pin=ctx.device.type == "cuda")
    progress = Progress(what, len(sampler), len(ds), ctx.log, ctx.args.log_every)   # rank 0's lines, with ETA
    return gather_predictions(predict(ctx.model, loader, ctx.device, ctx.amp, progress))


# ========== Cost: FLOPs of one view (Table 1) ====================================================
def count_flops(model, segments, frames, crop_size, device):
    """FLOPs of one view, a (1, S*T, 3, crop, crop) clip, counted by torch's FlopCounterMode: matrix
    products and convolutions only, one multiply-add = 2 FLOPs. The papers of this field, Table 1
    included, call the multiply-adds "FLOPs": that is FLOPs / 2 (gmacs_per_view in the JSON)."""
    model.eval()
    x = torch.zeros(1, segments * frames, 3, crop_size, crop_size, device=device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops()


# ========== The test protocol on a dataset's test split ==========================================
def load_test_split(ctx):
    """(ds, dataset, data_root, split): the test split, as the run was trained unless the flags say
    otherwise, cut into the protocol's views: an item is (clip (V, S*T, C, H, W), label) with
    V = clips x crops. substitute=False: an unreadable video comes back as label -1, left out."""
    dataset, data_root, split, seed = evaluation.test_split_of(ctx.args, ctx.ckpt)   # the flags, else the run's
    try:
        ds = data.build_dataset(dataset, data_root, split=split, train=False, segments=ctx.segments,
                                frames=ctx.frames, crop_size=ctx.crop_size, clips=ctx.args.clips,
                                crops=ctx.args.crops, seed=seed, substitute=False)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"evaluate.py: {e}") from None
    return ds, dataset, data_root, split


def evaluate_dataset(ctx):
    """The test protocol on the test split: metrics over the readable videos, JSON + CSVs on rank 0."""
    args = ctx.args
    ds, dataset, data_root, split = load_test_split(ctx)
    classes = evaluation.check_classes(ctx.ckpt, ds, f"{dataset} at {data_root}")   # label k = trained class k
    if args.static_probe:
        probe.check_classes(ds)                      # refused before the long run, not after it
    name = f"eval_{dataset}-split{split}-{args.clips}x{args.crops}.json"
    out = result_path(args.out, args.checkpoint, name, dataset, data_root)   # never over another data set's
    t0 = time.time()
    p = run_protocol(ctx, ds, f"{dataset} split {split}")
    elapsed = time.time() - t0
    unreadable = unreadable_over_ranks(ds)           # their paths, from every rank and loader worker
    if p.labels.numel() == 0:
        raise SystemExit(f"evaluate.py: none of the {len(ds)} test videos of {dataset} at {data_root} could be "
                         f"read (e.g. {unreadable[:3]}); check them with `python data.py inspect`")
    # --static-probe (not the paper, support/probe.py): top-1 again on motionless and on mixed clips,
    # mixed as the model sees them (data.normalize)
    static = probe.static_probe(ds, args.probe_seed, functools.partial(top1_on, ctx), data.normalize) \
        if args.static_probe else None
    if ctx.rank != 0:
        return None
    result = build_result(ctx, p, dataset, data_root, split, len(ds), unreadable, elapsed)
    if static is not None:
        result["static_probe"] = static
    conf = confusion_matrix(p.scores.argmax(dim=1), p.labels, len(classes))     # (K, K) true x predicted
    stem = write_results(out, result, classes, conf, per_class_accuracy(conf), ds.samples, p)   # JSON + CSVs
    report(ctx, result, out, stem)
    return result


def top1_on(ctx, ds, what):
    """(top-1 %, readable videos) of the test protocol on `ds`: how the static probe is scored."""
    p = run_protocol(ctx, ds, what)
    return topk_accuracy(p.scores, p.labels, ks=(1,))[1], int(p.labels.numel())


def build_result(ctx, p, dataset, data_root, split, total, unreadable, elapsed):
    """The JSON record of one evaluation: what was tested, how, and the numbers of the tables."""
    metrics = classification_metrics(p.scores, p.labels, p.scores.shape[1])
    flops = count_flops(ctx.model, ctx.segments, ctx.frames, ctx.crop_size, ctx.device)
    return {
        "checkpoint": os.path.abspath(ctx.args.checkpoint),
        "dataset": dataset, "data_root": os.path.abspath(data_root) if data_root else None, "split": split,
        "model_config": ctx.ckpt["model_config"],
        "videos_total": total, "videos": int(p.labels.numel()), "unreadable": unreadable,
        "clips": ctx.args.clips, "crops": ctx.args.crops, "views_per_video": p.views, "clips_forwarded": p.forwarded,
        "top1": metrics["top1"], "top5": metrics["top5"], "mean_class_acc": metrics["mean_class_acc"],
        "loss": mean_nll(p.scores, p.labels), "enopr": p.enopr,
        "parameters": sum(w.numel() for w in ctx.model.parameters()),
        "parameters_pwtp": sum(w.numel() for w in ctx.model.shared_parameters()),
        "flops_per_view": flops, "gflops_per_view": flops / 1e9, "gmacs_per_view": flops / 2e9,
        "flops_note": "FlopCounterMode: matmul/conv only, 1 multiply-add = 2 FLOPs; "
                      "gmacs_per_view (multiply-adds) is the number papers call FLOPs",
        "seconds": elapsed,
    }


def report(ctx, r, out, stem):
    """The printed summary of the record r (build_result); the headline says over how many of the
    split's videos."""
    enopr = f"{r['enopr']:.4f}" if r["enopr"] is not None else "n/a (no PWTP)"
    ctx.log(f"{r['dataset']} split {r['split']}: top-1 {r['top1']:.2f} % over {r['videos']} of "
            f"{r['videos_total']} videos; {r['videos_total'] - r['videos']} unreadable")
    ctx.log(f"  {r['views_per_video']} views per video ({r['clips']} clips x {r['crops']} crops) | "
            f"top-5 {r['top5']:.2f} % | mean class acc {r['mean_class_acc']:.2f} % | "
            f"loss {r['loss']:.4f} | ENoPR {enopr}")
    ctx.log(f"  parameters {r['parameters'] / 1e6:.3f} M (PWTP {r['parameters_pwtp']:,})   per view: "
            f"{r['gflops_per_view']:.3f} GFLOPs = {r['gmacs_per_view']:.3f} G multiply-adds (paper-style 'FLOPs')")
    if "static_probe" in r:
        ctx.log(probe.report_line(r["static_probe"], r["top1"], ctx.args.probe_seed))
    evaluation.report_unreadable(ctx.log, r["unreadable"], out)   # by name, ten at most
    ctx.log(f"  wrote {out}, {stem}_per_class.csv, {stem}_confusion.csv, {stem}_per_video.csv")


# ========== Command line =========================================================================
def parse_args(argv=None):
    """The protocol's flags here (Appendix A: clips x crops); the others (the test set, the output,
    loading, device, the probe, --video, --export) from support/evaluation.py. Bad flags stop here,
    named, before anything is loaded."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    flag = p.add_argument
    flag("--checkpoint", required=True, help="a train.py checkpoint (RUN_DIR/best.pt or last.pt) or an --export file")
    flag("--clips", type=int, default=1, help="temporal clips per video (default 1)")
    flag("--crops", type=int, default=1, choices=(1, 3),
         help="1 = centre crop, 3 = three crops covering the frame (default 1)")
    evaluation.add_flags(flag)                       # not the protocol: see support/evaluation.py
    args = p.parse_args(argv)
    evaluation.check_flags(args, data.DATASETS)     # bad flags named before anything is loaded
    return args


def main(argv=None):
    """Returns the result dict on rank 0 (None on the other ranks)."""
    args = parse_args(argv)
    ckpt = evaluation.read_checkpoint(args)          # errors name the file and what was expected
    if args.export:
        return evaluation.export(args, ckpt)         # the weights alone, then exit: no test
    ctx = evaluation.start(args, ckpt, backbones.model_from_checkpoint(ckpt))   # torchrun, device, model
    try:
        if args.video:   # your own files, no labels: not the paper's protocol (support/predict_videos.py)
            run = functools.partial(run_protocol, ctx)
            return predict_videos.predict_videos(ctx, data.VideoDataset, data.DENSE_DATASETS, run, visualize.draw_da)
        return evaluate_dataset(ctx)
    finally:
        close_distributed()


if __name__ == "__main__":
    main()
