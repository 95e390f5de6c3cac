"""`python bench.py loader`: how fast the input pipeline is, per loader worker, against raw decoding of
the same frames. The measured table, with its conditions, is in docs/OPERATIONS.md (fast input).

Rows, in clips/s per worker (clips/s of a DataLoader with --workers workers, divided by their number;
--workers 0: in this process, set up as a worker is: one torch thread, one decoder thread):
  plain      data.VideoDataset's training items (sample, decode, multi-scale crop, flip: uint8 clips, which
             the model normalises on its device) on the videos as they are
  prepared   the same on a copy made by `python data.py prepare --gop G` (a key frame every G frames)
  frames     the same on a copy made by `python data.py prepare --frames` (PNG frame folders, lossless)
  raw        a bare PyAV loop over the same clips' frames of the plain videos: one process, one decoder
             thread, each video decoded from its start up to its last sampled frame, each sampled frame
             converted with PyAV's frame.to_ndarray(format="rgb24") (as a plain loop writes it: a new
             converter per frame, with the library's default threads), no transforms
  raw, one converter   the same loop converting with one reused one-thread converter, as decode.py does:
             what one worker could reach without jumping to key frames and without transforms
and the plain loader's share of both raw rows, in %. Then where a plain clip's time goes, in ms, timed
stage by stage over the same clips in this process (one thread, as a worker): decoding (container open,
decode, RGB conversion), the crop (crop, resize, flip), the rest of the item (sampling, random numbers,
bookkeeping), and the hand-over to the training process (a worker's time per clip less this process's:
collating, the shared-memory ring, the queues).

On the synthetic set (a fresh temporary one, 64^2, 32 frames per video, as the default set's videos), or
on --videos videos of --dataset at --data-root (copied by links into a temporary `list` dataset, which
is prepared in full).
"""
import argparse
import contextlib
import os
import tempfile
import time

import av
import numpy as np
import torch
from av.video.reformatter import VideoReformatter

import data
from support import decode, layouts, prepare, synthetic


def parse_args(argv):
    p = argparse.ArgumentParser(prog="bench.py loader", description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="synthetic", choices=data.DATASETS)
    p.add_argument("--data-root", default=None, help="default: a temporary synthetic set")
    p.add_argument("--split", type=int, default=1)
    p.add_argument("--videos", type=int, default=40, help="videos of the training split taken (seeded)")
    p.add_argument("--clips", type=int, default=480, help="clips timed per row (after the first batch)")
    p.add_argument("--segments", type=int, default=4)
    p.add_argument("--frames", type=int, default=4)
    p.add_argument("--crop-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--workers", type=int, default=1, help="loader workers (0: in this process)")
    p.add_argument("--gop", type=int, default=8, help="the prepared copy's key frame interval")
    args = p.parse_args(argv)
    if min(args.videos, args.clips, args.segments, args.frames, args.crop_size, args.batch_size, args.gop) < 1:
        raise SystemExit("bench.py loader: --videos, --clips, --segments, --frames, --crop-size, --batch-size "
                         "and --gop must be >= 1")
    if args.workers < 0:
        raise SystemExit(f"bench.py loader: --workers must be >= 0, got {args.workers}")
    return args


def linked_copy(args, tmp):
    """(root, samples): --videos samples of the training split (seeded pick), linked into a flat `list`
    dataset under `tmp` (names v0000.ext, ...), so that prepare copies only them."""
    if args.data_root is None:
        synthetic.write_synthetic(os.path.join(tmp, "synth"), classes=4, videos_per_class=10, size=64, frames=32)
        args.dataset, args.data_root = "synthetic", os.path.join(tmp, "synth")
    _, samples = layouts.parse_dataset(args.dataset, args.data_root, args.split, True)
    pick = np.random.default_rng(0).permutation(len(samples))[:args.videos]
    root, linked = os.path.join(tmp, "plain"), []
    os.makedirs(root)
    for n, i in enumerate(sorted(pick.tolist())):
        path, label = samples[i]
        name = f"v{n:04d}{os.path.splitext(path.rstrip(os.sep))[1]}"
        os.symlink(os.path.abspath(path), os.path.join(root, name))
        linked.append((name, label))
    return root, linked


