"""Decoding: the frames a clip needs, read from the datasets' own video files with PyAV (or from
folders of frame images), so nobody extracts frames before training. The paper says nothing about
decoding; data.py calls read_frames and count_frames and may skip this file.

What a frame index means: index n is the n-th frame that decodes from the start of the file, always,
whatever other indices a call asks for. Decoding from a key frame instead of the start only saves time,
and is used where it provably yields the frames a count from the start would reach (Video._jumping).
A container header can over-count frames (a real UCF101 .avi says 444 and decodes 68; a cut that starts
mid-GOP has packets that decode to nothing): read_frames then raises ShortVideo with the decodable count
rather than pad a clip with copies of the last frame.

Cost (where a loader's time goes, found with cProfile; figures in docs/OPERATIONS.md): one container
open per clip (with the demuxer the extension names: no format probe) and one demux pass, packets kept
in memory, so jumping to a key frame is a decoder flush, not a container seek; frames converted to RGB
by one reusable converter per video (VideoFrame.to_ndarray with a format builds a new swscale context
for every frame, which costs more than decoding a small frame).

    open_video(path) -> Video (or FrameFolder): .frames (the header's count), .read(indices, num_frames)
    read_frames(path, indices, num_frames=None) -> uint8 (N, H, W, 3)   (may raise ShortVideo)
    count_frames(path)       the header's count (images in a frame folder)
    decodable_frames(path)   a full decode's count, the truth
    check_video(path)        (header count, decodable count), reading a test clip too (data.py inspect)
"""
import os
import re
from typing import NamedTuple

import av
import numpy as np
from av.video.reformatter import VideoReformatter

