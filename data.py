"""Video data for Dynamic Appearance: which frames a clip takes, how they are cropped and normalised,
and the dataset and loaders that feed train.py and evaluate.py.

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
* The backbones start from ImageNet weights, so frames get ImageNet's mean and std (normalize), from the
  model itself (DAModel.forward, on its device): items stay uint8, a quarter of float32's bytes to move.

Reading order: sampling; transforms; VideoDataset; the loaders; the command line.
Not the paper, kept in support/ (a reader may skip it): decoding the datasets' own video files with
PyAV, only the frames a clip needs (decode.py: read_frames, count_frames, and why a frame index always
means the n-th decodable frame); the archives' layouts (layouts.py); the true frame counts of videos
whose header over-counts (framecounts.py); unreadable videos, the resumable and sharded samplers, the
workers' signals and their batches through shared memory (loading.py); the synthetic set; `prepare`.

Public API (what train.py, evaluate.py, visualize.py, bench.py and the tests use):
  build_dataset(name, data_root, split, train, segments, frames, crop_size, clips, crops, seed, substitute)
      -> VideoDataset: train item (clip uint8 (S*T, C, H, W), label), test item (clip uint8 (V, S*T, C, H, W),
      label) with V = clips x crops views; pixels, normalised by the model; label -1: unreadable (test protocol)
  build_loaders(dataset, data_root, split, segments, frames, crop_size, batch_size, workers, subset, overfit,
                seed, clips, crops) -> Loaders(train, val, num_classes, classes, train_sampler)
CLI:
  python data.py synth   --out DIR [--classes 4 --videos-per-class 40 --size 64 --frames 32 --seed 0
                                    --bias 0.9 --bias-train N --bias-test N --no-jitter --crossed N]
  python data.py inspect --dataset NAME --data-root DIR [--split K] [--limit N]
  python data.py prepare --data-root DIR [--out DIR2] [--frames [png|jpg]] [--gop 8] [--workers N]
"""
import argparse
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from support import layouts, prepare, synthetic  # the archives' layouts, fast input, the synthetic set
# Not the paper: decoding with PyAV, true frame counts, unreadable videos, resumable and sharded samplers.
from support.decode import ShortVideo, count_frames, decodable_frames, open_video, read_frames  # noqa: F401
from support.framecounts import FrameCounts, ShortVideoWarning, count_cache_path  # noqa: F401
from support.loading import ResumableSampler, ShardSampler, SkipLog, SkippedVideoWarning, data_loader  # noqa: F401

# ImageNet statistics: the ResNet/TSM and ViT backbones are ImageNet-pretrained (Appendix A).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# TSN multi-scale crop: the crop side is one of these fractions of the short side (height and width may
# differ by at most one step), then the crop is resized to crop_size x crop_size.
MULTISCALE = (1.0, 0.875, 0.75, 0.66)
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


# ========== Transforms ===========================================================================
# uint8 frames (N, H, W, 3) -> uint8 (N, 3, h, w). Every crop is one box for all frames of a clip
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
    return [(int(round((h - short) * pos)), int(round((w - short) * pos)), short, short) for pos in (0.0, 0.5, 1.0)]


def crop_pixels(frames, box, size, flip=False):
    """uint8 (N, H, W, 3) -> uint8 (N, 3, size, size), channels-last in memory as the decoder left it:
    crop `box`, bilinear resize (torch's vectorised antialiased uint8 kernel: much faster than float, same
    result to 1/255), flip. No transposing copy: it would cost a loader worker as much as the resize,
    and the model makes the clip contiguous on its own device (DAModel.forward)."""
    y0, x0, ch, cw = box
    x = torch.from_numpy(frames[:, y0:y0 + ch, x0:x0 + cw]).permute(0, 3, 1, 2)  # (N, 3, ch, cw), a view
    if (ch, cw) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return (x.flip(-1) if flip else x).contiguous(memory_format=torch.channels_last)  # copies only a bare view


def crop_resize(frames, box, size, flip=False):
    """crop_pixels as float (N, 3, size, size) in [0, 1], contiguous, for code that draws or mixes frames."""
    return crop_pixels(frames, box, size, flip).contiguous().float().div_(255.0)


