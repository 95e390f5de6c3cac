"""Fast input: re-encode a dataset's videos with a key frame every few frames, or extract their frames.

Decoding is most of a video loader's cost, and a decoder can only start at a key frame. Downloaded videos
often keep key frames seconds apart, so reading S short segments of T frames means decoding nearly the
whole video. Re-encoded with a key frame every `gop` frames ("dense encoding", as mmaction2 calls it),
decode.read_frames seeks to each segment and decodes at most gop - 1 frames more than it needs. Frame
folders (one JPEG per frame) need no video decoding at all, at the cost of disk space.

    python data.py prepare --data-root ROOT [--out NEW] [--frames] [--gop 8] [--workers N]

With --out, NEW mirrors ROOT: every video re-encoded (or, with --frames, a folder of its frames that
carries the video's file name, which every layout reads like the video), every other file (split lists,
class files) copied, so `--data-root NEW` works as ROOT did. Without --out, each video is replaced in
place by its re-encoded version (the original is not kept; frame folders need --out). Resumable: each
output is written under a temporary name and renamed when complete, and finished outputs are skipped (in
place: videos whose key frames are already at most --gop apart). A video that cannot be decoded is
reported and left as it is (copied, with --out), so the loader's own skip logic deals with it.
"""
import concurrent.futures
import os
import shutil
import time

import av

from support.framecounts import COUNT_CACHE_NAME
from support.layouts import VIDEO_EXTS
from support.synthetic import write_video
from support.system import fmt_time

# Encoder per container (our choice): mpeg4 in .avi, as UCF101 and HMDB51 ship; H.264 without B-frames
# (each packet one frame, in order) at near-transparent quality elsewhere; VP8 where .webm allows only VPx.
X264 = ("libx264", {"crf": "18", "preset": "veryfast", "bf": "0"})
CODECS = {".avi": ("mpeg4", None), ".webm": ("libvpx", {"crf": "10", "b": "2M"}), ".3gp": ("mpeg4", None),
          ".mpg": ("mpeg4", None), ".mpeg": ("mpeg4", None)}


def add_arguments(p):
    """`python data.py prepare`'s flags."""
    p.add_argument("--data-root", required=True)
    p.add_argument("--out", default=None, help="write a prepared copy of the dataset here (default: in place)")
    p.add_argument("--frames", action="store_true", help="extract JPEG frame folders instead (needs --out)")
    p.add_argument("--gop", type=int, default=8, help="frames between key frames (our choice)")
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="videos prepared at once")


def video_files(root, skip=None):
    """Relative paths of the video files under `root`, sorted. Hidden names (our temporary outputs), the
    folder `skip` and frame folders named like videos are left out."""
    found = []
    for dp, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and os.path.splitext(d)[1].lower() not in VIDEO_EXTS
                         and os.path.abspath(os.path.join(dp, d)) != skip)
        found += [os.path.relpath(os.path.join(dp, f), root) for f in sorted(files)
                  if not f.startswith(".") and os.path.splitext(f)[1].lower() in VIDEO_EXTS]
    return found


def key_interval(path):
    """The largest distance, in frames, between two key frames of `path` (or from the last one to the
    end), read from the packets without decoding."""
    with av.open(path) as container:
        keys = sorted((p.pts, p.is_keyframe) for p in container.demux(container.streams.video[0])
                      if p.size > 0 and p.pts is not None)
    at = [i for i, (_, key) in enumerate(keys) if key]
    return max(b - a for a, b in zip(at, at[1:] + [len(keys)])) if at else len(keys)


def reencode(src, dst, gop):
    """Decode `src` and write every frame to `dst` with a key frame every `gop` frames. Returns the count."""
    codec, options = CODECS.get(os.path.splitext(dst)[1].lower(), X264)
    with av.open(src) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = stream.average_rate or stream.guessed_rate or 25
        w, h = stream.codec_context.width, stream.codec_context.height
        bit_rate = max(2 * (stream.bit_rate or container.bit_rate or 0), int(w * h * rate / 2))  # our choice
        return write_video(dst, container.decode(stream), fps=rate, codec=codec, gop=gop, bit_rate=bit_rate,
                           options=options)


