"""Fast input: re-encode a dataset's videos with a key frame every few frames, or extract their frames.

Decoding is most of a video loader's cost, and a decoder can only start at a key frame. Downloaded videos
often keep key frames seconds apart, so reading S short segments of T frames means decoding nearly the
whole video. Re-encoded with a key frame every `gop` frames ("dense encoding", as mmaction2 calls it),
decode.read_frames jumps to each segment and decodes at most gop - 1 frames more than it needs. Frame
folders (one image per frame) need no video decoding at all, at the cost of disk space.

    python data.py prepare --data-root ROOT [--out NEW] [--frames [png|jpg]] [--gop 8] [--workers N]

What changes: frame n of a prepared video is frame n of the original (the n-th frame that decodes), so
every clip takes the same frames; a re-encoded copy holds every decodable frame once, at time stamp n/fps
(real, increasing time stamps in every container, so its header count is the truth and it can be jumped
into), and is lossy (CODECS; docs/OPERATIONS.md gives the measured PSNR). --frames keeps every frame as
it decodes: PNG, lossless, the default (the RGB frames read back equal the video's); --frames jpg: JPEG at
quality 95, smaller and lossy (FRAME_FORMATS).

With --out, NEW mirrors ROOT: every video re-encoded (or, with --frames, a folder of its frames that
carries the video's file name, which every layout reads like the video), every other file (split lists,
class files) copied, so `--data-root NEW` works as ROOT did; list lines that hold an absolute path under
ROOT point under NEW. Without --out, each video is replaced in place by its re-encoded version (the
original is not kept; frame folders need --out). Every output is written under a hidden temporary name and
renamed when complete, and checked before that. A video that cannot be prepared is reported and left as it
is (copied, with --out, and marked: .prepare-failed-NAME.txt beside it holds the reason), so the loader's
own skip logic deals with it. A rerun finishes what is missing and tries every failure again (in place:
every video whose key frames are still more than --gop apart); the exit status is non-zero while any video
fails. Pool workers end with the process that started them, on any signal.
"""
import ctypes
import multiprocessing
import os
import shutil
import signal
import time

import av

from support.framecounts import COUNT_CACHE_NAME
from support.layouts import VIDEO_EXTS
from support.synthetic import write_video
from support.system import fmt_time

# Encoder per container (our choice): mpeg4 in .avi, as UCF101 and HMDB51 ship; H.264 elsewhere, without
# B-frames (each packet one frame, in order), tuned for fast decoding (no CABAC, no deblocking: a key frame
# every few frames would otherwise decode slower than the original), at crf 18; VP8 where .webm allows only VPx.
X264 = ("libx264", {"crf": "18", "preset": "veryfast", "bf": "0", "tune": "fastdecode"})
CODECS = {".avi": ("mpeg4", None), ".webm": ("libvpx", {"crf": "10", "b": "2M"}), ".3gp": ("mpeg4", None),
          ".mpg": ("mpeg4", None), ".mpeg": ("mpeg4", None)}
LIST_EXTS = (".txt", ".csv", ".lst")  # text files whose lines may start with an absolute video path
# --frames: the image format of a frame folder and its PIL options. PNG is lossless (zlib at PIL's default
# level); JPEG keeps chroma at full resolution: the frames are already 4:2:0, and subsampling them again
# loses much of the quality (docs/OPERATIONS.md).
FRAME_FORMATS = {"png": {}, "jpg": {"quality": 95, "subsampling": 0}}


def add_arguments(p):
    """`python data.py prepare`'s flags."""
    p.add_argument("--data-root", required=True)
    p.add_argument("--out", default=None, help="write a prepared copy of the dataset here (default: in place)")
    p.add_argument("--frames", nargs="?", const="png", default=None, choices=tuple(FRAME_FORMATS),
                   help="extract frame folders instead (needs --out): png, lossless (the default), or jpg (quality 95)")
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
    """Decode `src` and write every frame to `dst` with a key frame every `gop` frames, frame n at time
    stamp n/fps (write_video; a rate the encoder refuses is rescaled). Returns the count, checked by
    demuxing `dst`: a write that failed quietly (a full disk) must not pass for a finished output."""
    codec, options = CODECS.get(os.path.splitext(dst)[1].lower(), X264)
    with av.open(src) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = stream.average_rate or stream.guessed_rate or 25
        w, h = stream.codec_context.width, stream.codec_context.height
        bit_rate = max(2 * (stream.bit_rate or container.bit_rate or 0), int(w * h * rate / 2))  # our choice
        n = write_video(dst, container.decode(stream), fps=rate, codec=codec, gop=gop, bit_rate=bit_rate,
                        options=options)
    with av.open(dst) as container:
        got = sum(1 for p in container.demux(container.streams.video[0]) if p.size > 0)
    if got < n:
        raise OSError(f"the output holds {got} of the {n} frames written (is the disk full?)")
    return n