_MEAN, _STD = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)


def normalize(x):
    """ImageNet mean/std normalisation of frames (..., 3, H, W) on x's device: uint8 pixels -> a new float
    tensor (what DAModel.forward does to a clip); float frames in [0, 1] -> in place."""
    x = x.float().div_(255.0) if x.dtype == torch.uint8 else x
    mean, std = _MEAN.to(x.device), _STD.to(x.device)
    return x.sub_(mean).div_(std) if not x.requires_grad else (x - mean) / std


# ========== The dataset ==========================================================================
class VideoDataset(torch.utils.data.Dataset):
    """(clip, label) items from a list of (path, label) samples.

    Randomness (sampling offsets, crop, flip) comes from numpy Generator seeded with (seed, epoch, index):
    an item is a pure function of those, whatever the worker count or order -> exact mid-epoch resume.

    Not the paper (support/): unreadable videos (corrupt, empty, no frames) are counted in `skipped` and
    warned about, then replaced by another readable sample (substitute=True, training) or, in the test
    protocol (substitute=False), returned as (zeros of the clip's shape, label -1), which evaluation
    leaves out and reports (`unreadable()` lists them). A video whose header over-counts its frames is
    sampled again from the decodable count, learned once and kept in `count_cache` (framecounts.py).
    """

    def __init__(self, samples, classes, train=True, segments=8, frames=8, crop_size=224, clips=1, crops=1,
                 seed=0, dense=False, flip=True, name="list", substitute=True, count_cache=None):
        if not samples:
            raise ValueError(f"{name}: the split has no videos")
        if train and (clips != 1 or crops != 1):
            raise ValueError("clips/crops are test-time views; training takes one random view")
        self.samples, self.classes = list(samples), list(classes)
        self.train, self.segments, self.frames = train, segments, frames
        self.crop_size, self.clips, self.crops = crop_size, clips, crops
        self.seed, self.dense, self.flip, self.name = seed, dense, flip, name
        self.substitute, self.count_cache, self.epoch = substitute, count_cache, 0
        paths = [p for p, _ in self.samples]
        self._skips = SkipLog(paths, name, substitute, seed)  # unreadable videos, counted over all workers
        self._counts = FrameCounts(paths, count_cache, name)  # frame counts shared by all workers

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

    @property
    def item_shape(self):  # a clip's shape: (S*T, 3, crop, crop) in training, (V, S*T, 3, crop, crop) at test
        L, c = self.segments * self.frames, self.crop_size
        return (L, 3, c, c) if self.train else (self.clips * self.crops, L, 3, c, c)

    def num_frames(self, index):
        """Frame count F of sample `index` (the decodable count once known, else the header's)."""
        return self._counts.get(index)

    def _indices(self, num, rng, clip=0):
        if self.dense:
            return dense_indices(num, self.segments * self.frames, self.train, rng, clip, self.clips)
        return sparse_indices(num, self.segments, self.frames, self.train, rng, clip, self.clips)

    def _decode(self, index, rng):
        """uint8 frames (clips*S*T, H, W, 3) of sample `index`, every temporal clip from one container open
        (raises ShortVideo on a short video: the header over-counted)."""
        with open_video(self.samples[index][0]) as video:  # PyAV or a frame folder (support/decode.py)
            num = self._counts.get(index, video)  # F: the decodable count once learned, else the header's
            if num < 1:
                raise ValueError("the video has no frames")
            return video.read(np.concatenate([self._indices(num, rng, c) for c in range(self.clips)]), num)

    def _clip(self, index, rng):
        """Sample, decode and transform one clip of sample `index`."""
        frames = self._decode(index, rng)  # (clips*S*T, H, W, 3) uint8; one clip in training
        if self.train:
            box = multiscale_crop_box(frames.shape[1], frames.shape[2], rng)
            flip = self.flip and bool(rng.integers(2))
            return crop_pixels(frames, box, self.crop_size, flip)  # (S*T, 3, H, W) uint8
        L = self.segments * self.frames  # test: every clip x crop view
        boxes = eval_crop_boxes(frames.shape[1], frames.shape[2], self.crop_size, self.crops)
        views = [crop_pixels(frames[c * L:(c + 1) * L], b, self.crop_size) for c in range(self.clips) for b in boxes]
        return torch.stack([v.permute(0, 2, 3, 1) for v in views]).permute(0, 1, 4, 2, 3)  # (V, S*T, 3, H, W)

    def load(self, index, key=None):
        """(clip, label) of sample `index` with randomness from (seed, epoch, key) (key: the item asked
        for, `index` by default); raises if the video is unreadable."""
        key = index if key is None else key
        try:
            return self._clip(index, np.random.default_rng([self.seed, self.epoch, key])), self.samples[index][1]
        except ShortVideo as e:  # the header over-counts: sample again from the decodable count, same rng
            self._counts.learn(index, e)
            return self._clip(index, np.random.default_rng([self.seed, self.epoch, key])), self.samples[index][1]

    def __getitem__(self, index):
        # an unreadable video never stops a run: replaced (training) or (zeros, -1) (test protocol)
        return self._skips.item(index, self.load, self.epoch, self._unreadable_item)

    def _unreadable_item(self):
        return torch.zeros(self.item_shape, dtype=torch.uint8), -1


