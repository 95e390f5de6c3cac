"""`python data.py prepare`: re-encoded videos (key frame every --gop frames) and extracted frame folders
hold the same frames as the originals, a dataset built on the prepared root yields clips, and a second
run (or one after an interruption) finishes only what is missing."""
import os
import shutil

import av
import numpy as np
import pytest

import data
from support import layouts, prepare, synthetic
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


def test_reencoded_copy_keeps_every_frame_and_resumes(source, tmp_path):
    out = str(tmp_path / "dense")
    lines = []
    counts = prepare.prepare(source, out, gop=4, log=lines.append)
    assert counts == {"written": 3, "done": 0, "failed": 1}
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
    again = prepare.prepare(source, out, gop=4, log=lines.append)
    assert again == {"written": 0, "done": 4, "failed": 0}
    os.remove(os.path.join(out, "vids", "h264.mp4"))
    with open(os.path.join(out, "vids", ".prepare-tmp-h264.mp4"), "wb") as f:
        f.write(b"partial")
    assert prepare.prepare(source, out, gop=4, log=lines.append) == {"written": 1, "done": 3, "failed": 0}
    assert sorted(os.listdir(os.path.join(out, "vids"))) == ["broken.avi", "gaps.avi", "h264.mp4", "long.avi"]


def test_frame_folders_read_like_the_videos(source, tmp_path):
    out = str(tmp_path / "frames")
    assert prepare.prepare(source, out, frames=True, workers=2, log=lambda s: None)["written"] == 3
    folder = os.path.join(out, "vids", "gaps.avi")  # a folder carrying the video's name
    assert os.path.isdir(folder) and len(os.listdir(folder)) == N
    assert data.count_frames(folder) == N
    idx = [0, 9, 10, 50, 79]
    assert frame_ids(data.read_frames(folder, idx)) == idx
    _, train = layouts.parse_dataset("list", out, 1, True)
    assert [os.path.relpath(p, out) for p, _ in train] == [os.path.join(*r.split("/")) for r in
                                                             ("vids/long.avi", "vids/h264.mp4", "vids/gaps.avi",
                                                              "vids/broken.avi")]
    ds = data.build_dataset("list", out, train=False, segments=2, frames=2, crop_size=16)
    assert ds[1][0].shape == (1, 4, 3, 16, 16)


def test_in_place_replaces_the_videos_once(source, tmp_path, capsys):
    root = str(tmp_path / "copy")
    shutil.copytree(source, root)
    data.main(["prepare", "--data-root", root, "--gop", "8", "--workers", "1"])
    assert "prepare: 4/4 videos (3 written, 0 already done, 1 failed)" in capsys.readouterr().out
    for rel in GOOD:
        assert prepare.key_interval(os.path.join(root, rel)) <= 8
        assert frame_ids(data.read_frames(os.path.join(root, rel), [5, 70], N)) == [5, 70]
    assert not [f for f in os.listdir(os.path.join(root, "vids")) if f.startswith(".")]
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
