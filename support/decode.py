"""Decoding: the frames a clip needs, read from the datasets' own video files with PyAV (or from
folders of JPEG frames), so nobody extracts frames before training. The paper says nothing about
decoding; data.py calls read_frames and count_frames and may skip this file.

What a frame index means: index n is the n-th frame that decodes, always. Seeking only saves decoding
time; it is used where it provably lands on the frame a count from the start would reach.
A container header can over-count frames (a real UCF101 .avi says 444 and decodes 68): read_frames then
raises ShortVideo with the decodable count rather than pad a clip with copies of the last frame.

    read_frames(path, indices, num_frames=None) -> uint8 (N, H, W, 3)   (may raise ShortVideo)
    count_frames(path)       the header's count (images in a frame folder)
    decodable_frames(path)   a full decode's count, the truth
    check_video(path)        (header count, decodable count), reading a test clip too (data.py inspect)
"""
import os
import re

import av
import numpy as np

IMAGE_EXTS = (".jpg", ".jpeg", ".png")
# Seek only when it skips decoding at least this many frames: a seek re-reads the container index and
# flushes the decoder, which costs about as much as decoding a few frames (our choice, see
# docs/OPERATIONS.md, fast input).
SEEK_MIN_SKIP = 16


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


def check_video(path):
    """(header count, decodable count) of one video, fully decoded, then read as a test clip would be
    (3 centred pairs of consecutive frames, which takes the seeking path on a long video)."""
    header, true = count_frames(path), decodable_frames(path)
    if true < 1:
        raise ValueError("no frames")
    tick = max(true - 1, 1) / 3
    read_frames(path, [int(tick * (k + 0.5)) + d for k in range(3) for d in (0, 1)], true)
    return header, true