def build_dataset(name, data_root, split=1, train=True, segments=8, frames=8, crop_size=224, clips=1, crops=1,
                  seed=0, substitute=True):
    """The train or test split of dataset `name` read from its official layout at `data_root`.
    substitute: replace unreadable videos (training) or return them as (zeros, -1) (test protocol)."""
    classes, samples = layouts.parse_dataset(name, data_root, split, train)  # the archive's own layout
    if not samples:
        raise ValueError(f"{name} at {data_root}: split {split}'s {'training' if train else 'test'} list has no videos")
    root = data_root or synthetic.default_synthetic_root()  # only synthetic may come without a root
    return VideoDataset(samples, classes, train, segments, frames, crop_size, clips if not train else 1,
                        crops if not train else 1, seed, dense=name in DENSE_DATASETS, flip=name not in NO_FLIP,
                        name=name, substitute=substitute,
                        count_cache=count_cache_path(root))  # true counts of short videos


# ========== Loaders ==============================================================================
class Loaders(NamedTuple):
    train: torch.utils.data.DataLoader  # batches (clip uint8 (B, S*T, C, H, W), label (B,))
    val: torch.utils.data.DataLoader    # batches (clip uint8 (B, V, S*T, C, H, W), label (B,))
    num_classes: int
    classes: list
    train_sampler: ResumableSampler


def build_loaders(dataset, data_root, split=1, segments=8, frames=8, crop_size=224, batch_size=8, workers=2,
                  subset=None, overfit=None, seed=0, clips=1, crops=1):
    """Train and val DataLoaders for dataset `dataset`.

    subset=N: N training videos drawn at random (seeded); val stays the full test split.
    overfit=N: N training videos (seeded pick) for both train and val; val uses the test transforms.
    Val batches hold max(1, batch_size // V) items of V = clips*crops views (about a train batch's clips).
    Training replaces unreadable videos; validation follows the test protocol (label -1, see VideoDataset)."""
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
    sampler = ResumableSampler(train_ds, batch_size, seed=seed, shuffle=True, drop_last=True)
    # seeded workers that outlive a scheduler's SIGTERM and hand batches over through shared memory
    train = data_loader(train_ds, batch_size, sampler, workers, train_ds.item_shape, seed)
    val = data_loader(val_ds, max(1, batch_size // (clips * crops)), ShardSampler(len(val_ds)), workers,
                      val_ds.item_shape, seed)
    return Loaders(train, val, len(classes), list(classes), sampler)


# ========== Command line =========================================================================
def main(argv=None):
    """Write the synthetic set, check a dataset in place, prepare it for fast loading."""
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
            layouts.inspect(args.dataset, args.data_root, args.split, args.limit)
        else:  # dense-encoded videos or frame folders: seeking costs at most gop - 1 frames per segment
            prepare.main(args)  # exits non-zero, naming them, if any video failed
    except (FileNotFoundError, ValueError) as e:  # bad flags or layout problems: the message is the story
        raise SystemExit(f"{args.cmd}: {e}")


if __name__ == "__main__":
    main()