IMAGE_EXTS = (".jpg", ".jpeg", ".png")
# Jump to a later key frame only when that skips decoding at least this many frames: a jump flushes the
# decoder, which costs about as much as decoding a few frames (our choice).
SEEK_MIN_SKIP = 16
# Decoder and converter threads per video: 0 lets FFmpeg use every core (one process reading videos);
# DataLoader workers set 1 (support/loading.py), since the workers already decode several videos at once.
THREADS = 0
# The demuxer each extension names. Opening a file with its demuxer named skips FFmpeg's format probe,
# which runs every demuxer's test over the file's first bytes and costs as much as decoding a few small
# frames; a file whose extension lies fails that open and is opened again with the probe.
DEMUXERS = {".avi": "avi", ".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "matroska"}
# One frame converter per process (it keeps its swscale context while the frame size and format stay);
# per process because a converter's threads do not survive the fork that starts a DataLoader worker.
_RGB = {}


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


class FrameFolder:
    """A folder of frame images (JPEG/PNG, read in numeric name order), read like a Video."""

    def __init__(self, path):
        names = sorted((f for f in os.listdir(path) if os.path.splitext(f)[1].lower() in IMAGE_EXTS), key=_natural)
        self.path, self.files = path, [os.path.join(path, f) for f in names]
        self.frames = len(self.files)

    def read(self, indices, num_frames=None):
        """uint8 (len(indices), H, W, 3); indices past the end clamped to the last image."""
        from PIL import Image  # matplotlib depends on Pillow, so it is installed
        if not self.files:
            raise ValueError(f"{self.path}: no frame images ({', '.join(IMAGE_EXTS)})")
        cache = {}
        for w in set(int(i) for i in indices):
            with Image.open(self.files[min(w, len(self.files) - 1)]) as im:
                cache[w] = np.asarray(im.convert("RGB"))
        return np.stack([cache[int(i)] for i in indices])

    def decodable(self):
        return self.frames

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Grid(NamedTuple):
    """A video's packets on a regular time grid: packet k at time stamp pts0 + k*step (to within `tol`
    ticks: a millisecond time base rounds 1001/30 ms per frame), every slot filled once. keys: {slot:
    packet position} of the key frames; count: the packets; k0: the slot of the first frame that decodes
    from the start (> 0 for a cut that starts mid-GOP, whose leading packets decode to nothing), so that
    decodable frame n is the frame in slot n + k0."""
    pts0: int
    step: float
    tol: float
    keys: dict
    count: int
    k0: int

    def slot(self, pts):
        """The slot of a frame's time stamp, None when it is off the grid."""
        if pts is None:
            return None
        k = round((pts - self.pts0) / self.step)
        return k if abs(pts - self.pts0 - k * self.step) <= self.tol else None


class Video:
    """One video file, opened once: its header count (`frames`) and the frames at any indices (`read`).

    Packets are demuxed once, as far as needed, and kept in memory (a clip of a 10 s video holds a few MB
    of them); decoding starts at packet 0 (counting) or at a key frame's packet (jumping)."""

    def __init__(self, path):
        self.path, self.container = path, _open(path)
        if not self.container.streams.video:
            self.container.close()
            raise ValueError(f"{path}: no video stream")
        self.stream = self.container.streams.video[0]
        self.stream.codec_context.thread_count = THREADS
        self.stream.thread_type = "AUTO"  # frame + slice threads, when there are several
        self.packets, self._demux, self._grid = [], None, False
        self.complete = self.damaged = False  # all packets demuxed; the demuxer stopped with an error

    def close(self):
        self.container.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def frames(self):
        """The container's frame count, or (when it stores none, e.g. some .webm/.mkv) the number of
        packets (no decoding). Cheap, but only as true as the header: decodable() gives the truth."""
        n = self.stream.frames
        return int(n) if n and n > 0 else self._packets_until(None)

    def _packets_until(self, n):
        """Demux until packet n (None: all) is in self.packets; returns len(self.packets). Empty packets (an
        AVI's "dropped frame" chunks) hold no frame and are left out. A demux error after the first packet
        ends the file there (a damaged tail reads as a shorter video, never one to jump into)."""
        if self._demux is None:
            self._demux = self.container.demux(self.stream)
        while not self.complete and (n is None or len(self.packets) <= n):
            try:
                p = next(self._demux)
            except StopIteration:
                self.complete = True
                break
            except av.error.FFmpegError:
                if not self.packets:
                    raise
                self.complete = self.damaged = True
                break
            if p.size > 0:
                self.packets.append(p)
        return len(self.packets)

    def _decode(self, start=0):
        """Frames decoded from packet `start` (0: the file's start; else a key frame's packet) on, after a
        decoder flush. A packet that fails to decode after the first frame ends the stream instead of
        raising: the frames before it are good, so a damaged tail reads as a shorter video (ShortVideo).
        A failing first frame still raises."""
        codec, n, i = self.stream.codec_context, 0, start
        codec.flush_buffers()
        while True:
            packet = self.packets[i] if i < len(self.packets) or i < self._packets_until(i) else None  # None: drain
            try:
                frames = codec.decode(packet)
            except av.error.FFmpegError:
                if n == 0:
                    raise
                return
            for frame in frames:
                n += 1
                yield frame
            if packet is None:
                return
            i += 1

    def _to_rgb(self, frame):
        if os.getpid() not in _RGB:  # (a parent's converter is kept, never freed here: its threads are not)
            _RGB[os.getpid()] = VideoReformatter()
        return _RGB[os.getpid()].reformat(frame, format="rgb24", threads=THREADS).to_ndarray()  # (H, W, 3) uint8

    def _counting(self, wanted):
        """Decode from the start; frame n is the n-th frame that decodes, by definition. Picks the frames
        whose index is in sorted `wanted` and stops after the last one. Returns (picked, last, decoded):
        picked = {index: array}; last = the last decoded frame's array when the stream ended before some
        wanted index (else None); decoded = how many frames were decoded. Only frames that are used are
        converted to RGB."""
        out, ptr, count, frame = {}, 0, 0, None
        for frame in self._decode(0):
            while ptr < len(wanted) and wanted[ptr] == count:
                out[count] = self._to_rgb(frame)
                ptr += 1
            count += 1
            if ptr == len(wanted):
                return out, None, count
        if frame is None:
            return out, None, 0
        return out, out[count - 1] if count - 1 in out else self._to_rgb(frame), count

    def grid(self):
        """The packets' time grid (a Grid), or None when they do not sit on a regular one. Read from the
        packets alone (demuxing costs a small fraction of decoding), once per Video."""
        if self._grid is False:
            self._grid = self._find_grid()
        return self._grid

    def _find_grid(self):
        self._packets_until(None)
        pts = [p.pts for p in self.packets]
        if self.damaged or len(pts) < 2 or None in pts:
            return None
        srt = np.sort(np.asarray(pts, np.int64))
        pts0, step = int(srt[0]), (int(srt[-1]) - int(srt[0])) / (len(srt) - 1)
        tol = 1 if step >= 4 else 1e-9  # a millisecond time base rounds 1001/30 ms to 33 or 34 ticks
        slots = np.rint((srt - pts0) / step) if step > 0 else None
        if slots is None or (slots != np.arange(len(srt))).any() or (np.abs(srt - pts0 - slots * step) > tol).any():
            return None
        grid = Grid(pts0, step, tol, {}, len(pts), 0)
        grid.keys.update({grid.slot(p.pts): i for i, p in enumerate(self.packets) if p.is_keyframe})
        first = self.packets[0]
        if first.is_keyframe and first.pts == pts0:
            return grid
        frame = next(self._decode(0), None)  # leading packets that decode to nothing: where frames begin
        k0 = None if frame is None else grid.slot(frame.pts)
        return None if k0 is None else grid._replace(k0=k0)

    def _jumping(self, wanted):
        """The frames at sorted `wanted` indices, decoding from the key frame before each one when that
        skips at least SEEK_MIN_SKIP frames (else on from the previous one), on a regular grid only.
        Frame n is the one in grid slot n + k0; the frames a jump yields are checked: after the key frame
        (earlier ones, an open GOP's leading frames, are ignored) every slot must yield exactly one frame,
        in order. Any frame off the grid, out of order or missing returns None, and the caller counts from
        the start instead; so does an index at or past the packet count less k0 (a short video: the count
        then finds the decodable count, as it would without a jump)."""
        grid = self.grid()
        if grid is None or wanted[-1] + grid.k0 >= grid.count:
            return None
        starts = np.array(sorted({grid.k0} | {g for g in grid.keys if g > grid.k0}))  # k0: from packet 0
        want, out, pos, frames, fresh = set(wanted), {}, -1, None, False  # pos: slot of the last frame
        for w in wanted:
            g = w + grid.k0
            start = int(starts[np.searchsorted(starts, g, side="right") - 1])
            if frames is None or start - (pos + 1) >= SEEK_MIN_SKIP:
                frames, pos, fresh = self._decode(grid.keys.get(start, 0)), start - 1, True
            while pos < g:
                frame = next(frames, None)
                i = None if frame is None else grid.slot(frame.pts)
                if fresh and i is not None and i < start:  # an open GOP's leading frames: not ours
                    continue
                if i is None or i != pos + 1:
                    return None
                pos, fresh = i, False
                if i - grid.k0 in want and i - grid.k0 not in out:
                    out[i - grid.k0] = self._to_rgb(frame)
        return out

    def read(self, indices, num_frames=None):
        """uint8 frames (len(indices), H, W, 3) at the given 0-based frame indices (any order, repeats ok).

        Indices at or past the video's length (`num_frames`, the count the caller sampled from; by default
        the container's header count) repeat the last frame. If the stream ends BEFORE a wanted index below
        that length, raise ShortVideo (carrying the decodable count) rather than pad."""
        indices = [int(i) for i in indices]
        length = num_frames or self.stream.frames or None  # frames that should exist (None: unknown)
        if length:
            indices = [min(i, length - 1) for i in indices]
        wanted = sorted(set(indices))
        out = None
        if max(b - a - 1 for a, b in zip([-1] + wanted, wanted)) >= SEEK_MIN_SKIP:  # a gap to skip: try jumping
            try:
                out = self._jumping(wanted)
            except av.error.FFmpegError:
                out = None
        if out is None:
            out, last, decoded = self._counting(wanted)
            if decoded == 0:
                raise ValueError(f"{self.path}: no decodable frames")
            if length and last is not None:
                raise ShortVideo(self.path, decoded, length)
            out.update({w: last for w in wanted if w not in out})  # length unknown: past the end = last frame
        return np.stack([out[i] for i in indices])

    def decodable(self):
        """How many frames really decode: a full decode (as long as playing the video through)."""
        return sum(1 for _ in self._decode(0))


def _open(path):
    """av.open(path), with the demuxer its extension names when there is one (DEMUXERS)."""
    demuxer = DEMUXERS.get(os.path.splitext(path)[1].lower())
    if demuxer is not None:
        try:
            return av.open(path, format=demuxer)
        except av.error.FFmpegError:
            pass  # not what its name says (or unreadable): let FFmpeg probe it, and raise its own error
    return av.open(path)


def open_video(path):
    """A Video, or a FrameFolder for a folder of frame images; use as a context manager."""
    return FrameFolder(path) if os.path.isdir(path) else Video(path)


def read_frames(path, indices, num_frames=None):
    """uint8 frames (len(indices), H, W, 3) of `path` (see Video.read; may raise ShortVideo)."""
    with open_video(path) as video:
        return video.read(indices, num_frames)


def count_frames(path):
    """Number of frames: images in a frame folder; for a video the container's count (Video.frames).
    Cheap, but only as true as the header: decodable_frames gives the truth."""
    with open_video(path) as video:
        return video.frames


def decodable_frames(path):
    """How many frames of `path` really decode: a full decode, the truth where count_frames' header
    figure is wrong. Frame folders: the number of images."""
    with open_video(path) as video:
        return video.decodable()


def check_video(path):
    """(header count, decodable count) of one video, fully decoded, then read as a test clip would be
    (3 centred pairs of consecutive frames, which jumps to key frames in a long video)."""
    header, true = count_frames(path), decodable_frames(path)
    if true < 1:
        raise ValueError("no frames")
    tick = max(true - 1, 1) / 3
    read_frames(path, [int(tick * (k + 0.5)) + d for k in range(3) for d in (0, 1)], true)
    return header, true