def dataset(root, linked, args):
    return data.VideoDataset([(os.path.join(root, n), y) for n, y in linked], sorted({y for _, y in linked}),
                             train=True, segments=args.segments, frames=args.frames, crop_size=args.crop_size,
                             dense=args.dataset in data.DENSE_DATASETS, name="bench")


def order(n, clips, batch):
    """Item order: permutations of the n videos, enough for `clips` timed clips after a first batch."""
    rng = np.random.default_rng(1)
    need = clips + batch
    return np.concatenate([rng.permutation(n) for _ in range(-(-need // n))])[:need].tolist()


@contextlib.contextmanager
def like_a_worker(really=True):
    """This process set up as a loader worker is (support/loading.py): one torch and one decoder thread."""
    threads = torch.get_num_threads()
    if really:
        torch.set_num_threads(1)
        decode.THREADS = 1
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        decode.THREADS = 0


def loader_rate(ds, items, args):
    """Clips/s per worker of a DataLoader over `items`, timed after its first batch (the workers are up)."""
    workers = args.workers
    with like_a_worker(workers == 0):  # in this process: set up as a worker is
        loader = data.data_loader(ds, args.batch_size, items, workers, ds.item_shape, pin=False)  # train.py's, CPU side
        it = iter(loader)
        next(it)
        t0, n = time.perf_counter(), 0
        for clip, _ in it:
            n += clip.shape[0]
        del it
        return n / (time.perf_counter() - t0) / max(1, workers)


def clip_indices(ds, k):
    """(indices, rng): the frame indices VideoDataset's training item k samples, and its random generator
    after sampling them (the crop's box and flip are drawn next)."""
    rng, num = np.random.default_rng([ds.seed, ds.epoch, k]), ds.num_frames(k)
    if ds.dense:
        return data.dense_indices(num, ds.segments * ds.frames, True, rng), rng
    return data.sparse_indices(num, ds.segments, ds.frames, True, rng), rng


def raw_decode(clips, reuse=True):
    """Decode [(path, indices)] with PyAV alone: one decoder thread, each video from its start up to its last
    wanted frame, the wanted frames converted to RGB by one reused one-thread converter (reuse=False:
    frame.to_ndarray(format="rgb24") each). Returns the frame count."""
    rgb, n = VideoReformatter(), 0
    for path, idx in clips:
        want, last = set(int(i) for i in idx), int(max(idx))
        with av.open(path) as container:
            stream = container.streams.video[0]
            stream.codec_context.thread_count = 1
            for i, frame in enumerate(container.decode(stream)):
                if i in want:
                    rgb.reformat(frame, format="rgb24", threads=1).to_ndarray() if reuse else \
                        frame.to_ndarray(format="rgb24")
                    n += 1
                if i >= last:
                    break
    return n


def measure(args, tmp, log=print):
    """{row: clips/s per worker} and the setting, for the plain, prepared, frames and raw rows."""
    root, linked = linked_copy(args, tmp)
    quiet = lambda *a: None  # noqa: E731
    prepare.prepare(root, os.path.join(tmp, "gop"), gop=args.gop, workers=1, log=quiet)
    prepare.prepare(root, os.path.join(tmp, "frames"), frames="png", workers=1, log=quiet)
    items = order(len(linked), args.clips, args.batch_size)
    rates = {}
    for row in ("plain", "prepared", "frames"):
        ds = dataset(os.path.join(tmp, {"plain": "plain", "prepared": "gop", "frames": "frames"}[row]), linked, args)
        rates[row] = loader_rate(ds, items, args)
        log(f"  {row:9s} {rates[row]:7.1f} clips/s per worker")
    ds = dataset(root, linked, args)
    clips = [(ds.samples[k][0], clip_indices(ds, k)[0]) for k in items[args.batch_size:]]
    for row, reuse in (("raw", False), ("raw, one converter", True)):
        t0 = time.perf_counter()
        raw_decode(clips, reuse)
        rates[row] = len(clips) / (time.perf_counter() - t0)
        log(f"  {row:9s} {rates[row]:7.1f} clips/s in one process")
    rates["plain, in this process"] = loader_rate(ds, items, argparse.Namespace(**{**vars(args), "workers": 0}))
    log(f"  plain, in this process {rates['plain, in this process']:7.1f} clips/s")
    return rates, stages(ds, items[args.batch_size:], rates)


def stages(ds, items, rates):
    """{stage: ms a clip} for `items`, timed in this process with one torch and one decoder thread (as a
    worker): "decode" (decode.read_frames of the item's frames) and "crop" (data.crop_pixels with its box
    and flip), each timed around itself clip by clip; "rest of the item" = ds[k]'s time (a loop of its
    own) less those two; "hand-over" = a worker's time per clip (the plain row) less this process's."""
    clock, spent = time.perf_counter, {"decode": 0.0, "crop": 0.0}
    with like_a_worker():
        for k in items:
            idx, rng = clip_indices(ds, k)
            t0 = clock()
            try:
                frames = decode.read_frames(ds.samples[k][0], idx, ds.num_frames(k))
            except Exception:  # noqa: BLE001 - unreadable or short: the loader's own row replaced it
                continue
            t1 = clock()
            box = data.multiscale_crop_box(frames.shape[1], frames.shape[2], rng)
            flip = ds.flip and bool(rng.integers(2))
            t2 = clock()
            data.crop_pixels(frames, box, ds.crop_size, flip)
            spent["decode"], spent["crop"] = spent["decode"] + t1 - t0, spent["crop"] + clock() - t2
        t0 = clock()
        for k in items:
            ds[k]
        item = clock() - t0
    out = {k: 1000 * v / len(items) for k, v in spent.items()}
    out["rest of the item"] = 1000 * item / len(items) - out["decode"] - out["crop"]
    out["hand-over"] = 1000 / rates["plain"] - 1000 / rates["plain, in this process"]
    return out


def main(argv=None):
    args = parse_args(argv)
    print(f"bench.py loader: {args.dataset} ({args.data_root or 'a temporary synthetic set'}), S={args.segments}, "
          f"T={args.frames}, {args.crop_size}^2 crops, batch {args.batch_size}, {args.workers} worker(s), "
          f"{args.clips} clips per row, prepared with --gop {args.gop}; torch {torch.__version__}, PyAV "
          f"{av.__version__}, {os.cpu_count()} CPU cores")
    with tempfile.TemporaryDirectory() as tmp:
        rates, parts = measure(args, tmp)
    raw = 1000 / rates["raw, one converter"]
    print(f"  where a plain clip's time goes, ms (one thread; raw with one converter: {raw:.3f}): "
          + ", ".join(f"{k} {v:.3f}" for k, v in parts.items()))
    share, strong = (100 * rates["plain"] / rates[row] for row in ("raw", "raw, one converter"))
    print(f"  plain loader at {share:.0f} % of raw decode per worker (goal >= 80 %: "
          f"{'met' if share >= 80 else 'NOT met'}); {strong:.0f} % of raw with one converter (goal "
          f"{'met' if strong >= 80 else 'NOT met'}); prepared {100 * rates['prepared'] / rates['raw']:.0f} %, "
          f"frame folders {100 * rates['frames'] / rates['raw']:.0f} % of raw")
    return dict(rates, share=share, share_one_converter=strong, ms_per_clip=parts)


if __name__ == "__main__":
    main()
