"""Video data for Dynamic Appearance: which frames a clip takes, how they are decoded, cropped and
normalised, and the dataset and loaders that feed train.py and evaluate.py.

Beside the paper (equation and setting numbers as in EQUATIONS.md at the repository root)
-----------------------------------------------------------------------------------------
* A clip is S segments x T frames ("DA_{SxT}", Sec. 3). PWTP (pwtp.py) turns each segment of T
  *consecutive* RGB frames into one dynamic-appearance frame, so every sampler here gives T consecutive
  frames per segment.
* Sec. 4: "For SS V1, UCF101 and HMDB51, we use the sparse sampling strategy in TSN ... For K400, we
  perform dense sampling":
    sparse_indices  the video is cut into S equal parts and T consecutive frames are taken from each;
                    random offset when training, centred when testing;
    dense_indices   S*T consecutive frames; random start when training, evenly spaced clips when testing.
* Appendix A, training: TSN's multi-scale crop (multiscale_crop_box) and a horizontal flip, except on
  Something-Something, whose labels have a direction (NO_FLIP).
* Appendix A, testing: one clip x centre crop for ablations; 3 crops x N clips, softmax averaged, for
  accuracy (eval_crop_boxes; a test item carries every view, evaluate.py averages them).
* The backbones start from ImageNet weights, so frames get ImageNet's mean and std (normalize).
The paper says nothing about decoding; we read the datasets' own video files with PyAV and decode only
the frames a clip needs (read_frames), so nobody extracts frames before training.

Reading order: sampling; decoding; transforms; VideoDataset; samplers and loaders; the command line.
Not the paper, kept in support/ (a reader may skip it): where each dataset's official archive keeps its
videos and split lists (layouts.py), the cache of true frame counts (framecounts.py), the bookkeeping of
unreadable videos and the loader workers' signals (loading.py), the synthetic benchmark set
(synthetic.py) and `prepare`, which re-encodes videos for fast seeking (prepare.py).

No silently wrong results:
  * An index means the n-th decodable frame of a video, always (seeking only saves decoding time).
  * A container header can over-count frames (a real UCF101 .avi says 444 and decodes 68). read_frames
    raises ShortVideo rather than pad a clip with copies of the last frame; VideoDataset then samples again
    from the decodable count, warns once per video and remembers the count beside the dataset.
  * At test time an unreadable video is never replaced by another (and its label): its item is
    (zeros, -1), label -1 meaning "unreadable", and VideoDataset.unreadable() lists it.

Public API (what train.py, evaluate.py, visualize.py, bench.py and the tests use):
  build_dataset(name, data_root, split, train, segments, frames, crop_size, clips, crops, seed, substitute)
      -> VideoDataset: train item (clip float (S*T, C, H, W), label), test item (clip (V, S*T, C, H, W),
      label) with V = clips x crops views; ImageNet-normalised; label -1: unreadable (test protocol)
  build_loaders(dataset, data_root, split, segments, frames, crop_size, batch_size, workers, subset,
                overfit, seed, clips, crops) -> Loaders(train, val, num_classes, classes, train_sampler)
  sparse_indices, dense_indices, read_frames (may raise ShortVideo), count_frames (the header's count),
  decodable_frames (a full decode's count)
CLI:
  python data.py synth   --out DIR [--classes 4 --videos-per-class 40 --size 64 --frames 32 --seed 0
                                    --bias 0.9 --bias-train N --bias-test N --no-jitter --crossed N]
  python data.py inspect --dataset NAME --data-root DIR [--split K] [--limit N]
  python data.py prepare --data-root DIR [--out DIR2] [--frames] [--gop 8] [--workers N]
  (loader throughput: bench.py's loader_vs_step row)
"""
import argparse
import math
import os
import re
import warnings
from typing import NamedTuple

import av
import numpy as np
import torch
import torch.nn.functional as F

from support import framecounts, layouts, loading, prepare, synthetic
from support.system import distributed  # the one rule for "several ranks"
from support.loading import SkippedVideoWarning  # noqa: F401 - warned by VideoDataset, caught by its users

