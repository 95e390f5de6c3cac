"""Video data for Dynamic Appearance: the paper's datasets read from their official archives,
TSN sampling, PyAV decoding, train/test transforms, resumable loaders, and a synthetic motion set.

Why this file exists
--------------------
The paper trains on UCF101, HMDB51, Something-Something V1 and (Mini-)Kinetics (Sec. 4). Users should
point `--data-root` at the archives exactly as they unpack them and train; nobody extracts frames or
writes list files first. So every dataset is read in its *official* layout (listed in `LAYOUTS`), videos
are decoded on the fly with PyAV, and only the frames a clip needs are decoded (seek, then decode forward).

A clip is S segments x T frames (Sec. 3, "DA_{SxT}"): PWTP (pwtp.py) turns each segment of T consecutive
RGB frames into one dynamic-appearance frame, so the sampler must give *consecutive* frames inside each
segment. Two samplers, as the paper says (Appendix A, "Settings the paper fixes" in EQUATIONS.md):
  * TSN sparse sampling (ucf101, hmdb51, sthv1, list, synthetic): the video is cut into S equal parts and
    T consecutive frames are taken from each; random offset when training, centred when testing.
  * dense sampling (kinetics400, minikinetics): S*T consecutive frames; random start when training,
    evenly spaced clips when testing.

Reading order: constants; sampling (which frame indices a clip takes); decoding (PyAV for video
files, PIL for JPEG frame folders); transforms; VideoDataset; samplers and loaders; the dataset layouts
(one parser per dataset, PARSERS); the synthetic motion set; the command line.

No silently wrong results:
  * A container header can over-count frames (a real UCF101 .avi says 444 and decodes 68; truncated
    downloads keep their full header). read_frames raises ShortVideo rather than pad a clip with copies
    of the last frame; VideoDataset then samples again from the decodable count, warns once per video
    and remembers the count beside the dataset (count_cache_path), so the cost is paid once.
  * At test time an unreadable video is never replaced by another (and its label): its item is
    (zeros, -1), label -1 meaning "unreadable", and VideoDataset.unreadable() lists it.
  * A split or class file that is not text, holds a non-numeric label, or gives a UCF101 video a label
    that contradicts its class folder is an error naming the file and the line.

Public API (what train.py, evaluate.py, visualize.py, bench.py and the tests use):
  build_dataset(name, data_root, split=1, train=True, segments=8, frames=8, crop_size=224, clips=1,
                crops=1, seed=0, substitute=True) -> VideoDataset
      train item: (clip, label), clip float (S*T, C, H, W), ImageNet-normalised
      test item:  (clip, label), clip float (V, S*T, C, H, W), V = clips*crops views (V may be 1)
      label -1: an unreadable video (substitute=False only; see VideoDataset)
  build_loaders(dataset, data_root, split=1, segments=8, frames=8, crop_size=224, batch_size=8, workers=2,
                subset=None, overfit=None, seed=0, clips=1, crops=1)
      -> Loaders(train, val, num_classes, classes, train_sampler)   (val: substitute=False)
  parse_dataset(name, data_root, split, train) -> (classes, [(path, label)])
  write_synthetic(out, classes=4, videos_per_class=40, size=64, frames=32, seed=0, bias_train=None,
                  bias_test=None, bias=0.9)   (splits 1-3 scene-balanced, 4/5 static-bias)
  ensure_synthetic(root), default_synthetic_root(), static_cue_agreement(root, split, train)
  sparse_indices(...), dense_indices(...), read_frames(path, indices, num_frames=None) (may raise
  ShortVideo), count_frames(path) (the header's count), decodable_frames(path) (a full decode's count)
CLI:
  python data.py synth   --out DIR [--classes 4 --videos-per-class 40 --size 64 --frames 32 --seed 0
                                    --bias 0.9 --bias-train N --bias-test N]
  python data.py inspect --dataset NAME --data-root DIR [--split K] [--limit N]
  (loader throughput: bench.py's loader_vs_step row)
"""
import argparse
import collections
import csv
import hashlib
import io
import json
import math
import os
import random
import re
import shutil
import signal
import tempfile
import warnings
from typing import NamedTuple

import av
import numpy as np
import torch
import torch.nn.functional as F

# ImageNet statistics: the ResNet/TSM and ViT backbones are ImageNet-pretrained (EQUATIONS.md, "Facts").
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
VIDEO_EXTS = (".avi", ".mp4", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".3gp")
IMAGE_EXTS = (".jpg", ".jpeg", ".png")
# TSN multi-scale crop: the crop side is one of these fractions of the short side (height and width may
# differ by at most one step), then the crop is resized to crop_size x crop_size.
MULTISCALE = (1.0, 0.875, 0.75, 0.66)
# Decode from the start (no seek) when the first needed frame is this close to it: a seek lands on the
# previous key frame anyway, and decoding a few frames is cheaper than the seek's bookkeeping.
SEEK_MIN_FRAME = 32
DATASETS = ("ucf101", "hmdb51", "sthv1", "kinetics400", "minikinetics", "list", "synthetic")
DENSE_DATASETS = ("kinetics400", "minikinetics")  # Appendix A: dense sampling for Kinetics
# No horizontal flip where labels have a direction: Something-Something ("pushing something from left
# to right") and the synthetic set (MoveRight vs MoveLeft): a flip would turn one class into another.
NO_FLIP = ("sthv1", "synthetic")
# Learned decodable frame counts of a dataset's short videos (see count_cache_path).
COUNT_CACHE_NAME = "dynamic-appearance-frame-counts.tsv"


# ---------------------------------------------------------------------------------------------------
# Frame sampling (indices only; pure functions of their arguments and the rng).
# ---------------------------------------------------------------------------------------------------

def sparse_indices(num_frames, segments, frames, train, rng=None, clip=0, clips=1):
    """TSN sparse sampling: S segments of T consecutive frame indices, shape (S*T,).

    With F frames there are F-T+1 valid segment starts. Training: avg = (F-T+1)//S, start_k =
    k*avg + randint(avg). Testing: tick = (F-T+1)/S, start_k = int(tick/2 + tick*k) (centred); for
    `clips` > 1 temporal views, clip c shifts the offset to tick*(c+0.5)/clips inside each segment.
    Short videos: if there are fewer valid starts than segments, training draws S sorted random starts
    (repeats allowed), testing spreads them evenly; indices past the end repeat the last frame
    (clamped to F-1), so a video of any length >= 1 gives S*T indices.
    """
    F_, S, T = int(num_frames), int(segments), int(frames)
    if F_ < 1:
        raise ValueError("a video needs at least one frame")
    valid = max(F_ - T + 1, 1)
    if train:
        avg = valid // S
        if avg > 0:
            starts = np.arange(S) * avg + rng.integers(0, avg, size=S)
        else:
            starts = np.sort(rng.integers(0, valid, size=S))
    else:
        tick = valid / S
        starts = np.array([int(tick * k + tick * (clip + 0.5) / clips) for k in range(S)])
    idx = starts[:, None] + np.arange(T)[None, :]  # (S, T)
    return np.minimum(idx, F_ - 1).reshape(-1).astype(np.int64)


def dense_indices(num_frames, length, train, rng=None, clip=0, clips=1):
    """Dense sampling: `length` (= S*T) consecutive frame indices, shape (length,).

    Training: random start in [0, F-length]. Testing: `clips` starts evenly spaced over [0, F-length],
    clip c at (F-length)*(c+0.5)/clips (clips=1: the centred clip). Short videos: start 0 and indices
    past the end repeat the last frame.
    """
    F_, L = int(num_frames), int(length)
    if F_ < 1:
        raise ValueError("a video needs at least one frame")
    room = max(F_ - L, 0)
    start = int(rng.integers(0, room + 1)) if train else int(room * (clip + 0.5) / clips)
    return np.minimum(start + np.arange(L), F_ - 1).astype(np.int64)


# ---------------------------------------------------------------------------------------------------
# Decoding: PyAV for video files, PIL for JPEG frame folders. Both return uint8 (N, H, W, 3).
# ---------------------------------------------------------------------------------------------------

class ShortVideo(ValueError):
    """read_frames: the stream ended after `decoded` frames, before a wanted frame below `expected` (the
    count the caller sampled from; by default the container header's). Headers do over-count: a real
    UCF101 .avi says 444 frames and decodes 68, and a truncated download keeps its full header. Padding
    the clip with copies of the last frame would be a silently wrong clip, so the caller is told the
    decodable count instead and samples again (VideoDataset does; see also decodable_frames)."""

    def __init__(self, path, decoded, expected):
        super().__init__(f"{path}: the header says {expected} frames but only {decoded} decode")
        self.path, self.decoded, self.expected = path, decoded, expected

    def __reduce__(self):  # picklable with its fields (DataLoader workers pass errors to the parent)
        return ShortVideo, (self.path, self.decoded, self.expected)


def _frame_files(folder):
    names = sorted(f for f in os.listdir(folder) if os.path.splitext(f)[1].lower() in IMAGE_EXTS)
    return [os.path.join(folder, f) for f in names]