def extract(src, folder, kind="png"):
    """Every frame of `src`, converted to RGB as the loader converts it, as folder/000001.png, 000002.png,
    ... (`kind`: a FRAME_FORMATS key, also the extension). Returns the count."""
    os.makedirs(folder)
    n = 0
    with av.open(src) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            n += 1
            frame.to_image().save(os.path.join(folder, f"{n:06d}.{kind}"), **FRAME_FORMATS[kind])
    if n == 0:
        raise ValueError("no frames decode")
    return n


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.remove(path)


def _beside(dst, kind):
    """The hidden file beside `dst` that holds its temporary output or its failure mark."""
    name = os.path.basename(dst)
    return os.path.join(os.path.dirname(dst), f".prepare-tmp-{name}" if kind == "tmp"
                        else f".prepare-failed-{name}.txt")


def write_atomic(dst, data=None, src=None):
    """`data` (bytes) or a copy of file `src` at `dst`, written under the temporary name and renamed when
    complete: a full disk or a kill leaves the old `dst` or none, never a partial one."""
    tmp = _beside(dst, "tmp")
    try:
        if src is not None:
            shutil.copy2(src, tmp)
        else:
            with open(tmp, "wb") as f:
                f.write(data)
        os.replace(tmp, dst)
    finally:
        _remove(tmp)


def prepare_one(src, dst, frames, gop):
    """One video (frames: None to re-encode, else a FRAME_FORMATS key): 'written', 'done' (prepared
    before) or 'failed: why'. A failure is marked before the
    original is copied to `dst`, and the mark goes only after a later success, so no kill can leave a
    failed video counted as done."""
    in_place = os.path.abspath(src) == os.path.abspath(dst)
    tmp, mark = _beside(dst, "tmp"), _beside(dst, "failed")
    _remove(tmp)  # left by an interrupted run
    try:
        if (key_interval(src) <= gop) if in_place else (os.path.lexists(dst) and not os.path.exists(mark)):
            return "done"
        extract(src, tmp, frames) if frames else reencode(src, tmp, gop)
        if os.path.exists(mark):
            _remove(dst)  # the original, copied by a run where this video failed
        os.replace(tmp, dst)
        _remove(mark)
        return "written"
    except Exception as e:  # noqa: BLE001 - a broken video is reported, never stops the others
        _remove(tmp)
        why = f"{type(e).__name__}: {e}"
        if not in_place:
            try:
                write_atomic(mark, why.encode())
                if not os.path.lexists(dst):
                    write_atomic(dst, src=src)  # left as it was: the prepared dataset stays complete
            except OSError as c:
                why += f"; and {dst} could not be written: {c}"
        return f"failed: {why}"


def rewrite_list(text, root, out):
    """(text, moved, outside): the lines of a list file that start with an absolute path under `root`
    rewritten to start under `out`; `outside` counts the lines with an absolute path elsewhere (they keep
    reading the originals)."""
    roots = sorted({os.path.abspath(root), os.path.realpath(root)}, key=len, reverse=True)
    lines, moved, outside = [], 0, 0
    for ln in text.splitlines(keepends=True):
        pre = next((r for r in roots if ln.startswith(r + os.sep)), None)
        if pre is not None:
            ln, moved = os.path.abspath(out) + ln[len(pre):], moved + 1
        elif ln.startswith(os.sep):
            outside += 1
        lines.append(ln)
    return "".join(lines), moved, outside


def copy_others(root, out, log=print):
    """Every file under `root` that is not a video (split lists, class files...) to the same place under
    `out` (atomically), list files with their absolute paths under `root` rewritten (rewrite_list)."""
    for dp, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if os.path.abspath(os.path.join(dp, d)) != os.path.abspath(out)]
        for f in files:
            if os.path.splitext(f)[1].lower() in VIDEO_EXTS or f.startswith(".") or f == COUNT_CACHE_NAME:
                continue
            src = os.path.join(dp, f)
            dst = os.path.join(out, os.path.relpath(src, root))
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            if os.path.splitext(f)[1].lower() in LIST_EXTS:
                with open(src, "rb") as fh:
                    text, moved, outside = rewrite_list(fh.read().decode("utf-8", "surrogateescape"), root, out)
                data = text.encode("utf-8", "surrogateescape")
                if outside:
                    log(f"prepare: {src}: {outside} lines hold an absolute path outside --data-root; "
                        "they keep reading the originals")
                if not (os.path.isfile(dst) and open(dst, "rb").read() == data):
                    write_atomic(dst, data)
            elif not (os.path.isfile(dst) and os.path.getsize(dst) == os.path.getsize(src)):
                write_atomic(dst, src=src)