# ImageNet statistics: the ResNet/TSM and ViT backbones are ImageNet-pretrained (Appendix A).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_EXTS = (".jpg", ".jpeg", ".png")
# TSN multi-scale crop: the crop side is one of these fractions of the short side (height and width may
# differ by at most one step), then the crop is resized to crop_size x crop_size.
MULTISCALE = (1.0, 0.875, 0.75, 0.66)
# Seek only when it skips decoding at least this many frames: a seek re-reads the container index and
# flushes the decoder, which costs about as much as decoding a few frames (our choice, see bench.py).
SEEK_MIN_SKIP = 16
DATASETS = layouts.DATASETS  # the --dataset choices: one official archive layout each
DENSE_DATASETS = ("kinetics400", "minikinetics")  # Sec. 4: dense sampling for Kinetics
# No horizontal flip where labels have a direction: Something-Something ("pushing something from left
# to right", Appendix A) and the synthetic set (MoveRight vs MoveLeft): a flip would swap two classes.
NO_FLIP = ("sthv1", "synthetic")

# ========== Frame sampling =======================================================================
# Indices only: pure functions of their arguments and the rng.
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


# ========== Decoding =============================================================================
# PyAV for video files, PIL for JPEG frame folders. Both return uint8 (N, H, W, 3).
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


def _natural(name):
    """Sort key that reads digit runs as numbers: 1.png, 2.png, ..., 10.png (as TSM's and mmaction2's
    frame templates number them), also for zero-padded names."""
    return [(0, int(t), "") if t.isdigit() else (1, 0, t.lower()) for t in re.split(r"(\d+)", name)]


def _frame_files(folder):
    names = sorted((f for f in os.listdir(folder) if os.path.splitext(f)[1].lower() in IMAGE_EXTS), key=_natural)
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


def _decode_counting(container, stream, wanted):
    """Decode from the start; frame n is the n-th frame that decodes, by definition. Picks the frames whose
    index is in sorted `wanted` and stops after the last one. Returns (picked, last, decoded): picked =
    {index: array}; last = the last decoded frame's array when the stream ended before some wanted index
    (else None); decoded = how many frames were decoded. Only frames that are used are converted to RGB
    (the conversion costs about as much as the decode)."""
    out, ptr, count, frame = {}, 0, 0, None
    for frame in _frames(container, stream):
        while ptr < len(wanted) and wanted[ptr] == count:
            out[count] = frame.to_ndarray(format="rgb24")
            ptr += 1
        count += 1
        if ptr == len(wanted):
            return out, None, count
    if frame is None:
        return out, None, 0
    return out, out[count - 1] if count - 1 in out else frame.to_ndarray(format="rgb24"), count


def _time_grid(container, stream):
    """(pts of frame 0, ticks per frame, sorted key-frame indices, frame count) when the stream's packets
    sit on a regular time grid (frame n at pts0 + n*step, every step filled), else None. Read from the
    packets alone: demuxing costs a small fraction of decoding."""
    pts, keys = [], []
    for p in container.demux(stream):
        if p.size > 0:  # empty packets (an AVI's "dropped frame" chunks) hold no frame
            if p.pts is None:
                return None
            pts.append(p.pts)
            keys.append(p.is_keyframe)
    order = np.argsort(pts, kind="stable")
    pts, keys = np.asarray(pts, np.int64)[order], np.asarray(keys, bool)[order]
    if len(pts) < 2 or pts[1] <= pts[0] or (np.diff(pts) != pts[1] - pts[0]).any():
        return None
    return int(pts[0]), int(pts[1] - pts[0]), np.flatnonzero(keys), len(pts)