def extract(src, folder):
    """Every frame of `src` as folder/000001.jpg, 000002.jpg, ... (JPEG quality 95). Returns the count."""
    os.makedirs(folder)
    n = 0
    with av.open(src) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            n += 1
            frame.to_image().save(os.path.join(folder, f"{n:06d}.jpg"), quality=95)
    if n == 0:
        raise ValueError("no frames decode")
    return n


def _remove(path):
    if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.exists(path):
        os.remove(path)


def prepare_one(src, dst, frames, gop):
    """One video: 'written', 'done' (prepared before) or 'failed: why'. Written under a hidden temporary
    name beside `dst` and renamed when complete, so an interrupted run never leaves a partial output."""
    in_place = os.path.abspath(src) == os.path.abspath(dst)
    tmp = os.path.join(os.path.dirname(dst), f".prepare-tmp-{os.path.basename(dst)}")
    _remove(tmp)  # left by an interrupted run
    try:
        if (key_interval(src) <= gop) if in_place else (os.path.isdir(dst) if frames else os.path.isfile(dst)):
            return "done"
        extract(src, tmp) if frames else reencode(src, tmp, gop)
        os.replace(tmp, dst)
        return "written"
    except Exception as e:  # noqa: BLE001 - a broken video is reported, never stops the others
        _remove(tmp)
        if not in_place and not os.path.exists(dst):
            shutil.copy2(src, dst)  # left as it was: the prepared dataset stays complete
        return f"failed: {type(e).__name__}: {e}"


def copy_others(root, out):
    """Every file under `root` that is not a video (split lists, class files...) to the same place under
    `out`, unless already there with the same size."""
    for dp, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if os.path.abspath(os.path.join(dp, d)) != os.path.abspath(out)]
        for f in files:
            if os.path.splitext(f)[1].lower() in VIDEO_EXTS or f.startswith(".") or f == COUNT_CACHE_NAME:
                continue
            src = os.path.join(dp, f)
            dst = os.path.join(out, os.path.relpath(src, root))
            if not (os.path.isfile(dst) and os.path.getsize(dst) == os.path.getsize(src)):
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                shutil.copy2(src, dst)


def prepare(root, out=None, frames=False, gop=8, workers=1, log=print):
    """Prepare every video under `root` (see the top of this file); returns the counts of 'written',
    'done' and 'failed' videos. Progress: one line every few seconds with the count and an ETA."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"--data-root {root}: no such folder")
    if gop < 1:
        raise ValueError(f"--gop must be >= 1, got {gop}")
    in_place = out is None or os.path.abspath(out) == os.path.abspath(root)
    if frames and in_place:
        raise ValueError("--frames needs --out: a frame folder takes its video's name, so it cannot sit beside it")
    out = root if in_place else out
    videos = video_files(root, skip=None if in_place else os.path.abspath(out))
    if not in_place:
        copy_others(root, out)
        for rel in {os.path.dirname(r) for r in videos}:
            os.makedirs(os.path.join(out, rel), exist_ok=True)
    counts, failed, t0, shown = {"written": 0, "done": 0, "failed": 0}, [], time.time(), 0.0
    jobs = [(os.path.join(root, r), os.path.join(out, r), frames, gop) for r in videos]
    pool = concurrent.futures.ProcessPoolExecutor(workers) if workers > 1 and jobs else None
    try:
        results = pool.map(prepare_one, *zip(*jobs)) if pool else (prepare_one(*job) for job in jobs)
        for i, (job, status) in enumerate(zip(jobs, results), 1):
            counts[status.split(":")[0]] += 1
            failed += [f"{job[0]}: {status[len('failed: '):]}"] if status.startswith("failed") else []
            if time.time() - shown > 2 or i == len(jobs):
                shown, rate = time.time(), (counts["written"] + counts["failed"]) / max(time.time() - t0, 1e-9)
                log(f"prepare: {i}/{len(jobs)} videos ({counts['written']} written, {counts['done']} already "
                    f"done, {counts['failed']} failed), {rate:.1f} videos/s, "
                    f"ETA {fmt_time((len(jobs) - i) / rate) if rate > 0 else '?'}")
    finally:
        if pool:
            pool.shutdown(cancel_futures=True)
    for f in failed[:20]:
        log(f"  FAILED {f}")
    return counts