def _job(job):
    return prepare_one(*job)


def _worker_start(parent):
    """Pool worker set-up: end with the parent, whatever ends it (SIGKILL included: Linux's parent-death
    signal), and leave Ctrl-C and SIGTERM to the parent, which then stops the pool."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the parent's SIGTERM/SIGINT handling still stops the pool
    if os.getppid() != parent:  # the parent was gone before that took effect
        os._exit(1)


def _stop(signum, frame):
    raise SystemExit(128 + signum)  # the pool is stopped in prepare()'s finally


def _on_sigterm(handler):
    """Install a SIGTERM handler where Python allows it (the main thread); returns the previous one."""
    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:
        return handler


def run_jobs(jobs, workers):
    """prepare_one over `jobs`, in order, in `workers` processes (1: here). A generator."""
    if workers <= 1 or len(jobs) < 2:
        yield from (prepare_one(*job) for job in jobs)
        return
    pool, done = multiprocessing.Pool(workers, initializer=_worker_start, initargs=(os.getpid(),)), False
    try:
        yield from pool.imap(_job, jobs)
        done = True
    finally:
        if done:
            pool.close()
        else:
            pool.terminate()
        pool.join()


def prepare(root, out=None, frames=None, gop=8, workers=1, log=print):
    """Prepare every video under `root` (see the top of this file): re-encoded (frames None), or frame
    folders ("png", "jpg"; True: "png"). Returns (counts of 'written', 'done' and 'failed' videos, the
    failed videos' paths). Progress: one line every few seconds with an ETA."""
    frames = "png" if frames is True else (frames or None)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"--data-root {root}: no such folder")
    if gop < 1:
        raise ValueError(f"--gop must be >= 1, got {gop}")
    if frames is not None and frames not in FRAME_FORMATS:
        raise ValueError(f"--frames must be one of {', '.join(FRAME_FORMATS)}, got {frames!r}")
    in_place = out is None or os.path.abspath(out) == os.path.abspath(root)
    if frames and in_place:
        raise ValueError("--frames needs --out: a frame folder takes its video's name, so it cannot sit beside it")
    out = root if in_place else out
    videos = video_files(root, skip=None if in_place else os.path.abspath(out))
    if not in_place:
        copy_others(root, out, log)
        for rel in {os.path.dirname(r) for r in videos}:
            os.makedirs(os.path.join(out, rel), exist_ok=True)
    counts, failed, t0, shown = {"written": 0, "done": 0, "failed": 0}, [], time.time(), 0.0
    jobs = [(os.path.join(root, r), os.path.join(out, r), frames, gop) for r in videos]
    results = run_jobs(jobs, workers)
    old = _on_sigterm(_stop)  # SIGTERM ends the pool too, not only this process
    try:
        for i, (job, status) in enumerate(zip(jobs, results), 1):
            counts[status.split(":")[0]] += 1
            failed += [(job[0], status[len("failed: "):])] if status.startswith("failed") else []
            if time.time() - shown > 2 or i == len(jobs):
                shown, rate = time.time(), (counts["written"] + counts["failed"]) / max(time.time() - t0, 1e-9)
                log(f"prepare: {i}/{len(jobs)} videos ({counts['written']} written, {counts['done']} already "
                    f"done, {counts['failed']} failed), {rate:.1f} videos/s, "
                    f"ETA {fmt_time((len(jobs) - i) / rate) if rate > 0 else '?'}")
    finally:
        results.close()  # stops the pool if the loop did not finish
        _on_sigterm(old)
    for path, why in failed[:20]:
        log(f"  FAILED {path}: {why}")
    return counts, [path for path, _ in failed]


def main(args):
    """`python data.py prepare`: prepare, then exit non-zero, with the count and the names, if any video
    failed (a rerun tries them again)."""
    counts, failed = prepare(args.data_root, args.out, args.frames, args.gop, args.workers)
    if failed:
        names = ", ".join(failed[:20]) + (f", ... {len(failed) - 20} more" if len(failed) > 20 else "")
        raise SystemExit(f"prepare: {len(failed)} of {sum(counts.values())} videos failed (left as they were; "
                         f"a rerun tries them again): {names}")
