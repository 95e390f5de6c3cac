"""`python data.py prepare`: re-encoded videos (key frame every --gop frames) and extracted frame folders
hold the same frames as the originals, with real increasing time stamps in every container; a dataset
built on the prepared root yields clips (its lists' absolute paths point at the copy); a second run (or
one after an interruption) finishes only what is missing and tries every failure again; a failure is
never counted as done, exits non-zero, and the pool workers end with their parent."""
import argparse
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from fractions import Fraction

import av
import numpy as np
import pytest

import data
from experiments import loader
from support import decode, layouts, prepare, synthetic
from test_data_decoding import IRREGULAR, N, frame_ids, id_frame, write_timed


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A `list`-layout dataset: numbered mpeg4 .avi (long GOP), H.264 .mp4, an AVI with empty chunks
    (its header over-counts), a broken file, and the list files."""
    root = str(tmp_path_factory.mktemp("prep") / "src")
    os.makedirs(os.path.join(root, "vids"))
    frames = np.stack([id_frame(i) for i in range(N)])
    synthetic.write_video(os.path.join(root, "vids", "long.avi"), frames, gop=100)
    synthetic.write_video(os.path.join(root, "vids", "h264.mp4"), frames, codec="libx264", gop=100)
    write_timed(os.path.join(root, "vids", "gaps.avi"), IRREGULAR)
    with open(os.path.join(root, "vids", "broken.avi"), "wb") as f:
        f.write(b"not a video" * 40)
    with open(os.path.join(root, "train.txt"), "w") as f:
        f.write("vids/long.avi 0\nvids/h264.mp4 1\nvids/gaps.avi 0\nvids/broken.avi 1\n")
    with open(os.path.join(root, "val.txt"), "w") as f:
        f.write("vids/long.avi 0\nvids/h264.mp4 1\n")
    return root


GOOD = ("vids/long.avi", "vids/h264.mp4", "vids/gaps.avi")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_reencoded_copy_keeps_every_frame_and_resumes(source, tmp_path):
    out = str(tmp_path / "dense")
    lines = []
    counts, failed = prepare.prepare(source, out, gop=4, log=lines.append)
    assert counts == {"written": 3, "done": 0, "failed": 1} and failed == [os.path.join(source, "vids", "broken.avi")]
    assert lines[-2].startswith("prepare: 4/4 videos (3 written, 0 already done, 1 failed)") and "ETA" in lines[-2]
    assert "broken.avi" in lines[-1] and "FAILED" in lines[-1]
    for rel in GOOD:
        src, dst = os.path.join(source, rel), os.path.join(out, rel)
        assert data.decodable_frames(dst) == data.decodable_frames(src) == N
        assert data.count_frames(dst) == N  # the header now tells the truth (gaps.avi's said more)
        assert prepare.key_interval(dst) <= 4 < prepare.key_interval(src)
        idx = [0, 3, 17, 40, 41, 66, 79]
        assert frame_ids(data.read_frames(dst, idx, N)) == idx == frame_ids(data.read_frames(src, idx, N))
    # the rest of the layout came along: a dataset on the prepared root reads as before
    assert open(os.path.join(out, "train.txt")).read() == open(os.path.join(source, "train.txt")).read()
    ds = data.build_dataset("list", out, train=True, segments=2, frames=3, crop_size=16)
    clip, label = ds[0]
    assert clip.shape == (6, 3, 16, 16) and label == 0
    assert os.path.isfile(os.path.join(out, "vids", "broken.avi"))  # copied as it was: the loader skips it

    # resumable: nothing left to do; a lost output and a stale temporary file from a killed run
    again, _ = prepare.prepare(source, out, gop=4, log=lines.append)
    assert again == {"written": 0, "done": 3, "failed": 1}  # the failure is tried again
    os.remove(os.path.join(out, "vids", "h264.mp4"))
    with open(os.path.join(out, "vids", ".prepare-tmp-h264.mp4"), "wb") as f:
        f.write(b"partial")
    assert prepare.prepare(source, out, gop=4, log=lines.append)[0] == {"written": 1, "done": 2, "failed": 1}
    assert sorted(os.listdir(os.path.join(out, "vids"))) == [".prepare-failed-broken.avi.txt", "broken.avi", "gaps.avi",
                                                              "h264.mp4", "long.avi"]


def test_frame_folders_read_like_the_videos(source, tmp_path):
    out = str(tmp_path / "frames")
    assert prepare.prepare(source, out, frames=True, workers=2, log=lambda s: None)[0]["written"] == 3
    folder = os.path.join(out, "vids", "gaps.avi")  # a folder carrying the video's name
    assert os.path.isdir(folder) and len(os.listdir(folder)) == N
    for rel in GOOD:  # PNG, lossless: every frame reads back exactly as the loader decodes the video
        src, png = os.path.join(source, rel), os.path.join(out, rel)
        assert sorted(os.listdir(png))[:2] == ["000001.png", "000002.png"]
        n = data.decodable_frames(src)
        assert np.array_equal(data.read_frames(png, range(n)), data.read_frames(src, range(n), n))
    assert data.count_frames(folder) == N
    idx = [0, 9, 10, 50, 79]
    assert frame_ids(data.read_frames(folder, idx)) == idx
    _, train = layouts.parse_dataset("list", out, 1, True)
    assert [os.path.relpath(p, out) for p, _ in train] == [os.path.join(*r.split("/")) for r in
                                                             ("vids/long.avi", "vids/h264.mp4", "vids/gaps.avi",
                                                              "vids/broken.avi")]
    ds = data.build_dataset("list", out, train=False, segments=2, frames=2, crop_size=16)
    assert ds[1][0].shape == (1, 4, 3, 16, 16)


def test_frames_flag_picks_png_or_jpeg(source, tmp_path):
    """--frames alone: PNG (lossless); --frames jpg: JPEG at quality 95, close to the frames, not equal."""
    p = argparse.ArgumentParser()
    prepare.add_arguments(p)
    assert [p.parse_args(["--data-root", "r"] + a).frames for a in ([], ["--frames"], ["--frames", "jpg"])] == \
        [None, "png", "jpg"]
    with pytest.raises(SystemExit):
        p.parse_args(["--data-root", "r", "--frames", "bmp"])
    with pytest.raises(ValueError, match="--frames must be one of png, jpg"):
        prepare.prepare(source, str(tmp_path / "x"), frames="bmp")
    out = str(tmp_path / "jpg")
    assert prepare.prepare(source, out, frames="jpg", log=lambda s: None)[0]["written"] == 3
    folder, src = os.path.join(out, "vids", "long.avi"), os.path.join(source, "vids", "long.avi")
    assert sorted(os.listdir(folder))[0] == "000001.jpg" and data.count_frames(folder) == N
    a, b = data.read_frames(folder, range(N)).astype(float), data.read_frames(src, range(N), N).astype(float)
    assert 35 < 10 * np.log10(255 ** 2 / ((a - b) ** 2).mean()) < 99   # lossy, as said


def test_in_place_replaces_the_videos_once(source, tmp_path, capsys):
    root = str(tmp_path / "copy")
    shutil.copytree(source, root)
    with pytest.raises(SystemExit, match=r"prepare: 1 of 4 videos failed .*: .*broken\.avi$"):
        data.main(["prepare", "--data-root", root, "--gop", "8", "--workers", "1"])
    assert "prepare: 4/4 videos (3 written, 0 already done, 1 failed)" in capsys.readouterr().out
    for rel in GOOD:
        assert prepare.key_interval(os.path.join(root, rel)) <= 8
        assert frame_ids(data.read_frames(os.path.join(root, rel), [5, 70], N)) == [5, 70]
    assert not [f for f in os.listdir(os.path.join(root, "vids")) if f.startswith(".")]
    with pytest.raises(SystemExit, match="1 of 4 videos failed"):
        data.main(["prepare", "--data-root", root, "--gop", "8", "--workers", "1"])
    assert "(0 written, 3 already done, 1 failed)" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="--frames needs --out"):
        data.main(["prepare", "--data-root", root, "--frames"])
    with pytest.raises(SystemExit, match="no such folder"):
        data.main(["prepare", "--data-root", str(tmp_path / "nope")])


def test_synthetic_set_prepared_yields_the_same_clips_count(tmp_path):
    """The tiny synthetic set (UCF101 layout): its prepared copy parses to the same lists and decodes
    every video to the same frame count."""
    src, out = str(tmp_path / "s"), str(tmp_path / "p")
    synthetic.write_synthetic(src, classes=2, videos_per_class=4, size=16, frames=12, bias_train=1, bias_test=1)
    prepare.prepare(src, out, gop=4, log=lambda s: None)
    for k in (1, 4):
        a, b = layouts.parse_dataset("synthetic", src, k, True), layouts.parse_dataset("synthetic", out, k, True)
        assert a[0] == b[0] and [os.path.relpath(p, src) for p, _ in a[1]] == [os.path.relpath(p, out) for p, _ in b[1]]
        assert all(data.decodable_frames(p) == 12 for p, _ in b[1])
    loaders = data.build_loaders("synthetic", out, segments=2, frames=2, crop_size=16, batch_size=2, workers=0)
    loaders.train_sampler.set_epoch(0)
    x, y = next(iter(loaders.train))
    assert x.shape == (2, 4, 3, 16, 16)
    with av.open(os.path.join(out, "UCF-101", "MoveRight", "v_MoveRight_g01_c01.avi")) as c:
        assert c.streams.video[0].codec_context.name == "mpeg4"


# ----------------------------------------------------------------------------------------------- every container

def packet_times(path):
    """(pts of the non-empty packets in file order, time base, average rate)."""
    with av.open(path) as c:
        s = c.streams.video[0]
        return [p.pts for p in c.demux(s) if p.size > 0], s.time_base, s.average_rate


def no_counting(video, wanted):
    raise AssertionError(f"{video.path}: counted from the start instead of jumping to a key frame")


@pytest.mark.parametrize("ext,codec", [("mp4", "libx264"), ("mkv", "libx264"), ("webm", "libvpx"), ("avi", "mpeg4")])
def test_prepared_videos_keep_real_increasing_time_stamps(tmp_path, monkeypatch, ext, codec):
    """Every container: a frame every 1001/30000 s in the output, in order, on a grid that jumping
    trusts (a millisecond time base rounds it), so the copy is read by jumping to key frames."""
    root, out, n = tmp_path / "src", str(tmp_path / "out"), 40
    root.mkdir()
    write_timed(str(root / f"a.{ext}"), range(n), codec, 12, Fraction(30000, 1001))
    assert prepare.prepare(str(root), out, gop=4, log=lambda s: None)[0]["written"] == 1
    dst = os.path.join(out, f"a.{ext}")
    pts, tb, rate = packet_times(dst)
    assert len(pts) == n and all(b > a for a, b in zip(pts, pts[1:]))  # increasing, none repeated
    assert abs(float((pts[-1] - pts[0]) * tb) - (n - 1) * 1001 / 30000) <= float(tb) + 1e-9
    assert abs(float(rate) - 30000 / 1001) < 0.05
    with decode.open_video(dst) as v:
        assert v.grid() is not None and v.grid().count == n
    monkeypatch.setattr(decode.Video, "_counting", no_counting)
    idx = [1, 2, 19, 20, 38, 39]
    assert frame_ids(data.read_frames(dst, idx, n)) == idx


def test_a_frame_rate_the_encoder_refuses_is_rescaled(tmp_path):
    """A real AVI at 1000000/66667 fps (mpeg4 stores its time base in 16 bits): re-encoded all the same,
    every frame kept, the rate within 10 parts in a million."""
    root, out = tmp_path / "src", str(tmp_path / "out")
    root.mkdir()
    write_timed(str(root / "tree.avi"), range(30), "libx264", 12, Fraction(1000000, 66667))
    counts, failed = prepare.prepare(str(root), out, gop=4, log=lambda s: None)
    assert counts["written"] == 1 and not failed
    pts, _, rate = packet_times(os.path.join(out, "tree.avi"))
    assert pts == list(range(30)) and abs(float(rate) / (1000000 / 66667) - 1) < 1e-5
    assert frame_ids(data.read_frames(os.path.join(out, "tree.avi"), [0, 17, 29], 30)) == [0, 17, 29]


# ----------------------------------------------------------------------------------------------- never a failure done

def test_a_failure_is_never_counted_as_done(source, tmp_path, monkeypatch):
    """A full disk breaks off the copy of a video that failed: no partial file is left, the failure is
    marked, and every rerun tries it again, until it is fixed and written."""
    root, out = str(tmp_path / "src"), str(tmp_path / "dense")
    shutil.copytree(source, root)
    broken = os.path.join(out, "vids", "broken.avi")

    def full_disk(src, dst, **kw):
        with open(dst, "wb") as f:
            f.write(b"x" * 10)
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(prepare.shutil, "copy2", full_disk)
    counts, failed = prepare.prepare(root, out, gop=4, log=lambda s: None)
    assert counts == {"written": 3, "done": 0, "failed": 1} and failed == [os.path.join(root, "vids", "broken.avi")]
    names = os.listdir(os.path.join(out, "vids"))
    assert "broken.avi" not in names and ".prepare-tmp-broken.avi" not in names  # no partial copy
    monkeypatch.undo()
    counts, failed = prepare.prepare(root, out, gop=4, log=lambda s: None)  # space again: still broken
    assert counts == {"written": 0, "done": 3, "failed": 1} and len(failed) == 1
    assert open(broken, "rb").read() == open(os.path.join(root, "vids", "broken.avi"), "rb").read()
    assert prepare.prepare(root, out, gop=4, log=lambda s: None)[0]["failed"] == 1  # the copy is no success
    synthetic.write_video(os.path.join(root, "vids", "broken.avi"), np.stack([id_frame(i) for i in range(12)]))
    assert prepare.prepare(root, out, gop=4, log=lambda s: None)[0] == {"written": 1, "done": 3, "failed": 0}
    assert decode.decodable_frames(broken) == 12 and not [f for f in os.listdir(os.path.join(out, "vids"))
                                                           if f.startswith(".")]


def test_an_output_cut_short_is_a_failure(source, tmp_path, monkeypatch):
    """A write that fails quietly (a full disk under the muxer) leaves fewer frames than were encoded:
    the output is not renamed into place."""
    def short_write(path, frames, **kw):
        synthetic.write_video(path, np.stack([id_frame(i) for i in range(5)]))
        return N
    monkeypatch.setattr(prepare, "write_video", short_write)
    out = str(tmp_path / "dense")
    counts, failed = prepare.prepare(source, out, gop=4, log=lambda s: None)
    assert counts["failed"] == 4 and counts["written"] == 0
    mark = open(os.path.join(out, "vids", ".prepare-failed-long.avi.txt")).read()
    assert mark.startswith("OSError: the output holds 5 of the 80 frames written")
    with pytest.raises(SystemExit, match=r"^prepare: 4 of 4 videos failed"):
        data.main(["prepare", "--data-root", source, "--out", out, "--workers", "1"])


def test_absolute_paths_in_lists_point_at_the_prepared_copy(source, tmp_path):
    root, out, lines = str(tmp_path / "src"), str(tmp_path / "dense"), []
    shutil.copytree(source, root)
    elsewhere = synthetic.write_video(str(tmp_path / "elsewhere.avi"), np.stack([id_frame(i) for i in range(12)])) and \
        str(tmp_path / "elsewhere.avi")
    with open(os.path.join(root, "train.txt"), "w") as f:
        f.write(f"{root}/vids/long.avi 0\n{root}/vids/h264.mp4 1\n{elsewhere} 1\n")
    prepare.prepare(root, out, gop=4, log=lines.append)
    want = f"{out}/vids/long.avi 0\n{out}/vids/h264.mp4 1\n{elsewhere} 1\n"
    assert open(os.path.join(out, "train.txt")).read() == want
    assert any("train.txt: 1 lines hold an absolute path outside --data-root" in ln for ln in lines)
    _, train = layouts.parse_dataset("list", out, 1, True)
    assert [p for p, _ in train] == [f"{out}/vids/long.avi", f"{out}/vids/h264.mp4", elsewhere]
    assert prepare.key_interval(train[0][0]) <= 4


# ----------------------------------------------------------------------------------------------- workers and signals

def child_pids(pid):
    """Live (not zombie) processes whose parent is `pid`."""
    out = []
    for d in os.listdir("/proc"):
        try:
            stat = open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(stat[1]) == pid and stat[0] != "Z":
            out.append(int(d))
    return out


def alive(pid):
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_pool_workers_end_with_their_parent(tmp_path, sig):
    """SIGKILL or SIGTERM to `prepare`: its pool workers are gone within seconds and write nothing more."""
    root = tmp_path / "src"
    root.mkdir()
    for i in range(6):
        (root / f"v{i}.avi").write_bytes(b"x")
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {REPO!r})
        from support import prepare
        def slow(src, dst, frames, gop):
            time.sleep(60)
            open(dst, "w").write("late")
            return "written"
        prepare.prepare_one = slow
        prepare.prepare({str(root)!r}, {str(tmp_path / "out")!r}, workers=2)
        """)
    proc, workers = subprocess.Popen([sys.executable, "-c", script]), []
    try:
        deadline = time.time() + 30
        while len(child_pids(proc.pid)) < 2 and time.time() < deadline:
            time.sleep(0.1)
        workers = child_pids(proc.pid)
        assert len(workers) == 2
        os.kill(proc.pid, sig)
        assert proc.wait(timeout=20) in (-signal.SIGKILL, 128 + signal.SIGTERM)
        deadline = time.time() + 10
        while any(alive(w) for w in workers) and time.time() < deadline:
            time.sleep(0.1)
        assert not any(alive(w) for w in workers)
        assert not [f for f in os.listdir(tmp_path / "out") if not f.startswith(".")]
    finally:
        for pid in [proc.pid] + workers:  # nothing left behind, even when the test fails
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        proc.wait()


def test_loader_benchmark_prints_every_row(capsys):
    """`python bench.py loader` (experiments/loader.py) on a tiny temporary synthetic set: every row, per
    worker, and the loader's share of raw decode."""
    res = loader.main(["--videos", "4", "--clips", "8", "--batch-size", "4", "--segments", "2", "--frames", "2",
                       "--crop-size", "16", "--workers", "0"])
    out = capsys.readouterr().out
    for row in ("plain", "prepared", "frames", "raw", "raw, one converter"):
        assert res[row] > 0 and f"  {row} " in out
    assert f"plain loader at {res['share']:.0f} % of raw decode per worker" in out