def _decode_seeking(container, stream, wanted, grid):
    """The frames at sorted `wanted` indices of a stream on a regular time grid (_time_grid): before each
    wanted frame, seek to its key frame when that skips at least SEEK_MIN_SKIP frames, then decode
    forward. Index = (pts - pts0) / step, which is the decode count only if every grid step yields
    exactly one frame: any decoded frame off the grid, out of sequence, or a missing one (a packet that
    decodes to nothing) returns None, and the caller counts from the start instead."""
    pts0, step, keys, _ = grid
    want, out, pos, frames = set(wanted), {}, -1, None  # pos: index of the last decoded frame
    for w in wanted:
        k = np.searchsorted(keys, w, side="right") - 1
        key = int(keys[k]) if k >= 0 else 0
        if frames is None or key - (pos + 1) >= SEEK_MIN_SKIP:
            container.seek(pts0 + key * step, stream=stream, backward=True, any_frame=False)
            frames, pos = _frames(container, stream), None
        while pos is None or pos < w:
            frame = next(frames, None)
            if frame is None or frame.pts is None:
                return None
            i, off = divmod(int(frame.pts) - pts0, step)
            if off or (i != pos + 1 if pos is not None else not 0 <= i <= w):
                return None
            pos = i
            if i in want:
                out[i] = frame.to_ndarray(format="rgb24")
    return out


