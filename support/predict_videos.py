"""evaluate.py --video: the top-k classes of the user's own video files (or of every video in a
folder), printed, optionally as a CSV, and with --da-png the DA picture of the view the model saw.
Not the paper's protocol: the files have no labels, so there is nothing to score.

The caller hands in what lives in the concept files: the dataset class (data.VideoDataset) and the
datasets that sample densely, its test protocol (`run`: a dataset in, gathered Predictions out) and
the DA drawing (visualize.draw_da). An unreadable file is skipped and named, never replaced.
"""
import copy
import os
from typing import NamedTuple

from support import layouts
from support.loading import unreadable_over_ranks
from support.system import atomic_csv


def add_flags(flag):
    """--video, --topk and --da-png on the caller's argparse add_argument `flag`."""
    flag("--video", nargs="+", default=None, metavar="PATH",
         help="predict these video files, or every video file directly inside a folder")
    flag("--topk", type=int, default=5, help="--video: classes shown per video (default 5)")
    flag("--da-png", default=None, metavar="OUT.png",
         help="--video: save the DA picture of what the model saw (DA models only); several videos: "
              "OUT_{video name}.png")


class VideoPrediction(NamedTuple):
    path: str
    index: int                   # position in the --video list (the dataset's sample index)
    names: list                  # top-k class names, best first
    probs: list                  # their view-averaged probabilities


def video_dataset(ctx, files, dataset_class, dense_datasets):
    """The files as a test set with the checkpoint's sampling and the protocol's views. Each item's
    label slot carries the file's index in `files` (the files have no class), so the rows predict
    returns name their file; an unreadable file comes back as -1 (substitute=False) and is skipped."""
    targs = ctx.ckpt.get("args") or {}
    dataset = ctx.args.dataset or targs.get("dataset", "synthetic")
    classes = list(ctx.ckpt.get("classes") or [str(k) for k in range(ctx.ckpt["model_config"]["num_classes"])])
    return dataset_class([(f, i) for i, f in enumerate(files)], classes, train=False,
                         segments=ctx.segments, frames=ctx.frames, crop_size=ctx.crop_size,
                         clips=ctx.args.clips, crops=ctx.args.crops, seed=targs.get("seed", 0),
                         dense=dataset in dense_datasets, flip=False, name="evaluate.py --video",
                         substitute=False)


def csv_destination(out, folders):
    """--out, else FOLDER_predictions.csv beside the one folder given, else None (files alone)."""
    if out is None and len(folders) == 1:
        folder = os.path.normpath(os.path.abspath(folders[0]))
        return os.path.join(os.path.dirname(folder), os.path.basename(folder) + "_predictions.csv")
    if out is None and folders:
        raise SystemExit("evaluate.py: several --video folders: say where the predictions go with --out FILE.csv")
    return out


def predict_videos(ctx, dataset_class, dense_datasets, run, draw_da):
    """--video: top-k classes of each file, printed; a CSV for folders (or --out); --da-png. Exits
    non-zero when no file could be read. Returns a dict on rank 0, None elsewhere."""
    args = ctx.args
    files, folders, skipped = layouts.video_arguments(args.video)
    csv_out = csv_destination(args.out, folders)
    ds = video_dataset(ctx, files, dataset_class, dense_datasets)
    p = run(ds, "predicting")
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
    for probs, index in sorted(zip(p.scores, p.labels.tolist()), key=lambda pair: pair[1]):   # --video order
        top = probs.topk(k)                      # the label slot held the file's index (video_dataset)
        row = VideoPrediction(files[index], index, [ds.classes[c] for c in top.indices.tolist()], top.values.tolist())
        ctx.log(f"{row.path}: " + ", ".join(f"{name} {prob:.1%}" for name, prob in zip(row.names, row.probs)))
        rows.append(row)
    for path in unreadable:
        ctx.log(f"{path}: unreadable, skipped (no prediction)")
    if csv_out:
        write_predictions(csv_out, rows, k)
        ctx.log(f"wrote {csv_out}: top-{k} classes of {len(rows)} videos ({len(unreadable)} unreadable, left out)")
    pngs = save_da_pngs(ctx, ds, rows, args.da_png, draw_da) if args.da_png else []
    return {"predictions": rows, "unreadable": unreadable, "skipped": skipped, "csv": csv_out, "da_png": pngs}


def write_predictions(path, rows, k):
    """path, class_1, prob_1, ..., class_k, prob_k: one row per readable video, atomically."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_csv(path, ["path"] + [col for j in range(1, k + 1) for col in (f"class_{j}", f"prob_{j}")],
               [[row.path] + [cell for name, prob in zip(row.names, row.probs) for cell in (name, f"{prob:.6f}")]
                for row in rows])


def save_da_pngs(ctx, ds, rows, out, draw_da):
    """For each predicted video, the DA picture (draw_da) of the view the model saw: the middle
    temporal clip, centre crop (view clips // 2, crop crops // 2), through the checkpoint's own
    PWTP. Returns the files written."""
    S, T, args = ctx.segments, ctx.frames, ctx.args
    pwtp = copy.deepcopy(ctx.model.pwtp).cpu().eval()
    middle = args.clips // 2                                       # the middle temporal clip
    view = middle * args.crops + args.crops // 2                   # its centre crop
    written = []
    for row, png in zip(rows, png_names(out, [row.path for row in rows])):
        clip, _ = ds[row.index]                                    # (V, S*T, C, H, W) uint8 pixels
        starts = [int(i) for i in ds._indices(ds.num_frames(row.index), None, middle).reshape(S, T)[:, 0]]
        title = (f"{os.path.basename(row.path)}: predicted {row.names[0]} ({row.probs[0]:.1%}); view {view + 1} of "
                 f"{args.clips * args.crops}, {S} segments x {T} frames, {clip.shape[-1]}x{clip.shape[-1]}; "
                 f"PWTP from {args.checkpoint}")
        draw_da(clip[view].reshape(S, T, *clip.shape[-3:]), pwtp, starts, png, title=title)
        ctx.log(f"wrote {png} (DA of {row.path})")
        written.append(png)
    return written


def png_names(out, paths):
    """`out` for one video; else out's stem + "_" + each video's file stem (+ "_2", ... on repeats)."""
    if len(paths) == 1:
        return [out]
    stem, ext = os.path.splitext(out)
    names, used = [], set()
    for path in paths:
        name = base = f"{stem}_{os.path.splitext(os.path.basename(path))[0]}"
        n = 1
        while name in used:
            n += 1
            name = f"{base}_{n}"
        used.add(name)
        names.append(name + (ext or ".png"))
    return names
