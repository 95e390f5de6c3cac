"""The frame-count cache: decodable frame counts of a dataset's short videos, remembered beside the data.

A container header can over-count frames (a real UCF101 .avi says 444 and decodes 68; a truncated
download keeps its full header). data.py learns the true count the first time such a video is read (one
wasted decode) and appends it here, so later runs sample from the right count at once. Where the file
lives is our choice (the paper is silent): in the data root when it is writable, so everyone using that
copy of the data shares it; else under ~/.cache.

FrameCounts holds each sample's count for a dataset object, in shared memory so that a count found by one
DataLoader worker is seen by every worker and by later epochs' workers.

File format: one line per learned count, "path<TAB>size<TAB>mtime_ns<TAB>count" (absolute path). The last
line per path wins; a line counts only while its video keeps the recorded size and mtime.
"""
import hashlib
import os
import warnings

import torch

from support.decode import count_frames

COUNT_CACHE_NAME = "dynamic-appearance-frame-counts.tsv"


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


def known_counts(cache, paths):
    """The cached decodable count of each of `paths`, -1 where none is known (or cache is None)."""
    known = cached_counts(cache) if cache else {}
    return [known.get(os.path.abspath(p), -1) for p in paths] if known else [-1] * len(paths)


class ShortVideoWarning(RuntimeWarning):
    """A video decodes fewer frames than its header says; its clips are sampled from those that decode."""


class FrameCounts:
    """The frame count of each of `paths`: learned earlier (the cache file `cache`; None: none kept), else
    the header's, read on first use. Kept in shared memory (-1 = not yet known), so each video's header
    is read once per run rather than once per worker per epoch. A short video (decode.ShortVideo) lowers
    its count once with `learn`, which warns once per process and appends the count to the cache."""

    def __init__(self, paths, cache, name):
        self.paths, self.cache, self.name = list(paths), cache, name
        self.shared = torch.tensor(known_counts(cache, self.paths), dtype=torch.int64).share_memory_()
        self.warned = set()  # short videos already warned about in this process

    def get(self, index, video=None):
        """The count of video `index`: known, else the header's, read from `video` (an open
        decode.Video or FrameFolder of that path; None: the file is opened for it)."""
        n = int(self.shared[index])
        if n < 0:
            n = video.frames if video is not None else count_frames(self.paths[index])
            self.shared[index] = n
        return n

    def learn(self, index, err):
        """Video `index` decodes only err.decoded frames (err: a ShortVideo): use that count from now on."""
        path = self.paths[index]
        self.shared[index] = err.decoded
        if self.cache:
            append_count(self.cache, path, err.decoded)  # so later runs know it at once
        if path not in self.warned:
            self.warned.add(path)
            kept = f"; count cached in {self.cache}" if self.cache else ""
            warnings.warn(f"{self.name}: {path}: the header says {err.expected} frames but only {err.decoded} "
                          f"decode; its clips are sampled from those {err.decoded}{kept}", ShortVideoWarning)