def _read_images(folder, indices):
    """Frame folder: images via PIL (in numeric name order), indices past the end clamped to the last."""
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

    Index n is the n-th frame that decodes, always. Seeking (_decode_seeking) only saves decoding: it is
    used when the packets' time stamps are a regular grid with one packet per frame of the expected
    length, and is checked frame by frame; otherwise (variable frame rate, empty chunks, a count learned
    shorter than the header) the frames are counted from the start. Indices at or past the video's length
    (`num_frames`, the count the caller sampled from; by default the container's header count) repeat the
    last frame. If the stream ends BEFORE a wanted index below that length, raise ShortVideo (carrying
    the decodable count) rather than pad. Frame folders: see _read_images."""
    indices = [int(i) for i in indices]
    if os.path.isdir(path):
        return _read_images(path, indices)
    with av.open(path) as container:
        stream = _video_stream(container, path)
        length = num_frames or stream.frames or None  # frames that should exist (None: unknown)
        if length:
            indices = [min(i, length - 1) for i in indices]
        wanted = sorted(set(indices))
        out = None
        if wanted[-1] >= SEEK_MIN_SKIP:  # something to skip: try the seeking path
            try:
                grid = _time_grid(container, stream)
                if grid is not None and grid[3] == length:
                    out = _decode_seeking(container, stream, wanted, grid)
            except av.error.FFmpegError:
                out = None  # e.g. a truncated file has no index to seek with
    if out is None:
        with av.open(path) as container:
            out, last, decoded = _decode_counting(container, _video_stream(container, path), wanted)
        if decoded == 0:
            raise ValueError(f"{path}: no decodable frames")
        if length and last is not None:
            raise ShortVideo(path, decoded, length)
        out.update({w: last for w in wanted if w not in out})  # length unknown: past the end = last frame
    return np.stack([out[i] for i in indices])


# ========== Transforms ===========================================================================
# uint8 frames (N, H, W, 3) -> float (N, 3, h, w). Every crop is one box for all frames of a clip
# (the same spatial window in every frame, or the motion would be corrupted).
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


# ========== The dataset ==========================================================================
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
    kept in shared memory for every worker, appended to `count_cache` (a file, see support/framecounts.py;
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
        self._skips = loading.SkipLog([p for p, _ in self.samples], name, substitute)  # over all workers
        self._warned = set()  # short videos already warned about in this process
        # Frame counts in shared memory (-1 = not yet known): a count found by one DataLoader worker is
        # seen by every worker and by later epochs' workers, so each video's header is read once per run
        # rather than once per worker per epoch (a second file open per item on a cold cache).
        known = framecounts.known_counts(count_cache, [p for p, _ in self.samples])  # learned in earlier runs
        self._frame_counts = torch.tensor(known, dtype=torch.int64).share_memory_()

    def __len__(self):
        return len(self.samples)

    def set_epoch(self, epoch):
        self.epoch = int(epoch)

    @property
    def skipped(self):
        """collections.Counter path -> how many times it was skipped (all workers, this dataset object)."""
        return self._skips.skipped()

    def unreadable(self):
        """Sorted paths of the videos that failed to read (in any worker of this dataset object)."""
        return sorted(self.skipped)

    def report_skipped(self):
        """A one-line summary of skipped videos ('' if none), for train.py to print once per epoch."""
        return self._skips.report()

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
            framecounts.append_count(self.count_cache, path, err.decoded)  # so later runs know it at once
        if path not in self._warned:
            self._warned.add(path)
            kept = f"; count cached in {self.count_cache}" if self.count_cache else ""
            warnings.warn(f"{self.name}: {path}: the header says {err.expected} frames but only {err.decoded} "
                          f"decode; its clips are sampled from those {err.decoded}{kept}", ShortVideoWarning)

    def __getitem__(self, index):
        """A corrupt, empty or unreadable video never stops a run: it is counted in `skipped`, warned about
        (training: once per path per epoch and process; test: once per path), and then either replaced
        (substitute=True, see _substitute) or returned as (zeros, -1) (substitute=False)."""
        err = RuntimeError("failed earlier in this process")
        if index not in self._skips.bad:
            try:
                return self.load(index)
            except Exception as e:  # noqa: BLE001 - any decode/IO failure means "skip this video"
                err = e
        self._skips.note(index, err, self.epoch)
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
            if j == index or j in self._skips.bad:
                continue
            try:
                return self.load(j, index)
            except Exception as e:  # noqa: BLE001
                self._skips.note(j, e, self.epoch)
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
    classes, samples = layouts.parse_dataset(name, data_root, split, train)  # the archive's own layout
    root = data_root or synthetic.default_synthetic_root()  # only synthetic may come without a root
    return VideoDataset(samples, classes, train, segments, frames, crop_size, clips if not train else 1,
                        crops if not train else 1, seed, dense=name in DENSE_DATASETS, flip=name not in NO_FLIP,
                        name=name, substitute=substitute,
                        count_cache=framecounts.count_cache_path(root))  # true counts of short videos


# ========== Samplers and loaders =================================================================
def _rank_world(rank=None, world_size=None):
    """(rank, world size): the given ones, else torch.distributed's when it is initialised, else (0, 1)."""
    r, w = 0, 1
    if distributed():
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
    init = loading.worker_init_fn()  # seeded workers that outlive a scheduler's SIGTERM, never an exit
    common = dict(num_workers=workers, pin_memory=pin, worker_init_fn=init,
                  persistent_workers=False, generator=torch.Generator().manual_seed(seed))
    train = torch.utils.data.DataLoader(train_ds, batch_size=batch_size, sampler=sampler, drop_last=False, **common)
    val = torch.utils.data.DataLoader(val_ds, batch_size=max(1, batch_size // (clips * crops)),
                                      sampler=ShardSampler(len(val_ds)), drop_last=False, **common)
    return Loaders(train, val, len(classes), list(classes), sampler)


# ========== Command line =========================================================================
# Write the synthetic set, check a dataset in place, prepare it for fast loading.
def _check_video(path):
    """(header count, decodable count) of one video, fully decoded, then read as a test clip would be."""
    header, true = count_frames(path), decodable_frames(path)
    if true < 1:
        raise ValueError("no frames")
    read_frames(path, sparse_indices(true, 3, 2, False), true)
    return header, true


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    synthetic.add_arguments(sub.add_parser("synth", help="write the synthetic motion set (support/synthetic.py)"))
    i = sub.add_parser("inspect", help="check that a dataset is in place")
    i.add_argument("--dataset", required=True, choices=DATASETS)
    i.add_argument("--data-root", default=None)
    i.add_argument("--split", type=int, default=1)
    i.add_argument("--limit", type=int, default=500, help="decode-check at most N videos per split (0: all)")
    prepare.add_arguments(sub.add_parser("prepare", help="re-encode videos with frequent key frames, or extract "
                                                         "their frames, for fast loading (support/prepare.py)"))
    args = ap.parse_args(argv)
    try:
        if args.cmd == "synth":
            synthetic.main(args)  # the project's benchmark set, in UCF101's layout
        elif args.cmd == "inspect":  # decodes every checked video; wrong header counts go into the cache
            layouts.inspect(args.dataset, args.data_root, args.split, args.limit, check=_check_video)
        else:  # dense-encoded videos or frame folders: seeking costs at most gop - 1 frames per segment
            prepare.prepare(args.data_root, args.out, args.frames, args.gop, args.workers)
    except (FileNotFoundError, ValueError) as e:  # bad flags or layout problems: the message is the story
        raise SystemExit(f"{args.cmd}: {e}")


if __name__ == "__main__":
    main()