def _video_stream(container, path):
    if not container.streams.video:
        raise ValueError(f"{path}: no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"  # frame + slice threads in the decoder
    return stream


def count_frames(path):
    """Number of frames: images in a frame folder; for a video the container's count, or (when the
    container does not store one, e.g. some .webm/.mkv) a counting pass over the packets (no decoding).
    Cheap, but only as true as the header: decodable_frames gives the truth."""
    if os.path.isdir(path):
        return len(_frame_files(path))
    with av.open(path) as container:
        stream = _video_stream(container, path)
        if stream.frames and stream.frames > 0:
            return int(stream.frames)
        return sum(1 for p in container.demux(stream) if p.size > 0)


def _frames(container, stream):
    """container.decode(stream), except that a packet failing to decode after the first frame ends the
    stream instead of raising: the frames before it are good, so a damaged tail or a truncated download
    reads as a shorter video (reported as such, see ShortVideo). A failing first frame still raises."""
    frames, n = container.decode(stream), 0
    while True:
        try:
            frame = next(frames)
        except StopIteration:
            return
        except av.error.FFmpegError:
            if n == 0:
                raise
            return
        n += 1
        yield frame


def decodable_frames(path):
    """How many frames of `path` really decode: a full decode (as long as playing the video through),
    the truth where count_frames' header figure is wrong. Frame folders: the number of images."""
    if os.path.isdir(path):
        return len(_frame_files(path))
    with av.open(path) as container:
        return sum(1 for _ in _frames(container, _video_stream(container, path)))


def _decode_range(container, stream, wanted, use_pts):
    """Decode forward and pick the frames whose index is in sorted `wanted`. Index = running count from
    the start when not seeking; from the presentation time when we seeked (idx = time * fps). A wanted
    index with no frame of its own (variable frame rate) gets the previous frame.
    Returns (picked, last, reach): picked = {index: array} for the wanted indices the stream reached,
    last = the last decoded frame's array when some were not reached (else None), reach = 1 + the last
    decoded frame's index (from the start: the number of frames decoded); or None when the seek
    overshot (the caller decodes from the start).
    Only frames that are used are converted to RGB arrays (the conversion costs about as much as the
    decode); PyAV hands out a fresh frame object per decoded frame, so keeping the previous one is safe."""
    rate = stream.average_rate or stream.guessed_rate
    tb = stream.time_base
    start = stream.start_time or 0
    out, ptr, count = {}, 0, 0
    prev = None  # [frame object, its array or None]
    for frame in _frames(container, stream):
        if use_pts:
            if frame.pts is None:
                return None
            i = int(round(float((frame.pts - start) * tb * rate)))
            if prev is None and i > wanted[0]:
                return None  # landed after the first wanted frame: caller decodes from the start
        else:
            i = count
        count, reach = count + 1, i + 1
        cur = [frame, None]
        while ptr < len(wanted) and wanted[ptr] <= i:
            use = cur if (wanted[ptr] == i or prev is None) else prev
            if use[1] is None:
                use[1] = use[0].to_ndarray(format="rgb24")
            out[wanted[ptr]] = use[1]
            ptr += 1
        if ptr == len(wanted):
            return out, None, reach
        prev = cur
    if prev is None:
        return out, None, 0
    return out, prev[1] if prev[1] is not None else prev[0].to_ndarray(format="rgb24"), reach


def _read_images(folder, indices):
    """Frame folder: JPEGs via PIL, indices past the end clamped to the last image."""
    from PIL import Image  # matplotlib depends on Pillow, so it is installed
    files = _frame_files(folder)
    if not files:
        raise ValueError(f"{folder}: no JPEG frames")
    cache = {}
    for w in set(indices):
        with Image.open(files[min(w, len(files) - 1)]) as im:
            cache[w] = np.asarray(im.convert("RGB"))
    return np.stack([cache[i] for i in indices])


def read_frames(path, indices, num_frames=None):
    """uint8 frames (len(indices), H, W, 3) at the given 0-based frame indices (any order, repeats ok).

    Videos: open with PyAV, threads on, seek to the key frame before the first needed frame (when it is
    not near the start), decode forward only until the last needed frame. Indices at or past the video's
    length (`num_frames`, the count the caller sampled from; by default the container's header count)
    repeat the last frame. If the stream ends BEFORE a wanted index below that length, raise ShortVideo
    (carrying the decodable count) rather than pad. Frame folders: see _read_images."""
    indices = [int(i) for i in indices]
    if os.path.isdir(path):
        return _read_images(path, indices)
    wanted = sorted(set(indices))
    got = None
    with av.open(path) as container:
        stream = _video_stream(container, path)
        length = num_frames or stream.frames or None  # frames that should exist (None: unknown)
        rate = stream.average_rate or stream.guessed_rate
        if wanted[0] >= SEEK_MIN_FRAME and rate and stream.time_base:
            target = (stream.start_time or 0) + int(wanted[0] / (rate * stream.time_base))
            try:
                container.seek(target, stream=stream, backward=True, any_frame=False)
                got = _decode_range(container, stream, wanted, use_pts=True)
            except av.error.FFmpegError:
                got = None  # e.g. a truncated file has no index to seek with

    def short(got, slack):  # stopped over `slack` frames before `length`, short of a wanted frame
        out, _, reach = got
        return bool(length) and reach + slack < length and any(w < length and w not in out for w in wanted)

    # No seek wanted, the seek landed badly, or the stream ended early after it: decode from the start,
    # counting frames exactly. (After a seek, indices come from time stamps, which may round the last
    # frame one index low: one frame of slack there, filled like a variable-frame-rate gap.)
    if got is None or short(got, slack=1):
        with av.open(path) as container:
            got = _decode_range(container, _video_stream(container, path), wanted, use_pts=False)
        if got[2] == 0:
            raise ValueError(f"{path}: no decodable frames")
        if short(got, slack=0):
            raise ShortVideo(path, got[2], length)
    out, last, _ = got
    return np.stack([out[i] if i in out else last for i in indices])  # past the end: the last frame


# Decodable frame counts, remembered per dataset. A short video (ShortVideo) costs one wasted decode
# the first time it is read; the count learned then is appended to a small file beside the dataset, so
# later runs sample from the right count at once. Where the file lives is our choice (the paper is
# silent): in the data root when it is writable, so everyone using that copy of the data shares it.

def count_cache_path(root):
    """The count cache of the dataset at `root`: ROOT/COUNT_CACHE_NAME when the data root is writable,
    else ~/.cache/dynamic-appearance/frame-counts-<hash of the absolute root>.tsv (read-only mounts)."""
    root = os.path.abspath(root)
    here = os.path.join(root, COUNT_CACHE_NAME)
    if os.access(here, os.W_OK) or (not os.path.exists(here) and os.access(root, os.W_OK)):
        return here
    key = hashlib.sha1(root.encode()).hexdigest()[:16]
    return os.path.join(os.path.expanduser("~"), ".cache", "dynamic-appearance", f"frame-counts-{key}.tsv")


def _file_key(path):
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


def append_count(cache, path, count):
    """Record in `cache` that video `path` decodes `count` frames: one line "path<TAB>size<TAB>
    mtime_ns<TAB>count". A single write() to a file opened with O_APPEND lands whole at the end, so
    DataLoader workers in separate processes may append at once. Best effort: a cache that cannot be
    written only means the count is learned again next run."""
    path = os.path.abspath(path)
    if "\t" in path or "\n" in path:
        return
    try:
        size, mtime = _file_key(path)
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        fd = os.open(cache, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{path}\t{size}\t{mtime}\t{count}\n".encode())
        finally:
            os.close(fd)
    except OSError:
        pass


def cached_counts(cache):
    """{absolute path: decodable count} from `cache`; the last line per path wins. A line counts only
    while its video keeps the recorded size and mtime (a replaced or re-downloaded file is learned
    afresh), and damaged lines are ignored, so a stale cache can never break a run."""
    try:
        with open(cache, "rb") as f:
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return {}
    last = {}
    for ln in text.splitlines():
        parts = ln.split("\t")
        if len(parts) == 4 and all(p.isdigit() for p in parts[1:]) and int(parts[3]) > 0:
            last[parts[0]] = tuple(int(p) for p in parts[1:])
    out = {}
    for path, (size, mtime, count) in last.items():
        try:
            if _file_key(path) == (size, mtime):
                out[path] = count
        except OSError:
            pass
    return out


# ---------------------------------------------------------------------------------------------------
# Transforms on uint8 frames (N, H, W, 3) -> float (N, 3, h, w). Every crop is one box for all frames of
# a clip (the same spatial window in every frame, or the motion would be corrupted).
# ---------------------------------------------------------------------------------------------------

def multiscale_crop_box(h, w, rng, scales=MULTISCALE, max_distort=1):
    """TSN multi-scale crop: side lengths from `scales` x short side (height and width at most
    `max_distort` steps apart), placed at one of 13 fixed positions (corners, centre, edge centres,
    quarter points). Returns (y0, x0, ch, cw)."""
    base = min(h, w)
    sizes = [max(1, int(base * s)) for s in scales]
    pairs = [(sizes[i], sizes[j]) for i in range(len(sizes)) for j in range(len(sizes)) if abs(i - j) <= max_distort]
    ch, cw = pairs[int(rng.integers(len(pairs)))]
    ys, xs = (h - ch) / 4, (w - cw) / 4
    grid = [(0, 0), (0, 4), (4, 0), (4, 4), (2, 2), (0, 2), (4, 2), (2, 0), (2, 4), (1, 1), (1, 3), (3, 1), (3, 3)]
    gy, gx = grid[int(rng.integers(len(grid)))]
    return int(round(gy * ys)), int(round(gx * xs)), ch, cw


def eval_crop_boxes(h, w, crop_size, crops):
    """Test-time crops as boxes in the original frame. crops=1: resize the short side to
    scale_size = round(crop_size*256/224), take the centre crop_size square. crops=3: resize the short
    side to crop_size and take 3 squares at the start, centre and end of the long side (together they
    cover it). Returns [(y0, x0, ch, cw)] in original pixels."""
    if crops not in (1, 3):
        raise ValueError(f"--crops must be 1 (centre) or 3 (covering the long side), got {crops}")
    short = min(h, w)
    if crops == 1:
        side = short * crop_size / round(crop_size * 256 / 224)  # crop side in original pixels
        return [(int(round((h - side) / 2)), int(round((w - side) / 2)), int(round(side)), int(round(side)))]
    side = short
    boxes = []
    for pos in (0.0, 0.5, 1.0):
        boxes.append((int(round((h - side) * pos)), int(round((w - side) * pos)), side, side))
    return boxes


def crop_resize(frames, box, size, flip=False):
    """uint8 (N, H, W, 3) -> float (N, 3, size, size) in [0, 1]: crop `box`, bilinear resize, flip.
    The resize runs on uint8 in channels-last layout (the permuted numpy array already is), where torch
    has a vectorised antialiased kernel: ~20x faster than float for downscaling, same result to 1/255."""
    y0, x0, ch, cw = box
    x = torch.from_numpy(np.ascontiguousarray(frames[:, y0:y0 + ch, x0:x0 + cw])).permute(0, 3, 1, 2)  # (N, 3, ch, cw)
    if (ch, cw) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    if flip:
        x = x.flip(-1)
    return x.float().div_(255.0).contiguous()  # (N, 3, size, size)


_MEAN = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
_STD = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def normalize(x):
    """ImageNet mean/std normalisation of float frames (..., 3, H, W) in [0, 1] (in place)."""
    return x.sub_(_MEAN).div_(_STD) if not x.requires_grad else (x - _MEAN) / _STD


# ---------------------------------------------------------------------------------------------------
# The dataset
# ---------------------------------------------------------------------------------------------------

class SkippedVideoWarning(RuntimeWarning):
    """A video could not be read (replaced by another one in training, scored as unreadable at test)."""


class ShortVideoWarning(RuntimeWarning):
    """A video decodes fewer frames than its header says; its clips are sampled from those that decode."""


class VideoDataset(torch.utils.data.Dataset):
    """(clip, label) items from a list of (path, label) samples.

    Randomness (sampling offsets, crop, flip) comes from numpy Generator seeded with (seed, epoch, index):
    an item is a pure function of those, whatever the worker count or order -> exact mid-epoch resume.

    Unreadable videos (corrupt, empty, no frames) are counted in `skipped` and warned about, then:
      substitute=True (training): replaced by another readable sample, see _substitute;
      substitute=False (the test protocol): never replaced. The item is (zeros of the normal clip shape,
          label -1); label -1 means "unreadable", and evaluation drops those rows and reports how many.
          `unreadable()` lists their paths.
    Short videos (the header over-counts, see ShortVideo): the decodable count is learned on first read,
    kept in shared memory for every worker, appended to `count_cache` (a file, see count_cache_path;
    None: not kept beyond this object) and read back from it when a later dataset object is built.
    """

    def __init__(self, samples, classes, train=True, segments=8, frames=8, crop_size=224, clips=1, crops=1,
                 seed=0, dense=False, flip=True, name="list", substitute=True, count_cache=None):
        if not samples:
            raise ValueError(f"{name}: the split has no videos")
        if train and (clips != 1 or crops != 1):
            raise ValueError("clips/crops are test-time views; training takes one random view")
        self.samples = list(samples)
        self.classes = list(classes)
        self.train, self.segments, self.frames = train, segments, frames
        self.crop_size, self.clips, self.crops = crop_size, clips, crops
        self.seed, self.dense, self.flip, self.name = seed, dense, flip, name
        self.substitute, self.count_cache = substitute, count_cache
        self.epoch = 0
        # Skip counts live in shared memory so that DataLoader worker processes (fork or spawn) add to
        # the same counters the main process reads through `skipped`. Increments from two workers at the
        # same instant could lose one count; that only under-reports, it never hides a broken file (the
        # warning is printed by the worker either way).
        self._skip_counts = torch.zeros(len(self.samples), dtype=torch.int32).share_memory_()
        self._bad = set()  # sample indices that failed in this process: not retried as substitutes
        self._warned = set()  # (epoch, path) or path already warned about in this process
        # Frame counts in shared memory (-1 = not yet known): a count found by one DataLoader worker is
        # seen by every worker and by later epochs' workers, so each video's header is read once per run
        # rather than once per worker per epoch (a second file open per item on a cold cache).
        self._frame_counts = torch.full((len(self.samples),), -1, dtype=torch.int64).share_memory_()
        known = cached_counts(count_cache) if count_cache else {}  # short videos learned in earlier runs
        for i, (path, _) in enumerate(self.samples if known else []):
            if os.path.abspath(path) in known:
                self._frame_counts[i] = known[os.path.abspath(path)]

    def __len__(self):
        return len(self.samples)

    def set_epoch(self, epoch):
        self.epoch = int(epoch)

    @property
    def skipped(self):
        """collections.Counter path -> how many times it was skipped (all workers, this dataset object)."""
        counts = self._skip_counts
        return collections.Counter({self.samples[i][0]: int(counts[i]) for i in torch.nonzero(counts).flatten().tolist()})

    def unreadable(self):
        """Sorted paths of the videos that failed to read (in any worker of this dataset object)."""
        return sorted(self.skipped)

    def report_skipped(self):
        """A one-line summary of skipped videos ('' if none), for train.py to print once per epoch."""
        s = self.skipped
        if not s:
            return ""
        items = ", ".join(f"{p} (x{c})" for p, c in s.most_common(10))
        more = f", ... {len(s) - 10} more" if len(s) > 10 else ""
        return f"{self.name}: {sum(s.values())} reads of {len(s)} unreadable videos were skipped: {items}{more}"

    def _rng(self, key):
        return np.random.default_rng([self.seed, self.epoch, key])

    def num_frames(self, index):
        """Frame count of sample `index`: the cached decodable count, else the header's (read from the
        file on first use), then shared; a short video lowers it when first decoded (_learn_count)."""
        n = int(self._frame_counts[index])
        if n < 0:
            n = count_frames(self.samples[index][0])
            self._frame_counts[index] = n
        return n

    def _indices(self, num, rng, clip=0):
        if self.dense:
            return dense_indices(num, self.segments * self.frames, self.train, rng, clip, self.clips)
        return sparse_indices(num, self.segments, self.frames, self.train, rng, clip, self.clips)

    def _clip(self, index, rng):
        """Sample, decode and transform one clip of sample `index` (raises ShortVideo on a short video)."""
        path = self.samples[index][0]
        num = self.num_frames(index)
        if num < 1:
            raise ValueError("the video has no frames")
        if self.train:
            frames = read_frames(path, self._indices(num, rng), num)  # (S*T, H, W, 3) uint8
            box = multiscale_crop_box(frames.shape[1], frames.shape[2], rng)
            flip = self.flip and bool(rng.integers(2))
            return normalize(crop_resize(frames, box, self.crop_size, flip))  # (S*T, 3, H, W)
        # test: all temporal clips decoded in one pass, then every clip x crop view
        per_clip = [self._indices(num, None, c) for c in range(self.clips)]
        allf = read_frames(path, np.concatenate(per_clip), num)  # (clips*S*T, H, W, 3)
        L = len(per_clip[0])
        boxes = eval_crop_boxes(allf.shape[1], allf.shape[2], self.crop_size, self.crops)
        views = [crop_resize(allf[c * L:(c + 1) * L], b, self.crop_size) for c in range(self.clips) for b in boxes]
        return normalize(torch.stack(views))  # (V, S*T, 3, H, W)

    def load(self, index, key=None):
        """(clip, label) of sample `index` with randomness from (seed, epoch, key) (key: the item asked
        for, `index` by default); raises if the video is unreadable. A short video is learned and sampled
        again from the same fresh generator, so the item equals what a run that knew the count gives."""
        key = index if key is None else key
        try:
            return self._clip(index, self._rng(key)), self.samples[index][1]
        except ShortVideo as e:
            self._learn_count(index, e)
            return self._clip(index, self._rng(key)), self.samples[index][1]

    def _learn_count(self, index, err):
        path = self.samples[index][0]
        self._frame_counts[index] = err.decoded
        if self.count_cache:
            append_count(self.count_cache, path, err.decoded)
        if ("short", path) not in self._warned:
            self._warned.add(("short", path))
            kept = f"; count cached in {self.count_cache}" if self.count_cache else ""
            warnings.warn(f"{self.name}: {path}: the header says {err.expected} frames but only {err.decoded} "
                          f"decode; its clips are sampled from those {err.decoded}{kept}", ShortVideoWarning)

    def _note_skip(self, index, err):
        path = self.samples[index][0]
        first = int(self._skip_counts[index]) == 0  # over all workers: the test protocol warns once
        self._skip_counts[index] += 1
        self._bad.add(index)
        if self.substitute and (self.epoch, path) not in self._warned:
            self._warned.add((self.epoch, path))
            warnings.warn(f"{self.name}: skipping unreadable video {path} (epoch {self.epoch}): "
                          f"{type(err).__name__}: {err}", SkippedVideoWarning)
        elif not self.substitute and first and path not in self._warned:
            self._warned.add(path)
            warnings.warn(f"{self.name}: unreadable video {path}: {type(err).__name__}: {err}; not replaced: "
                          "its item has label -1 (left out of the scores, counted as unreadable)",
                          SkippedVideoWarning)

    def __getitem__(self, index):
        """A corrupt, empty or unreadable video never stops a run: it is counted in `skipped`, warned about
        (training: once per path per epoch and process; test: once per path), and then either replaced
        (substitute=True, see _substitute) or returned as (zeros, -1) (substitute=False)."""
        err = RuntimeError("failed earlier in this process")
        if index not in self._bad:
            try:
                return self.load(index)
            except Exception as e:  # noqa: BLE001 - any decode/IO failure means "skip this video"
                err = e
        self._note_skip(index, err)
        if not self.substitute:
            L, c = self.segments * self.frames, self.crop_size
            shape = (L, 3, c, c) if self.train else (self.clips * self.crops, L, 3, c, c)
            return torch.zeros(shape), -1
        return self._substitute(index, err)

    def _substitute(self, index, err):
        """The next readable sample of a permutation seeded by (seed, epoch, index), with item `index`'s
        randomness, so the substitute is deterministic too. If 100 videos in a row fail, or every video
        fails, the data is broken: raise with the last error."""
        fails = 1
        order = np.random.default_rng([self.seed, self.epoch, index, 1]).permutation(len(self.samples))
        for j in order.tolist():
            if j == index or j in self._bad:
                continue
            try:
                return self.load(j, index)
            except Exception as e:  # noqa: BLE001
                self._note_skip(j, e)
                err, fails = e, fails + 1
                if fails >= 100:
                    break
        raise RuntimeError(f"{self.name}: {fails} videos in a row could not be read "
                           f"({'every video failed' if fails < 100 else 'the data looks broken'}); "
                           f"last error: {type(err).__name__}: {err}. Check the files with "
                           f"`python data.py inspect --dataset {self.name} --data-root ...`")


def build_dataset(name, data_root, split=1, train=True, segments=8, frames=8, crop_size=224, clips=1, crops=1,
                  seed=0, substitute=True):
    """The train or test split of dataset `name` read from its official layout at `data_root`.
    substitute: replace unreadable videos (training) or return them as (zeros, -1) (test protocol)."""
    classes, samples = parse_dataset(name, data_root, split, train)
    root = data_root or default_synthetic_root()  # only synthetic may come without a root
    return VideoDataset(samples, classes, train, segments, frames, crop_size, clips if not train else 1,
                        crops if not train else 1, seed, dense=name in DENSE_DATASETS, flip=name not in NO_FLIP,
                        name=name, substitute=substitute, count_cache=count_cache_path(root))


# ---------------------------------------------------------------------------------------------------
# Samplers and loaders
# ---------------------------------------------------------------------------------------------------

def _rank_world(rank=None, world_size=None):
    """(rank, world size): the given ones, else torch.distributed's when it is initialised, else (0, 1)."""
    r, w = 0, 1
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        r, w = torch.distributed.get_rank(), torch.distributed.get_world_size()
    return (r if rank is None else rank), (w if world_size is None else world_size)


class _IndexSampler(torch.utils.data.Sampler):
    """What both samplers share: they compute their `indices()` list; iterating and len() use it."""

    def __iter__(self):
        return iter(self.indices())

    def __len__(self):
        return len(self.indices())


class ResumableSampler(_IndexSampler):
    """Training order: a permutation seeded by (seed, epoch), padded (by repeating its start) to a multiple
    of the world size like DistributedSampler, this rank's share taken as every world-th index, cut to
    whole batches (drop_last; kept whole if shorter than one batch), minus the first `skip_batches`
    batches (mid-epoch resume). `set_epoch` also sets the dataset's epoch (augmentation randomness), so
    train.py only calls `train_sampler.set_epoch(epoch, skip_batches)` before each epoch.

    It stands in for torch's DistributedSampler, whose sharding it reproduces (rank and world size come
    from torch.distributed when it is initialised), because DistributedSampler cannot start an epoch
    part-way through: an exact mid-epoch resume needs `skip_batches`."""

    def __init__(self, dataset, batch_size, seed=0, shuffle=True, drop_last=True, rank=None, world_size=None):
        self.dataset, self.batch_size, self.seed = dataset, batch_size, seed
        self.shuffle, self.drop_last = shuffle, drop_last
        self.rank, self.world_size = rank, world_size
        self.epoch, self.skip_batches = 0, 0

    def set_epoch(self, epoch, skip_batches=0):
        self.epoch, self.skip_batches = int(epoch), int(skip_batches)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    def indices(self):
        rank, world = _rank_world(self.rank, self.world_size)
        n = len(self.dataset)
        order = np.random.default_rng([self.seed, self.epoch, 7]).permutation(n) if self.shuffle else np.arange(n)
        total = math.ceil(n / world) * world
        order = np.resize(order, total)  # pads by repeating from the start
        mine = order[rank:total:world]
        if self.drop_last and len(mine) >= self.batch_size:
            mine = mine[: len(mine) // self.batch_size * self.batch_size]
        return mine[self.skip_batches * self.batch_size:].tolist()


class ShardSampler(_IndexSampler):
    """Validation: sequential, every world-th sample for this rank, no padding, so each video is scored
    exactly once over all ranks. The per-rank metric sums are all-reduced by train.py / evaluate.py."""

    def __init__(self, n, rank=None, world_size=None):
        self.n, self.rank, self.world_size = n, rank, world_size

    def indices(self):
        rank, world = _rank_world(self.rank, self.world_size)
        return list(range(rank, self.n, world))


class Loaders(NamedTuple):
    train: torch.utils.data.DataLoader
    val: torch.utils.data.DataLoader
    num_classes: int
    classes: list
    train_sampler: ResumableSampler


def _worker_init(worker_id):
    # Items do not depend on these seeds (they use (seed, epoch, index)); seeding keeps any other library
    # randomness distinct per worker and reproducible. One intra-op thread per worker avoids oversubscribing.
    s = torch.utils.data.get_worker_info().seed % 2 ** 32
    np.random.seed(s)
    random.seed(s)
    torch.set_num_threads(1)
    # A scheduler (SLURM, Kubernetes) sends SIGTERM to every process of the job, and Ctrl-C sends
    # SIGINT to the whole foreground group. A worker that died of it would take the run down with
    # "DataLoader worker ... killed by signal" before the main process could save its mid-epoch
    # checkpoint. The workers ignore both; the main process (train.py's StopRequest) finishes its
    # step, saves, and shuts them down. A worker whose parent is gone still exits (PyTorch checks).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def build_loaders(dataset, data_root, split=1, segments=8, frames=8, crop_size=224, batch_size=8, workers=2,
                  subset=None, overfit=None, seed=0, clips=1, crops=1):
    """Train and val DataLoaders for dataset `dataset`.

    subset=N: N training videos drawn at random (seeded); val stays the full test split.
    overfit=N: N training videos (seeded pick) for both train and val; val uses the test transforms.
    Val batch size is max(1, batch_size // V) with V = clips*crops views per item, so a val batch holds
    about as many clips as a train batch. Training replaces unreadable videos; validation follows the
    test protocol (substitute=False: an unreadable video's item has label -1, see VideoDataset)."""
    train_ds = build_dataset(dataset, data_root, split, True, segments, frames, crop_size, 1, 1, seed)
    classes = train_ds.classes
    kw = dict(segments=segments, frames=frames, crop_size=crop_size, seed=seed, dense=train_ds.dense,
              flip=train_ds.flip, name=dataset, count_cache=train_ds.count_cache)
    if overfit or subset:
        n = min(int(overfit or subset), len(train_ds))
        chosen = sorted(np.random.default_rng([seed, 12345]).choice(len(train_ds), n, replace=False).tolist())
        train_ds = VideoDataset([train_ds.samples[i] for i in chosen], classes, True, **kw)
    if overfit:
        val_ds = VideoDataset(train_ds.samples, classes, False, clips=clips, crops=crops, substitute=False, **kw)
    else:
        val_ds = build_dataset(dataset, data_root, split, False, segments, frames, crop_size, clips, crops, seed,
                               substitute=False)
        if val_ds.classes != classes:
            raise ValueError(f"{dataset}: the test split's classes differ from the training split's")
    pin = torch.cuda.is_available()
    sampler = ResumableSampler(train_ds, batch_size, seed=seed, shuffle=True, drop_last=True)
    common = dict(num_workers=workers, pin_memory=pin, worker_init_fn=_worker_init if workers > 0 else None,
                  persistent_workers=False, generator=torch.Generator().manual_seed(seed))
    train = torch.utils.data.DataLoader(train_ds, batch_size=batch_size, sampler=sampler, drop_last=False, **common)
    val = torch.utils.data.DataLoader(val_ds, batch_size=max(1, batch_size // (clips * crops)),
                                      sampler=ShardSampler(len(val_ds)), drop_last=False, **common)
    return Loaders(train, val, len(classes), list(classes), sampler)


# ---------------------------------------------------------------------------------------------------
# Dataset layouts. One parser per dataset (PARSERS), each returning (classes, samples) for one split:
# classes = list of names (index = label), samples = list of (path, label). Paths that do not exist are
# dropped with one warning (a missing whole folder/list is an error instead).
# ---------------------------------------------------------------------------------------------------

# The layouts this file reads. Shown verbatim in every "missing root / file / folder" error.
LAYOUTS = {
    "ucf101": """ROOT/UCF-101/<Class>/v_<Class>_gXX_cYY.avi          (UCF101.rar unpacked)
ROOT/ucfTrainTestlist/classInd.txt                       ("1 ApplyEyeMakeup", 1-based ids)
ROOT/ucfTrainTestlist/trainlist0K.txt, testlist0K.txt    K = 1, 2, 3
    trainlist line: "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1"; testlist line: path only""",
    "hmdb51": """ROOT/hmdb51_org/<class>/<name>.avi                       (each class .rar unpacked)
ROOT/testTrainMulti_7030_splits/<class>_test_split{1,2,3}.txt
    line: "<name>.avi 1" (1 = train, 2 = test, 0 = unused)""",
    "sthv1": """ROOT/20bn-something-something-v1/<id>/00001.jpg, 00002.jpg, ...   (JPEG frame folders)
ROOT/something-something-v1-labels.csv       one label per line (line order = class id)
ROOT/something-something-v1-train.csv        "<id>;<label>"
ROOT/something-something-v1-validation.csv   "<id>;<label>"   (the test split here; only split 1)""",
    "kinetics400": """either folders:  ROOT/train/<label>/<video>.mp4 and ROOT/val/<label>/<video>.mp4
or official CSVs: ROOT/{train,val}.csv (also accepted: validate.csv, kinetics_train.csv,
    kinetics_val.csv, kinetics400_train.csv, kinetics-400_train.csv, ..., or under ROOT/annotations/),
    columns label,youtube_id,time_start,time_end,split; videos found anywhere under ROOT/train and
    ROOT/val (also videos_train/, videos_val/, validate/) named <youtube_id>_<start:06d>_<end:06d>.<ext>
    or <youtube_id>.<ext>. CSV rows whose video is absent are dropped with a warning.""",
    "minikinetics": """the kinetics400 layout (folders or CSVs, see there), plus Mini-Kinetics-200's id lists
ROOT/train_ytid_list.txt and ROOT/val_ytid_list.txt (one YouTube id per line; also looked for under
ROOT/minikinetics/ and ROOT/annotations/). Classes = the labels left after filtering (200).""",
    "list": """ROOT/train.txt and ROOT/val.txt (split 1; also test.txt), or ROOT/train_split<K>.txt and
ROOT/val_split<K>.txt (or test_split<K>.txt) for split K; optional ROOT/classes.txt (line i = name of
label i). mmaction2-style lines "relative/path label" (video file or JPEG frame folder), or
"relative/path num_frames label" for frame folders; paths relative to ROOT (or absolute).""",
    "synthetic": """the ucf101 layout, written by `python data.py synth --out ROOT` (or automatically on first use
when ROOT does not exist; default ROOT = ~/.cache/dynamic-appearance/synth-v4), with splits K = 1..5:
1-3 scene-balanced; 4 and 5 the static-bias split (same training list; testlist04 in-distribution,
testlist05 bias-conflicting); ROOT/synth_meta.json records each video's background (its static cue).""",
}


def layout_error(name, root, what):
    """A FileNotFoundError naming what is missing and showing the layout `name` expects."""
    return FileNotFoundError(
        f"{name}: {what} (data root: {root!r}).\nExpected layout for --dataset {name}:\n{LAYOUTS[name]}")


def read_text(path):
    """The text of a split or class file (UTF-8, a BOM dropped); a clear error when it is not text."""
    with open(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: expected a text file (a split or class list), but byte {e.start} is not "
                         "UTF-8 text; is it the right file, unpacked?") from None
    if "\x00" in text:
        raise ValueError(f"{path}: expected a text file (a split or class list), but it holds NUL bytes")
    return text


def read_lines(path):
    """(line number, stripped line) of every non-empty line of a text file; CRLF (the official UCF101
    lists) and a BOM are handled."""
    return [(n, ln.strip()) for n, ln in enumerate(read_text(path).splitlines(), 1) if ln.strip()]


def _line_error(path, n, line, expected):
    return ValueError(f"{path}, line {n}: expected {expected}, got {line!r}")


def _number(text, path, n, line, expected):
    """int(text), or the error naming the file, the line and the expected form."""
    if not (text.isascii() and text.isdigit()):
        raise _line_error(path, n, line, expected)
    return int(text)


class _Resolver:
    """Existence checks by directory listing (one listdir per folder instead of one stat per file) with a
    case-insensitive fallback: the official UCF101 lists say HandstandPushups/v_HandStandPushups_... ."""

    def __init__(self):
        self._dirs = {}

    def _listing(self, d):
        if d not in self._dirs:
            try:
                names = os.listdir(d)
            except OSError:
                names = []
            self._dirs[d] = (set(names), {n.lower(): n for n in names})
        return self._dirs[d]

    def resolve(self, path):
        """The existing path (maybe with different letter case), or None."""
        parent, base = os.path.split(path)
        if parent and parent != path and not os.path.isdir(parent):
            parent = self.resolve(parent)
            if parent is None:
                return None
        exact, lower = self._listing(parent or ".")
        if base in exact:
            return os.path.join(parent, base)
        if base.lower() in lower:
            return os.path.join(parent, lower[base.lower()])
        return None


def _keep_existing(name, root, samples):
    res = _Resolver()
    kept, missing = [], []
    for path, label in samples:
        p = res.resolve(path)
        (kept.append((p, label)) if p is not None else missing.append(path))
    if samples and not kept:
        raise layout_error(name, root, f"none of the {len(samples)} listed videos exist "
                                       f"(first expected: {missing[0]})")
    if missing:
        warnings.warn(f"{name}: {len(missing)} of {len(samples)} listed videos are missing and are left out "
                      f"(first: {missing[0]})", RuntimeWarning)
    return kept


def _need_root(name, root, split=None, splits=None):
    """The data root must exist (else the layout error); `split`, when checked, must be in `splits`."""
    if not os.path.isdir(root):
        raise layout_error(name, root, "the data root does not exist")
    if splits is not None and split not in splits:
        raise ValueError(f"{name}: --split must be {', '.join(map(str, splits[:-1]))} or {splits[-1]}, got {split}")


def _need(name, root, path, kind="file"):
    ok = os.path.isdir(path) if kind == "folder" else os.path.isfile(path)
    if not ok:
        raise layout_error(name, root, f"missing {kind} {path}")
    return path


def parse_ucf101(root, split=1, train=True, name="ucf101"):
    """UCF101's official layout (LAYOUTS["ucf101"]); also the synthetic set's, which adds splits 4 and 5
    (its static-bias split, see write_synthetic). Real UCF101 has splits 1-3 only."""
    if name == "ucf101" and split in (4, 5):
        raise ValueError(f"ucf101: --split must be 1, 2 or 3, got {split} (splits 4 and 5, the static-bias "
                         "split, exist only for --dataset synthetic)")
    _need_root(name, root, split, splits=SYNTH_SPLITS if name == "synthetic" else (1, 2, 3))
    lists = _need(name, root, os.path.join(root, "ucfTrainTestlist"), "folder")
    videos = _need(name, root, os.path.join(root, "UCF-101"), "folder")
    classes, cfile = [], _need(name, root, os.path.join(lists, "classInd.txt"))
    for n, ln in read_lines(cfile):
        parts = ln.split(maxsplit=1)
        form = f"'{len(classes) + 1} <ClassName>' (ids 1, 2, ... in order)"
        if len(parts) != 2 or _number(parts[0], cfile, n, ln, form) != len(classes) + 1:
            raise _line_error(cfile, n, ln, form)
        classes.append(parts[1])
    by_lower = {c.lower(): i for i, c in enumerate(classes)}
    listfile = _need(name, root, os.path.join(lists, f"{'trainlist' if train else 'testlist'}0{split}.txt"))
    samples = []
    for n, ln in read_lines(listfile):
        parts = ln.split()
        rel = parts[0].replace("\\", "/")
        folder = by_lower.get(rel.split("/")[0].lower()) if "/" in rel else None  # class from the folder
        if len(parts) > 1:  # trainlist: 1-based class id, which must agree with the folder
            label = _number(parts[1], listfile, n, ln, "'<Class>/v_<Class>_gXX_cYY.avi <class id>'") - 1
            if not 0 <= label < len(classes):
                raise ValueError(f"{listfile}, line {n}: class id {parts[1]} is not in classInd.txt "
                                 f"(1..{len(classes)}): {ln!r}")
            if folder is not None and folder != label:
                raise ValueError(f"{listfile}, line {n}: {rel!r} is in the folder of class {classes[folder]!r} "
                                 f"(id {folder + 1}) but labelled {parts[1]} = class {classes[label]!r}")
        elif folder is None:  # testlist: the folder is the only label
            raise ValueError(f"{listfile}, line {n}: class folder of {rel!r} is not in classInd.txt")
        else:
            label = folder
        samples.append((os.path.join(videos, *rel.split("/")), label))
    return classes, _keep_existing(name, root, samples)


def parse_hmdb51(root, split=1, train=True):
    name = "hmdb51"
    _need_root(name, root, split, splits=(1, 2, 3))
    sdir = _need(name, root, os.path.join(root, "testTrainMulti_7030_splits"), "folder")
    vdir = _need(name, root, os.path.join(root, "hmdb51_org"), "folder")
    suffix = f"_test_split{split}.txt"
    files = sorted(f for f in os.listdir(sdir) if f.endswith(suffix))
    if not files:
        raise layout_error(name, root, f"no *{suffix} files in {sdir}")
    classes = [f[: -len(suffix)] for f in files]
    want = "1" if train else "2"
    samples = []
    for label, (cls, f) in enumerate(zip(classes, files)):
        path = os.path.join(sdir, f)
        for n, ln in read_lines(path):
            parts = ln.split()
            if len(parts) < 2 or parts[1] not in ("0", "1", "2"):
                raise _line_error(path, n, ln, "'<name>.avi 0|1|2' (1 = train, 2 = test, 0 = unused)")
            if parts[1] == want:
                samples.append((os.path.join(vdir, cls, parts[0]), label))
    return classes, _keep_existing(name, root, samples)


def parse_sthv1(root, split=1, train=True):
    name = "sthv1"
    _need_root(name, root)
    if split != 1:
        raise ValueError(f"{name}: only split 1 exists (train / validation), got --split {split}")
    fdir = _need(name, root, os.path.join(root, "20bn-something-something-v1"), "folder")
    classes = [ln for _, ln in read_lines(_need(name, root, os.path.join(root, "something-something-v1-labels.csv")))]
    index = {c: i for i, c in enumerate(classes)}
    listfile = _need(name, root, os.path.join(
        root, f"something-something-v1-{'train' if train else 'validation'}.csv"))
    samples = []
    for n, ln in read_lines(listfile):
        if ";" not in ln:
            raise _line_error(listfile, n, ln, "'<id>;<label>'")
        vid, label = ln.split(";", 1)
        if label not in index:
            raise ValueError(f"{listfile}, line {n}: label {label!r} is not in something-something-v1-labels.csv")
        samples.append((os.path.join(fdir, vid), index[label]))
    return classes, _keep_existing(name, root, samples)


_KINETICS_ID = re.compile(r"^(.*)_(\d{6})_(\d{6})$")


def _first_file(root, names):
    for n in names:
        p = os.path.join(root, n)
        if os.path.isfile(p):
            return p
    return None


def _kinetics_csv(root, train):
    stems = ["train"] if train else ["val", "validate", "validation"]
    names = []
    for s in stems:
        names += [f"{s}.csv", f"kinetics_{s}.csv", f"kinetics400_{s}.csv", f"kinetics-400_{s}.csv",
                  f"kinetics_400_{s}.csv"]
    names += [os.path.join("annotations", n) for n in names]
    return _first_file(root, names)


def _kinetics_dir(root, train):
    for d in (["train", "videos_train", "train_256"] if train else ["val", "validate", "videos_val", "val_256"]):
        if os.path.isdir(os.path.join(root, d)):
            return os.path.join(root, d)
    return None


def _index_videos(folder):
    """stem -> path of every video file under `folder` (recursive)."""
    out = {}
    for dp, _, fs in os.walk(folder):
        for f in fs:
            stem, ext = os.path.splitext(f)
            if ext.lower() in VIDEO_EXTS:
                out[stem] = os.path.join(dp, f)
    return out


def _youtube_id(path):
    stem = os.path.splitext(os.path.basename(path))[0]
    m = _KINETICS_ID.match(stem)
    return m.group(1) if m else stem


def _read_kinetics_csv(path):
    """Rows (label, youtube_id, start, end) of an official Kinetics CSV (header row required)."""
    rows, form = [], "label,youtube_id,time_start,time_end,split"
    reader = csv.reader(io.StringIO(read_text(path), newline=""))
    header = [h.strip() for h in next((r for r in reader if r), [])]  # the first non-empty row
    if not {"youtube_id", "time_start", "time_end"} <= set(header):
        raise ValueError(f"{path}: expected a header with {form}; got {header}")
    col = {h: i for i, h in enumerate(header)}
    for r in reader:
        if not r:
            continue
        line = ",".join(r)
        if len(r) < len(header):
            raise _line_error(path, reader.line_num, line, f"{len(header)} columns ({form})")
        try:
            start, end = int(float(r[col["time_start"]])), int(float(r[col["time_end"]]))
        except ValueError:
            raise _line_error(path, reader.line_num, line, f"{form} with times in seconds") from None
        label = r[col["label"]].strip() if "label" in col else ""
        rows.append((label, r[col["youtube_id"]].strip(), start, end))
    return rows


def _kinetics_items(root, train, name):
    """(classes, [(path, label_name, youtube_id)]) for one Kinetics split, from CSVs or label folders."""
    _need_root(name, root)
    vdir = _kinetics_dir(root, train)
    if vdir is None:
        raise layout_error(name, root, f"missing video folder {os.path.join(root, 'train' if train else 'val')}")
    train_csv = _kinetics_csv(root, True)
    if train_csv is not None:
        split_csv = _kinetics_csv(root, train)
        if split_csv is None:
            raise layout_error(name, root, f"found {train_csv} but no {'train' if train else 'val'} CSV")
        classes = sorted({r[0] for r in _read_kinetics_csv(train_csv)})
        videos = _index_videos(vdir)
        items, missing = [], 0
        for label, yid, t0, t1 in _read_kinetics_csv(split_csv):
            path = videos.get(f"{yid}_{t0:06d}_{t1:06d}") or videos.get(yid)
            if path is None:
                missing += 1
                continue
            items.append((path, label, yid))
        if not items:
            raise layout_error(name, root, f"none of the videos listed in {split_csv} were found under {vdir}")
        if missing:
            warnings.warn(f"{name}: {missing} videos listed in {split_csv} are not under {vdir}; left out "
                          "(normal for Kinetics: some YouTube videos are gone)", RuntimeWarning)
        return classes, items
    # folder layout: ROOT/{train,val}/<label>/<video>
    tdir = _kinetics_dir(root, True)
    if tdir is None:
        raise layout_error(name, root, "no train CSV and no train/<label>/ folders")
    classes = sorted(d for d in os.listdir(tdir) if os.path.isdir(os.path.join(tdir, d)))
    if not classes:
        raise layout_error(name, root, f"no label folders in {tdir}")
    items = []
    for label in sorted(os.listdir(vdir)):
        ldir = os.path.join(vdir, label)
        if not os.path.isdir(ldir):
            continue
        for f in sorted(os.listdir(ldir)):
            if os.path.splitext(f)[1].lower() in VIDEO_EXTS:
                items.append((os.path.join(ldir, f), label, _youtube_id(f)))
    return classes, items


def _label_items(name, root, classes, items):
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted({lab for _, lab, _ in items if lab not in index})
    if unknown:
        raise ValueError(f"{name}: labels {unknown[:5]} in the split are not among the training labels")
    return [(p, index[lab]) for p, lab, _ in items]


def parse_kinetics400(root, split=1, train=True):
    if split != 1:
        raise ValueError(f"kinetics400: only split 1 exists (train / val), got --split {split}")
    classes, items = _kinetics_items(root, train, "kinetics400")
    return classes, _label_items("kinetics400", root, classes, items)


def parse_minikinetics(root, split=1, train=True):
    name = "minikinetics"
    if split != 1:
        raise ValueError(f"{name}: only split 1 exists (train / val), got --split {split}")
    _need_root(name, root)
    ids = {}
    for which in ("train", "val"):
        f = _first_file(root, [os.path.join(d, f"{which}_ytid_list.txt") for d in ("", "minikinetics", "annotations")])
        if f is None:
            raise layout_error(name, root, f"missing {os.path.join(root, f'{which}_ytid_list.txt')}")
        ids[which] = {ln for _, ln in read_lines(f)}
    # the classes are the Kinetics labels that survive the train-id filter (200 in the official lists)
    _, train_items = _kinetics_items(root, True, name)
    train_items = [it for it in train_items if it[2] in ids["train"]]
    classes = sorted({lab for _, lab, _ in train_items})
    if not classes:
        raise layout_error(name, root, "no training video matches train_ytid_list.txt")
    if train:
        items = train_items
    else:
        _, items = _kinetics_items(root, False, name)
        items = [it for it in items if it[2] in ids["val"]]
    return classes, _label_items(name, root, classes, items)


def _list_files(root, split):
    """(train list, val list) paths of the `list` layout for split K (None where absent)."""
    tr = [f"train_split{split}.txt", f"train{split}.txt"] + (["train.txt", "train_list.txt"] if split == 1 else [])
    va = [f"val_split{split}.txt", f"test_split{split}.txt", f"val{split}.txt", f"test{split}.txt"]
    va += ["val.txt", "test.txt", "val_list.txt", "test_list.txt"] if split == 1 else []
    return (_first_file(root, tr), tr), (_first_file(root, va), va)


def _parse_list_file(root, listfile):
    samples = []
    for n, ln in read_lines(listfile):
        parts, form = ln.split(), "'relative/path label' (label: 0, 1, ...)"
        label = _number(parts[-1] if len(parts) > 1 else "", listfile, n, ln, form)
        rel = " ".join(parts[:-1])
        if len(parts) >= 3 and parts[-2].isdigit() and not os.path.exists(os.path.join(root, rel)):
            rel = " ".join(parts[:-2])  # rawframes style: "path num_frames label"
        samples.append((os.path.join(root, rel), label))
    return samples


def parse_list(root, split=1, train=True):
    name = "list"
    _need_root(name, root)
    (trf, trc), (vaf, vac) = _list_files(root, split)
    listfile, cands = (trf, trc) if train else (vaf, vac)
    if listfile is None:
        raise layout_error(name, root, f"no list file among {cands}")
    samples = _parse_list_file(root, listfile)
    cfile = os.path.join(root, "classes.txt")
    if os.path.isfile(cfile):
        classes = [ln for _, ln in read_lines(cfile)]
    else:
        # no names given: count labels over BOTH lists so train and val agree on the number of classes
        n = max(lab for f in (trf, vaf) if f for _, lab in _parse_list_file(root, f)) + 1
        classes = [str(i) for i in range(n)]
    bad = [lab for _, lab in samples if not 0 <= lab < len(classes)]
    if bad:
        raise ValueError(f"{listfile}: label {bad[0]} outside 0..{len(classes) - 1} (classes.txt has {len(classes)})")
    return classes, _keep_existing(name, root, samples)


# Named here, not looked up by name, so every parser's call site is found by a text search.
PARSERS = {"ucf101": parse_ucf101, "hmdb51": parse_hmdb51, "sthv1": parse_sthv1,
           "kinetics400": parse_kinetics400, "minikinetics": parse_minikinetics, "list": parse_list}


def parse_dataset(name, data_root, split=1, train=True):
    """(classes, samples) of one split of dataset `name` at `data_root` (official layouts, see LAYOUTS)."""
    if name not in DATASETS:
        raise ValueError(f"--dataset must be one of {DATASETS}, got {name!r}")
    if name == "synthetic":
        root = ensure_synthetic(data_root or default_synthetic_root())
        return parse_ucf101(root, split, train, name="synthetic")
    if not data_root:
        raise layout_error(name, data_root, "no --data-root given")
    return PARSERS[name](data_root, split, train)


# ---------------------------------------------------------------------------------------------------
# Video writing and the synthetic motion set
# ---------------------------------------------------------------------------------------------------

def write_video(path, frames, fps=25, codec="mpeg4", gop=12, bit_rate=None):
    """Encode uint8 frames (N, H, W, 3) (H, W even) into `path` with PyAV. mpeg4 in .avi is what UCF101
    ships; the default bit rate is generous so small patterns survive. Single-threaded encoder so the same
    frames give the same bytes."""
    n, h, w, _ = frames.shape
    if h % 2 or w % 2:
        raise ValueError(f"frame size {w}x{h}: yuv420p needs even width and height")
    with av.open(path, "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.bit_rate = bit_rate or max(200_000, int(w * h * fps * 2))
        stream.codec_context.gop_size = gop
        stream.codec_context.thread_count = 1
        for f in frames:
            for pkt in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                container.mux(pkt)
        for pkt in stream.encode():
            container.mux(pkt)


# The synthetic set is built so that the paper's claim can FAIL on it (Sec. 1: "many videos labeled with
# different action categories are shot in the same environment"; DA "filters out the static information
# considered unrelated to motion"). Two parts, both in the official UCF101 layout:
#   splits 1-3  scene-balanced: every class shows every background about equally often, in training and
#               in test; only motion tells classes apart (the paper's Fig. 1 situation).
#   splits 4/5  static-bias: in training, background k goes with class k for a fraction `bias` (0.9) of
#               the videos of class k (the others show the backgrounds of other classes). Split 4 tests on
#               an in-distribution list with the same correlation, split 5 (same training list) on a
#               bias-conflicting list where EVERY video shows the background of another class. A model that
#               learnt the background shortcut scores high on split 4 and below chance on split 5; one
#               that reads motion scores alike on both. (Our construction, after the static-bias splits of
#               e.g. StillMix / SCUBA; the paper reports no such test.)
# The static cue is the background alone. The moving object's own look (shape, colour) is, in the paper's
# words, "appearance information relating to movement" that DA keeps by design, so tying it to the class
# would test something the paper does not claim; it is drawn independently of class and background.
#
# Why the motions are harder than "a big sprite crossing the frame" (the v2 set, on which every
# representation scored 95-100 % at the quick-start budget and which therefore separated nothing):
#   * a smaller object (radius size/10, was size/9): fewer pixels carry the motion;
#   * the object moves during a random sub-interval of the clip only ([t0, t1], t0 <= 0.25, t1 >= 0.75)
#     and is still before and after, so some sampled segments hold no class motion;
#   * a distractor: a hollow ring of one fixed look in every video, moving at half the object's speed but
#     turning at random every frame (DISTRACTOR_TURN), so it goes nowhere in particular. Motion energy
#     alone no longer points at the actor: a model has to tell a consistent motion from a wandering
#     one. Its look is the same for every class and its path is random: no class information. (A first
#     version turned slowly, 0.25 rad per frame, with an object of radius size/12: the ring then
#     travelled as straight and as far as the actor, the DA quick start stayed at chance on split 1
#     (20 % after 30 epochs) and RGB on split 4 learnt only the background (90 % in-distribution, 0 %
#     bias-conflicting after 10 epochs). Too hard; the ring now moves at half the object's speed and is
#     0.6 of its size, see DISTRACTOR_SPEED);
#   * camera jitter (a random walk of the camera window, as before): it moves the background too, so the
#     background's texture leaks into frame differences, as camera shake does in real videos.
# Everything a video shows besides its background and object look (object path, scale, timing,
# distractor path, jitter) comes from one generator seeded by (seed, class, video number), never from the
# background, so motion is drawn the same way whatever the cue.

# Motion classes: (name, trajectory). A trajectory maps u in [0, 1] (progress of the motion) and per-video
# parameters to the object centre (x, y) in pixels of the canvas and a scale factor. Start points are drawn
# so that, at any single frame, every class puts the object anywhere in a similar central region at
# similar sizes: only the motion (across frames) tells classes apart, as in the paper's Fig. 1.
def _traj(name, u, p):
    a = p["amp"]
    if name == "MoveRight":
        return p["x"] - a / 2 + a * u, p["y"], p["s"]
    if name == "MoveLeft":
        return p["x"] + a / 2 - a * u, p["y"], p["s"]
    if name == "MoveDown":
        return p["x"], p["y"] - a / 2 + a * u, p["s"]
    if name == "MoveUp":
        return p["x"], p["y"] + a / 2 - a * u, p["s"]
    if name == "Circle":
        ang = p["phase"] + 2 * math.pi * u
        return p["x"] + a / 2 * math.cos(ang), p["y"] + a / 2 * math.sin(ang), p["s"]
    if name == "Pulse":
        return p["x"], p["y"], p["s"] * (1 + 0.45 * math.sin(p["phase"] + 4 * math.pi * u))
    if name == "Shake":
        return p["x"] + a / 3 * math.sin(p["phase"] + 6 * math.pi * u), p["y"], p["s"]
    if name == "Diagonal":
        return p["x"] - a / 2 + a * u, p["y"] - a / 2 + a * u, p["s"]
    raise ValueError(name)


MOTIONS = ("MoveRight", "MoveLeft", "MoveUp", "MoveDown", "Circle", "Pulse", "Shake", "Diagonal")
SYNTH_SPRITES = 3  # object looks shared by all classes (the backgrounds: one per class, see synthetic_pool)
DISTRACTOR_LOOK = (3, (235, 235, 235))  # shape 3 = hollow ring, light grey: no object ever looks like it
SYNTH_BIAS = 0.9  # static-bias split: fraction of a class's training videos that show the class's background
SYNTH_SPLITS = (1, 2, 3, 4, 5)  # 1-3 scene-balanced, 4/5 static-bias (see above)
# Std of the distractor's change of heading per frame (rad). 1.5: successive steps keep only
# exp(-1.5^2 / 2) = 0.32 of their direction, so over 32 frames the ring's net travel is about a quarter of
# its path length, while the actor's is all of it (our choice, see the notes above).
DISTRACTOR_TURN = 1.5
# The ring's speed and radius relative to the object's. Measured with the quick start (`python train.py`,
# DA, constant lambda, 30 epochs, split 1): ring as fast and as large as the object -> chance (25 %) all
# the way; no ring -> 100 % from epoch ~20 (the set separates nothing again); half the speed and 0.6 of
# the radius -> chance until epoch ~12, then 55 % at epoch 17 and 75 % at epoch 26 (1 seed, 2 cores,
# 1.5 min). We keep the last: motion can be learnt, but not at once. (Our choice.)
DISTRACTOR_SPEED = 0.5
DISTRACTOR_SIZE = 0.6


def synthetic_pool(seed, canvas, backgrounds):
    """The shared pool: `backgrounds` textured images (canvas, canvas, 3) uint8 (one per class: background
    k is "the cue of class k" in the static-bias split) and SYNTH_SPRITES object looks (shape id, RGB
    colour). A background is a smooth colour field around its own hue (hues evenly spaced around the
    colour wheel, so backgrounds are easy to tell apart, as scenes are) plus stripes and fine noise
    (texture, so camera jitter is visible)."""
    rng = np.random.default_rng([seed, 1000])
    bgs = []
    yy, xx = np.mgrid[0:canvas, 0:canvas]
    for k in range(backgrounds):
        hue = 2 * math.pi * k / backgrounds
        tint = 45 * np.array([math.cos(hue), math.cos(hue - 2 * math.pi / 3), math.cos(hue + 2 * math.pi / 3)])
        coarse = rng.uniform(60, 170, size=(1, 3, 5, 5)) + tint.reshape(1, 3, 1, 1)
        coarse = torch.from_numpy(coarse.astype(np.float32))
        smooth = F.interpolate(coarse, size=(canvas, canvas), mode="bicubic", align_corners=False)[0].permute(1, 2, 0).numpy()
        ang, freq = rng.uniform(0, math.pi), rng.uniform(0.15, 0.5)
        stripes = 18 * np.sin(freq * (xx * math.cos(ang) + yy * math.sin(ang)))[..., None]
        noise = rng.normal(0, 10, size=(canvas, canvas, 3))
        bgs.append(np.clip(smooth + stripes + noise, 0, 255).astype(np.uint8))
    sprites = [(k % 3, tuple(int(c) for c in rng.integers(0, 256, size=3))) for k in range(SYNTH_SPRITES)]
    return bgs, sprites


def _paint(img, grid, look, x, y, r):
    """Paint `look` (shape 0 disk, 1 square, 2 diamond: filled with a darker core; 3: hollow ring) of
    radius r px at (x, y) px into img (H, W, 3) in place; grid = (yy, xx) pixel coordinates."""
    shape, colour = look
    dx, dy = grid[1] - x, grid[0] - y
    if shape == 1:
        d = np.maximum(np.abs(dx), np.abs(dy))
    elif shape == 2:
        d = (np.abs(dx) + np.abs(dy)) / 1.3
    else:
        d = np.sqrt(dx ** 2 + dy ** 2)
    if shape == 3:
        img[(d <= r) & (d >= r * 0.6)] = colour
        return
    img[d <= r] = colour
    img[d <= r * 0.45] = tuple(c // 2 for c in colour)


def _distractor_path(rng, size, frames, m, speed):
    """(frames, 2) canvas positions (x, y) of the distractor: constant speed (px per frame), heading a
    random walk (DISTRACTOR_TURN rad per frame), reflected at the borders of the central 70 % of the frame."""
    lo, hi = 0.15 * size + m, 0.85 * size + m
    pos = rng.uniform(0.3, 0.7, size=2) * size + m
    heading = rng.uniform(0, 2 * math.pi) + np.cumsum(rng.normal(0, DISTRACTOR_TURN, size=frames))
    out = np.empty((frames, 2))
    for f in range(frames):
        out[f] = pos
        pos = pos + speed * np.array([math.cos(heading[f]), math.sin(heading[f])])
        pos = np.where(pos < lo, 2 * lo - pos, np.where(pos > hi, 2 * hi - pos, pos))  # bounce
    return out


def _synth_video(cls_name, bg, sprite, rng, size, frames):
    """uint8 (frames, size, size, 3): the object (look `sprite`) moving by `cls_name` during [t0, t1] over
    `bg`, a distractor ring wandering at half its speed, and camera jitter. Every random draw comes
    from `rng` in a fixed order, none from bg or sprite (motion is drawn the same way whatever the cue)."""
    m = max(2, size // 16)  # jitter margin: the canvas is size + 2m, the camera window moves inside it
    p = {"x": rng.uniform(0.38, 0.62) * size + m, "y": rng.uniform(0.38, 0.62) * size + m,
         "s": rng.uniform(0.8, 1.2), "amp": rng.uniform(0.3, 0.45) * size, "phase": rng.uniform(0, 2 * math.pi)}
    t0, t1 = rng.uniform(0, 0.25), rng.uniform(0.75, 1.0)  # the motion happens between t0 and t1 only
    radius = size / 10
    jit = np.cumsum(rng.integers(-1, 2, size=(frames, 2)), axis=0)  # camera random walk, same for all classes
    jit = np.clip(jit + rng.integers(-m, m + 1, size=2), -m, m)
    speed = p["amp"] / ((t1 - t0) * max(frames - 1, 1))  # the object's speed (px/frame) when it moves
    dist = _distractor_path(rng, size, frames, m, DISTRACTOR_SPEED * speed)
    grid = np.mgrid[0:size + 2 * m, 0:size + 2 * m]
    out = np.empty((frames, size, size, 3), np.uint8)
    for f in range(frames):
        u = min(max((f / max(frames - 1, 1) - t0) / (t1 - t0), 0.0), 1.0)
        x, y, s = _traj(cls_name, u, p)
        canvas = bg.copy()
        _paint(canvas, grid, DISTRACTOR_LOOK, dist[f, 0], dist[f, 1], DISTRACTOR_SIZE * radius)
        _paint(canvas, grid, sprite, x, y, radius * s)  # the actor in front
        oy, ox = m + jit[f, 0], m + jit[f, 1]
        out[f] = canvas[oy:oy + size, ox:ox + size]
    return out


def bias_cues(ci, n, classes, bias):
    """Backgrounds (cues) of the n videos of class `ci` in one static-bias list: round(bias * n) of them
    show the class's own background ci, spread evenly over the list; the others show the backgrounds of
    the other classes in turn (rotated by ci, so over all classes every background appears as a
    conflicting cue about equally often). bias = 0: the bias-conflicting list (never the own background)."""
    own = round(bias * n)
    cues, q = [], 0
    for j in range(n):
        if (j + 1) * own // n > j * own // n:  # Bresenham: `own` of the n positions, evenly spread
            cues.append(ci)
        else:
            cues.append((ci + 1 + (q + ci) % (classes - 1)) % classes)
            q += 1
    return cues


class SynthVideo(NamedTuple):
    """One planned video of the synthetic set: class id, number within its class (its group is number+1
    and its generator (seed, class, number)), background (= cue) and object look, and the lists it is in."""
    ci: int
    number: int
    background: int
    sprite: int
    lists: tuple  # e.g. ("trainlist02.txt", "testlist01.txt", ...)


def synthetic_plan(classes, videos_per_class, bias_train, bias_test, bias):
    """Every video of the set (SynthVideo), class by class: first the scene-balanced videos of splits 1-3,
    then the static-bias training list (splits 4 and 5), the in-distribution test list (split 4) and
    the bias-conflicting test list (split 5). Backgrounds and looks are fixed rules, not random draws."""
    plan = []
    for ci in range(classes):
        for i in range(videos_per_class):
            # Scene-balanced: video i = 4j + r is tested in split r+1 (r < 3). The background (j + r + ci)
            # cycles through the whole pool as j grows, for the test groups of every split and for the
            # training groups alike, so no background says "this class" or "not this class".
            j, r = divmod(i, 4)
            lists = tuple(f"testlist0{k}.txt" if r == k - 1 else f"trainlist0{k}.txt" for k in (1, 2, 3))
            plan.append(SynthVideo(ci, i, (j + r + ci) % classes, (2 * j + r + ci) % SYNTH_SPRITES, lists))
        number = videos_per_class
        for lists, n, frac in ((("trainlist04.txt", "trainlist05.txt"), bias_train, bias),
                               (("testlist04.txt",), bias_test, bias), (("testlist05.txt",), bias_test, 0.0)):
            for j, cue in enumerate(bias_cues(ci, n, classes, frac)):
                plan.append(SynthVideo(ci, number, cue, (j + ci) % SYNTH_SPRITES, lists))
                number += 1
    return plan


def write_synthetic(out, classes=4, videos_per_class=40, size=64, frames=32, seed=0, bias_train=None,
                    bias_test=None, bias=SYNTH_BIAS):
    """Write the synthetic motion set in the official UCF101 layout under `out`:
    out/UCF-101/<Class>/v_<Class>_gXX_c01.avi, out/ucfTrainTestlist/{classInd.txt, trainlist0K.txt,
    testlist0K.txt} for K = 1..5 (CRLF, 1-based ids) and out/synth_meta.json (per video: class,
    background = its static cue, object look, lists).
    Splits 1-3: videos_per_class videos per class, scene-balanced; video i is tested in split (i % 4) + 1
    (a quarter each; i % 4 == 3 is always in training). Splits 4/5 (static-bias, see above): bias_train
    training videos per class (default 3/2 x videos_per_class), bias_test per class in each test list
    (default 3/4 x videos_per_class); `bias` is the fraction showing the class's own background in the
    training and in-distribution lists. Defaults: 4 classes -> 160 + 240 + 120 + 120 videos.
    Same arguments -> byte-identical files."""
    bias_train = videos_per_class * 3 // 2 if bias_train is None else bias_train
    bias_test = max(1, videos_per_class * 3 // 4) if bias_test is None else bias_test
    if not 2 <= classes <= len(MOTIONS):
        raise ValueError(f"--classes must be 2..{len(MOTIONS)} (motions: {MOTIONS}), got {classes}")
    if size % 2 or size < 16:
        raise ValueError(f"--size must be even and >= 16, got {size}")
    if frames < 2 or videos_per_class < 1 or bias_train < 1 or bias_test < 1:
        raise ValueError("--frames must be >= 2, and --videos-per-class, --bias-train, --bias-test >= 1")
    if not 0.0 <= bias <= 1.0:
        raise ValueError(f"--bias must be a fraction in [0, 1], got {bias}")
    m = max(2, size // 16)
    bgs, sprites = synthetic_pool(seed, size + 2 * m, classes)
    names = MOTIONS[:classes]
    lists = os.path.join(out, "ucfTrainTestlist")
    os.makedirs(lists, exist_ok=True)
    lines = {f"{w}list0{k}.txt": [] for k in SYNTH_SPLITS for w in ("train", "test")}
    meta = {"seed": seed, "size": size, "frames": frames, "classes": list(names), "backgrounds": classes,
            "sprites": SYNTH_SPRITES, "bias": bias, "videos": {},
            "cue": "background: background k is the cue of class k (classes[k]); splits 4/5 are static-bias"}
    for v in synthetic_plan(classes, videos_per_class, bias_train, bias_test, bias):
        cname = names[v.ci]
        rel = f"{cname}/v_{cname}_g{v.number + 1:02d}_c01.avi"
        os.makedirs(os.path.join(out, "UCF-101", cname), exist_ok=True)
        video = _synth_video(cname, bgs[v.background], sprites[v.sprite],
                             np.random.default_rng([seed, v.ci, v.number]), size, frames)
        write_video(os.path.join(out, "UCF-101", cname, os.path.basename(rel)), video)
        meta["videos"][rel] = {"class": cname, "background": v.background, "sprite": v.sprite,
                               "lists": list(v.lists)}
        for name in v.lists:
            lines[name].append(f"{rel} {v.ci + 1}" if name.startswith("train") else rel)

    def put(fname, rows):
        with open(os.path.join(lists, fname), "w", newline="") as f:
            f.write("".join(ln + "\r\n" for ln in rows))  # CRLF like the official lists

    put("classInd.txt", [f"{i + 1} {c}" for i, c in enumerate(names)])
    for fname, rows in lines.items():
        put(fname, rows)
    with open(os.path.join(out, "synth_meta.json"), "w") as f:  # written last: marks a complete set
        json.dump(meta, f, indent=1, sort_keys=True)
    return out


def static_cue_agreement(root, split, train):
    """Fraction of the videos of one list of the synthetic set at `root` whose background (static cue) is
    their own class's, from synth_meta.json: ~SYNTH_BIAS for split 4/5 training and split 4 test, 0 for
    split 5 test, ~1/classes for splits 1-3. Lets tests and bench.py check the correlation."""
    with open(os.path.join(root, "synth_meta.json")) as f:
        meta = json.load(f)
    classes, samples = parse_ucf101(root, split, train, name="synthetic")
    videos = os.path.join(root, "UCF-101")
    hits = 0
    for path, label in samples:
        v = meta["videos"][os.path.relpath(path, videos).replace(os.sep, "/")]
        hits += v["background"] == label
    return hits / len(samples)


def default_synthetic_root():
    """Where the synthetic set lives when no --data-root is given (written there on first use)."""
    return os.path.join(os.path.expanduser("~"), ".cache", "dynamic-appearance", "synth-v4")


def ensure_synthetic(root, **kwargs):
    """`root` holding a complete synthetic set: written (defaults or `kwargs`) if `root` does not exist.
    Written into a temporary sibling folder, then renamed, so an interrupted write never looks complete
    (and concurrent ranks do not collide: the loser of the rename uses the winner's set)."""
    if os.path.isfile(os.path.join(root, "synth_meta.json")):
        return root
    if os.path.exists(root) and os.listdir(root):
        raise layout_error("synthetic", root, "the folder exists but holds no complete synthetic set "
                                              "(no synth_meta.json); delete it or pick another --data-root")
    parent = os.path.dirname(os.path.abspath(root))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".synth-tmp-", dir=parent)
    try:
        write_synthetic(tmp, **kwargs)
        if os.path.isdir(root):
            os.rmdir(root)  # an empty folder
        os.rename(tmp, root)
    except OSError:
        if not os.path.isfile(os.path.join(root, "synth_meta.json")):
            raise
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return root


# ---------------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------------

def _check_video(path):
    """(header count, decodable count) of one video, fully decoded, then read as a test clip would be."""
    header, true = count_frames(path), decodable_frames(path)
    if true < 1:
        raise ValueError("no frames")
    read_frames(path, sparse_indices(true, 3, 2, False), true)
    return header, true


def inspect(name, data_root, split=1, limit=500):
    """Print classes, split sizes, how many videos decode, the decodable frame-count range, and every
    checked video whose header frame count differs from the frames that decode. Those counts go into the
    dataset's count cache, so training starts with them."""
    for train in (True, False):
        classes, samples = parse_dataset(name, data_root, split, train)
        cache = count_cache_path(data_root or default_synthetic_root())
        known = cached_counts(cache)
        if train:
            print(f"{name} split {split}: {len(classes)} classes ({', '.join(classes[:5])}{', ...' if len(classes) > 5 else ''})")
        which = "train" if train else "test"
        check = samples if not limit or limit >= len(samples) else [samples[i] for i in
                                                                     np.linspace(0, len(samples) - 1, limit).astype(int)]
        counts, bad, differ = [], [], []
        for path, _ in check:
            try:
                header, true = _check_video(path)
            except Exception as e:  # noqa: BLE001
                bad.append(f"{path}: {type(e).__name__}: {e}")
                continue
            counts.append(true)
            if true != header:
                differ.append(f"{path}: header {header} frames, {true} decode")
                if known.get(os.path.abspath(path)) != true:
                    append_count(cache, path, true)
        rng_txt = f"frames {min(counts)}..{max(counts)} (median {int(np.median(counts))})" if counts else "no frames"
        print(f"  {which}: {len(samples)} videos; checked {len(check)}: {len(counts)} decode, {len(bad)} fail, "
              f"{len(differ)} with a wrong header frame count; decodable {rng_txt}")
        for b in bad[:10]:
            print(f"    FAIL {b}")
        for d in differ:
            print(f"    COUNT {d}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("synth", help="write the synthetic motion set (UCF101 layout)")
    s.add_argument("--out", required=True)
    s.add_argument("--classes", type=int, default=4)
    s.add_argument("--videos-per-class", type=int, default=40)
    s.add_argument("--size", type=int, default=64)
    s.add_argument("--frames", type=int, default=32)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--bias", type=float, default=SYNTH_BIAS,
                   help="static-bias split: fraction of training videos showing their class's background")
    s.add_argument("--bias-train", type=int, default=None,
                   help="static-bias training videos per class (default 3/2 x --videos-per-class)")
    s.add_argument("--bias-test", type=int, default=None,
                   help="videos per class in each static-bias test list (default 3/4 x --videos-per-class)")
    i = sub.add_parser("inspect", help="check that a dataset is in place")
    i.add_argument("--dataset", required=True, choices=DATASETS)
    i.add_argument("--data-root", default=None)
    i.add_argument("--split", type=int, default=1)
    i.add_argument("--limit", type=int, default=500, help="decode-check at most N videos per split (0: all)")
    a = ap.parse_args(argv)
    if a.cmd == "synth":
        try:
            write_synthetic(a.out, a.classes, a.videos_per_class, a.size, a.frames, a.seed, a.bias_train,
                            a.bias_test, a.bias)
        except ValueError as e:
            raise SystemExit(f"synth: {e}")
        print(f"wrote {a.classes} classes ({a.size}px, {a.frames} frames) to {a.out}: splits 1-3 "
              f"{a.videos_per_class} videos per class, static-bias splits 4/5 "
              f"(training cue agreement {static_cue_agreement(a.out, 4, True):.2f})")
    else:
        try:
            inspect(a.dataset, a.data_root, a.split, a.limit)
        except (FileNotFoundError, ValueError) as e:  # layout problems: the message is the whole story
            raise SystemExit(f"inspect: {e}")


if __name__ == "__main__":
    main()
