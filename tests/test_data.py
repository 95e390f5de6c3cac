"""Tests for data.py, all on real video/JPEG files written into tmp_path (tiny: 32x32, few frames)."""
import os
import shutil
import warnings

import av
import numpy as np
import pytest
import torch

import backbones
import data
from support import decode, framecounts, layouts, probe, synthetic


def level(i):
    """Brightness that encodes frame number i (3 grey levels apart survive mpeg4/h264 at these rates)."""
    return 20 + 3 * i


def write_numbered(path, n, size=32, codec="mpeg4", gop=10):
    """A video whose frame i is uniform grey at level(i)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    frames = np.stack([np.full((size, size, 3), level(i), np.uint8) for i in range(n)])
    synthetic.write_video(path, frames, codec=codec, gop=gop)
    return path


def frame_numbers(frames):
    """Recover the frame number from each decoded frame's mean brightness."""
    return [int(round((float(f.mean()) - 20) / 3)) for f in frames]


@pytest.fixture(scope="module")
def proto(tmp_path_factory):
    """One tiny encoded video (24 frames) copied to every path a layout test needs."""
    return write_numbered(str(tmp_path_factory.mktemp("proto") / "p.avi"), 24)


def put(proto, path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    shutil.copy(proto, path)


def write_text(path, lines, crlf=False):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", newline="") as f:
        f.write("".join(ln + ("\r\n" if crlf else "\n") for ln in lines))


# ----------------------------------------------------------------------------------------------- layouts

def test_ucf101_layout_crlf_and_case_fallback(tmp_path, proto):
    root = str(tmp_path)
    lists = os.path.join(root, "ucfTrainTestlist")
    write_text(os.path.join(lists, "classInd.txt"), ["1 ApplyEyeMakeup", "2 HandstandPushups"], crlf=True)
    vids = ["ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi", "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi",
            "HandstandPushups/v_HandStandPushups_g08_c01.avi", "HandstandPushups/v_HandStandPushups_g01_c01.avi"]
    for v in vids:
        # the file on disk spells the folder differently from the list (as in the official archive)
        put(proto, os.path.join(root, "UCF-101", v.replace("HandstandPushups/", "HandStandPushups/")))
    write_text(os.path.join(lists, "trainlist01.txt"), [f"{vids[0]} 1", f"{vids[2]} 2"], crlf=True)
    write_text(os.path.join(lists, "testlist01.txt"), [vids[1], vids[3]], crlf=True)
    # splits 2 and 3 swap the groups (a different list per split, as in the archive)
    for k in (2, 3):
        write_text(os.path.join(lists, f"trainlist0{k}.txt"), [f"{vids[1]} 1", f"{vids[3]} 2"])
        write_text(os.path.join(lists, f"testlist0{k}.txt"), [vids[0], vids[2]] if k == 2 else [vids[2]])
    classes, train = layouts.parse_dataset("ucf101", root, 1, True)
    _, test = layouts.parse_dataset("ucf101", root, 1, False)
    assert classes == ["ApplyEyeMakeup", "HandstandPushups"]
    rel = lambda s: [(os.path.relpath(p, os.path.join(root, "UCF-101")).replace(os.sep, "/").lower(), l) for p, l in s]
    assert rel(train) == [(vids[0].lower(), 0), (vids[2].lower(), 1)]
    assert rel(test) == [(vids[1].lower(), 0), (vids[3].lower(), 1)]
    assert all(os.path.isfile(p) for p, _ in train + test)
    assert rel(layouts.parse_dataset("ucf101", root, 2, True)[1]) == [(vids[1].lower(), 0), (vids[3].lower(), 1)]
    assert rel(layouts.parse_dataset("ucf101", root, 2, False)[1]) == [(vids[0].lower(), 0), (vids[2].lower(), 1)]
    assert rel(layouts.parse_dataset("ucf101", root, 3, False)[1]) == [(vids[2].lower(), 1)]


def test_hmdb51_layout(tmp_path, proto):
    root = str(tmp_path)
    sdir = os.path.join(root, "testTrainMulti_7030_splits")
    for cls, names in {"brush_hair": ["a.avi", "b.avi", "c.avi"], "cartwheel": ["d.avi", "e.avi", "f.avi"]}.items():
        for n in names:
            put(proto, os.path.join(root, "hmdb51_org", cls, n))
        write_text(os.path.join(sdir, f"{cls}_test_split1.txt"), [f"{names[0]} 1 ", f"{names[1]} 2 ", f"{names[2]} 0 "],
                   crlf=True)
        write_text(os.path.join(sdir, f"{cls}_test_split2.txt"), [f"{names[0]} 2 ", f"{names[1]} 1 ", f"{names[2]} 1 "])
        write_text(os.path.join(sdir, f"{cls}_test_split3.txt"), [f"{names[0]} 0 ", f"{names[1]} 2 ", f"{names[2]} 1 "])
    classes, tr1 = layouts.parse_dataset("hmdb51", root, 1, True)
    _, te1 = layouts.parse_dataset("hmdb51", root, 1, False)
    _, tr2 = layouts.parse_dataset("hmdb51", root, 2, True)
    base = lambda s: [(os.path.basename(p), l) for p, l in s]
    assert classes == ["brush_hair", "cartwheel"]
    assert base(tr1) == [("a.avi", 0), ("d.avi", 1)]
    assert base(te1) == [("b.avi", 0), ("e.avi", 1)]
    assert base(tr2) == [("b.avi", 0), ("c.avi", 0), ("e.avi", 1), ("f.avi", 1)]
    # split 3: "1" = train, "2" = test, "0" = unused
    assert base(layouts.parse_dataset("hmdb51", root, 3, True)[1]) == [("c.avi", 0), ("f.avi", 1)]
    assert base(layouts.parse_dataset("hmdb51", root, 3, False)[1]) == [("b.avi", 0), ("e.avi", 1)]


def test_sthv1_layout_reads_jpeg_frames(tmp_path):
    from PIL import Image
    root = str(tmp_path)
    fdir = os.path.join(root, "20bn-something-something-v1")
    for vid, n in (("100", 5), ("200", 7), ("300", 6)):
        os.makedirs(os.path.join(fdir, vid))
        for i in range(n):
            Image.fromarray(np.full((24, 32, 3), level(i), np.uint8)).save(os.path.join(fdir, vid, f"{i + 1:05d}.jpg"),
                                                                            quality=95)
    write_text(os.path.join(root, "something-something-v1-labels.csv"),
               ["Holding something", "Pushing something from left to right"])
    write_text(os.path.join(root, "something-something-v1-train.csv"),
               ["100;Pushing something from left to right", "200;Holding something"])
    write_text(os.path.join(root, "something-something-v1-validation.csv"), ["300;Holding something"])
    classes, train = layouts.parse_dataset("sthv1", root, 1, True)
    _, val = layouts.parse_dataset("sthv1", root, 1, False)
    assert classes == ["Holding something", "Pushing something from left to right"]
    assert [(os.path.basename(p), l) for p, l in train] == [("100", 1), ("200", 0)]
    assert [(os.path.basename(p), l) for p, l in val] == [("300", 0)]
    assert data.count_frames(train[1][0]) == 7
    assert frame_numbers(data.read_frames(train[1][0], [6, 0, 3, 9])) == [6, 0, 3, 6]  # 9 clamps to the last
    ds = data.build_dataset("sthv1", root, train=True, segments=2, frames=2, crop_size=16)
    assert ds.flip is False  # directional labels: never flipped
    assert ds[0][0].shape == (4, 3, 16, 16)


def test_kinetics_csv_and_folder_layouts_and_minikinetics(tmp_path, proto):
    root = str(tmp_path / "csv")
    header = "label,youtube_id,time_start,time_end,split"
    write_text(os.path.join(root, "annotations", "train.csv"),
               [header, "abseiling,aaa,14,24,train", '"air drumming",bbb,0,10,train', "abseiling,gone,1,11,train"])
    write_text(os.path.join(root, "annotations", "val.csv"), [header, "air drumming,ccc,5,15,val"])
    put(proto, os.path.join(root, "train", "abseiling", "aaa_000014_000024.mp4"))
    put(proto, os.path.join(root, "train", "bbb.mp4"))  # flat, named by id only
    put(proto, os.path.join(root, "val", "air_drumming", "ccc_000005_000015.mp4"))
    with pytest.warns(RuntimeWarning, match="1 videos listed"):
        classes, train = layouts.parse_dataset("kinetics400", root, 1, True)
    _, val = layouts.parse_dataset("kinetics400", root, 1, False)
    assert classes == ["abseiling", "air drumming"]
    assert [(os.path.basename(p), l) for p, l in train] == [("aaa_000014_000024.mp4", 0), ("bbb.mp4", 1)]
    assert [(os.path.basename(p), l) for p, l in val] == [("ccc_000005_000015.mp4", 1)]

    # minikinetics: same layout filtered by the id lists
    write_text(os.path.join(root, "train_ytid_list.txt"), ["bbb"])
    write_text(os.path.join(root, "val_ytid_list.txt"), ["ccc"], crlf=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mclasses, mtrain = layouts.parse_dataset("minikinetics", root, 1, True)
        _, mval = layouts.parse_dataset("minikinetics", root, 1, False)
    assert mclasses == ["air drumming"]
    assert [(os.path.basename(p), l) for p, l in mtrain] == [("bbb.mp4", 0)]
    assert [(os.path.basename(p), l) for p, l in mval] == [("ccc_000005_000015.mp4", 0)]

    froot = str(tmp_path / "folders")
    for split, lab, name in (("train", "b", "x.mp4"), ("train", "a", "y.mp4"), ("val", "b", "z.mp4")):
        put(proto, os.path.join(froot, split, lab, name))
    classes, train = layouts.parse_dataset("kinetics400", froot, 1, True)
    _, val = layouts.parse_dataset("kinetics400", froot, 1, False)
    assert classes == ["a", "b"]
    assert [(os.path.basename(p), l) for p, l in train] == [("y.mp4", 0), ("x.mp4", 1)]
    assert [(os.path.basename(p), l) for p, l in val] == [("z.mp4", 1)]
    assert data.build_dataset("kinetics400", froot, train=True).dense


def test_list_layout_videos_and_frame_folders(tmp_path, proto):
    root = str(tmp_path)
    put(proto, os.path.join(root, "vids", "one.avi"))
    put(proto, os.path.join(root, "vids", "two.avi"))
    os.makedirs(os.path.join(root, "frames", "three"))
    write_text(os.path.join(root, "train.txt"), ["vids/one.avi 0", "frames/three 12 2"], crlf=True)
    write_text(os.path.join(root, "val.txt"), ["vids/two.avi 1"])
    write_text(os.path.join(root, "train_split2.txt"), ["vids/two.avi 0"])
    write_text(os.path.join(root, "test_split2.txt"), ["vids/one.avi 0"])
    classes, train = layouts.parse_dataset("list", root, 1, True)
    vclasses, val = layouts.parse_dataset("list", root, 1, False)
    assert classes == vclasses == ["0", "1", "2"]  # label count from both lists
    assert [(os.path.relpath(p, root), l) for p, l in train] == [(os.path.join("vids", "one.avi"), 0),
                                                                 (os.path.join("frames", "three"), 2)]
    assert [(os.path.relpath(p, root), l) for p, l in val] == [(os.path.join("vids", "two.avi"), 1)]
    _, val2 = layouts.parse_dataset("list", root, 2, False)
    assert [(os.path.relpath(p, root), l) for p, l in val2] == [(os.path.join("vids", "one.avi"), 0)]
    write_text(os.path.join(root, "classes.txt"), ["walk", "run", "jump"])
    assert layouts.parse_dataset("list", root, 1, True)[0] == ["walk", "run", "jump"]
    # the frame folder decodes as JPEGs through the same dataset path
    from PIL import Image
    for i in range(4):
        Image.fromarray(np.full((16, 16, 3), level(i), np.uint8)).save(os.path.join(root, "frames", "three", f"img_{i:05d}.jpg"))
    ds = data.build_dataset("list", root, train=False, segments=2, frames=2, crop_size=16)
    assert ds.samples[0][1] == 1 and ds[0][0].shape == (1, 4, 3, 16, 16)
    tr = data.build_dataset("list", root, train=True, segments=2, frames=2, crop_size=16)
    assert tr[1][0].shape == (4, 3, 16, 16) and tr[1][1] == 2


@pytest.mark.parametrize("name", ["ucf101", "hmdb51", "sthv1", "kinetics400", "minikinetics", "list"])
def test_missing_root_or_file_is_a_clear_error(tmp_path, name):
    with pytest.raises(FileNotFoundError, match="Expected layout") as e:
        layouts.parse_dataset(name, str(tmp_path / "nope"), 1, True)
    assert "nope" in str(e.value)
    with pytest.raises(FileNotFoundError, match="Expected layout"):  # root exists but is empty
        layouts.parse_dataset(name, str(tmp_path), 1, True)


# ----------------------------------------------------------------------------------------------- sampling

@pytest.mark.parametrize("F", [1, 5, 8, 30, 64, 65, 300])
def test_sparse_indices(F):
    S, T = 4, 8
    for train in (True, False):
        rng = np.random.default_rng(F)
        idx = data.sparse_indices(F, S, T, train, rng)
        assert idx.shape == (S * T,) and idx.min() >= 0 and idx.max() <= F - 1
        seg = idx.reshape(S, T)
        if F >= T:  # T consecutive frames in each segment, segments in order
            assert (np.diff(seg, axis=1) == 1).all()
            assert (np.diff(seg[:, 0]) >= 0).all()
        else:  # short video: consecutive until the end, then the last frame repeated
            assert (np.diff(seg, axis=1) >= 0).all() and seg[:, -1].max() == F - 1
        if F - T + 1 >= S:  # segment k's start lies inside its own part of the video
            part = (F - T + 1) / S
            assert all(k * part - 1 <= seg[k, 0] < (k + 1) * part + 1 for k in range(S))
    a = data.sparse_indices(F, S, T, False)
    assert (a == data.sparse_indices(F, S, T, False)).all()  # deterministic at test time


def test_sparse_matches_tsn_formula_and_is_random_in_training():
    F, S, T = 100, 4, 8
    tick = (F - T + 1) / S
    assert data.sparse_indices(F, S, T, False).reshape(S, T)[:, 0].tolist() == [int(tick / 2 + tick * k) for k in range(S)]
    starts = {tuple(data.sparse_indices(F, S, T, True, np.random.default_rng(s)).reshape(S, T)[:, 0]) for s in range(10)}
    assert len(starts) > 1
    c0 = data.sparse_indices(F, S, T, False, clip=0, clips=2)
    c1 = data.sparse_indices(F, S, T, False, clip=1, clips=2)
    assert (c0 < c1).any() and not (c0 == c1).all()


@pytest.mark.parametrize("F", [3, 16, 17, 250])
def test_dense_indices(F):
    L = 16
    for train in (True, False):
        idx = data.dense_indices(F, L, train, np.random.default_rng(0))
        assert idx.shape == (L,) and idx.min() >= 0 and idx.max() <= F - 1
        if F >= L:
            assert (np.diff(idx) == 1).all()
        else:
            assert idx[0] == 0 and (np.diff(idx) >= 0).all() and idx[-1] == F - 1
    clips = [data.dense_indices(F, L, False, clip=c, clips=3) for c in range(3)]
    assert (clips[0] == data.dense_indices(F, L, False, clip=0, clips=3)).all()
    if F >= 3 * L:  # evenly spaced, non-overlapping clips across the video
        starts = [c[0] for c in clips]
        assert starts[0] < starts[1] < starts[2] and starts[0] < F / 3 <= starts[1] < 2 * F / 3 <= starts[2]


# ----------------------------------------------------------------------------------------------- decoding

@pytest.mark.parametrize("codec,ext", [("mpeg4", "avi"), ("libx264", "mp4")])
def test_decoded_frames_match_encoded_order_with_and_without_seek(tmp_path, codec, ext):
    path = write_numbered(str(tmp_path / f"v.{ext}"), 60, codec=codec, gop=10)
    assert data.count_frames(path) == 60
    # from the start, out of order, repeated, past the end (repeats the last frame)
    assert frame_numbers(data.read_frames(path, [3, 0, 1, 1, 70])) == [3, 0, 1, 1, 59]
    # far from the start: the seek path (pts-based indices) must give the same frames
    want = list(range(41, 49)) + [55]
    got = data.read_frames(path, want)
    assert got.shape == (9, 32, 32, 3) and got.dtype == np.uint8
    assert frame_numbers(got) == want


def test_dataset_item_takes_the_sampled_frames(tmp_path):
    path = write_numbered(str(tmp_path / "v.avi"), 40)
    ds = data.VideoDataset([(path, 0)], ["a"], train=False, segments=2, frames=3, crop_size=16)
    clip, label = ds[0]
    assert clip.shape == (1, 6, 3, 16, 16) and label == 0
    assert clip.dtype == torch.uint8                              # pixels: the model normalises them
    assert frame_numbers(clip[0].numpy()) == data.sparse_indices(40, 2, 3, False).tolist()


def test_corrupt_and_empty_videos_are_skipped_and_counted(tmp_path):
    good = write_numbered(str(tmp_path / "good.avi"), 12)
    corrupt = str(tmp_path / "corrupt.avi")
    with open(good, "rb") as f:
        blob = f.read()
    with open(corrupt, "wb") as f:  # a header then garbage
        f.write(blob[:64] + bytes(np.random.default_rng(0).integers(0, 256, 2000, dtype=np.uint8)))
    empty = str(tmp_path / "empty.avi")
    with open(empty, "wb"):
        pass
    zero = str(tmp_path / "zero.avi")  # a valid container (header, stream) with no frames
    with av.open(zero, "w") as c:
        st = c.add_stream("mpeg4", rate=25)
        st.width, st.height, st.pix_fmt = 32, 32, "yuv420p"
        c.start_encoding()
    assert os.path.getsize(zero) > 0 and data.count_frames(zero) == 0
    ds = data.VideoDataset([(corrupt, 1), (good, 0), (empty, 1), (zero, 1)], ["a", "b"], train=True,
                           segments=2, frames=2, crop_size=16)
    with pytest.warns(data.SkippedVideoWarning) as rec:
        clip, label = ds[0]
    assert any("corrupt.avi" in str(w.message) for w in rec)
    assert clip.shape == (4, 3, 16, 16) and label == 0  # the good video stood in
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in (2, 3):
            assert ds[i][1] == 0
        ds[0]
    # each bad file counted (also when tried as another item's substitute), the good one never
    assert set(ds.skipped) == {corrupt, empty, zero} and ds.skipped[corrupt] == 2
    assert sum(ds.skipped.values()) >= 4
    assert "corrupt.avi" in ds.report_skipped()
    bad = data.VideoDataset([(corrupt, 0), (empty, 0)], ["a"], train=True, segments=2, frames=2, crop_size=16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(RuntimeError, match="every video failed"):
            bad[0]


# ----------------------------------------------------------------------------------------------- synthetic

def test_synthetic_is_deterministic_and_shares_backgrounds(tmp_path):
    kw = dict(classes=3, videos_per_class=4, size=32, frames=8, seed=5, bias_train=2, bias_test=1)
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    synthetic.write_synthetic(a, **kw)
    synthetic.write_synthetic(b, **kw)
    files = sorted(os.path.relpath(os.path.join(d, f), a) for d, _, fs in os.walk(a) for f in fs)
    assert len([f for f in files if f.endswith(".avi")]) == 3 * (4 + 2 + 1 + 1)
    assert len([f for f in files if f.endswith(".txt")]) == 1 + 2 * 5  # classInd + splits 1..5
    for f in files:
        with open(os.path.join(a, f), "rb") as fa, open(os.path.join(b, f), "rb") as fb:
            assert fa.read() == fb.read(), f
    c = str(tmp_path / "c")
    synthetic.write_synthetic(c, **{**kw, "seed": 6})
    some = "UCF-101/MoveRight/v_MoveRight_g01_c01.avi"
    assert open(os.path.join(a, some), "rb").read() != open(os.path.join(c, some), "rb").read()
    with open(os.path.join(a, "ucfTrainTestlist", "trainlist01.txt"), "rb") as f:
        assert f.read().count(b"\r\n") == 9  # CRLF like the official lists

    # splits 1-3: every class uses the whole background pool; the decoded pixels agree with the record
    import json
    meta = json.load(open(os.path.join(a, "synth_meta.json")))
    per_class = {}
    for rel, v in meta["videos"].items():
        if "trainlist01.txt" in v["lists"] or "testlist01.txt" in v["lists"]:
            per_class.setdefault(v["class"], set()).add(v["background"])
    assert all(s == set(range(3)) for s in per_class.values()) and len(per_class) == 3
    bgs, _ = synthetic.synthetic_pool(5, 32 + 2 * 2, 3)
    for rel, v in list(meta["videos"].items())[::4]:
        frame = data.read_frames(os.path.join(a, "UCF-101", rel), [0])[0].astype(float)
        dists = [np.abs(frame.mean((0, 1)) - bg[2:-2, 2:-2].mean((0, 1))).sum() for bg in bgs]
        assert int(np.argmin(dists)) == v["background"]

    classes, train = layouts.parse_dataset("synthetic", a, 1, True)
    _, test = layouts.parse_dataset("synthetic", a, 1, False)
    assert classes == ["MoveRight", "MoveLeft", "MoveUp"] and len(train) == 9 and len(test) == 3


def list_paths(root, split, train):
    return [p for p, _ in layouts.parse_dataset("synthetic", root, split, train)[1]]


def test_static_bias_split_has_the_intended_cue_correlation(tmp_path):
    import json
    root = str(tmp_path / "s")
    synthetic.write_synthetic(root, classes=4, videos_per_class=4, size=16, frames=4, bias_train=10, bias_test=6,
                         bias=0.8)
    meta = json.load(open(os.path.join(root, "synth_meta.json")))
    lists = os.path.join(root, "ucfTrainTestlist")
    assert open(os.path.join(lists, "trainlist05.txt"), "rb").read() == \
        open(os.path.join(lists, "trainlist04.txt"), "rb").read()
    train, ind, conflict = list_paths(root, 4, True), list_paths(root, 4, False), list_paths(root, 5, False)
    assert (len(train), len(ind), len(conflict)) == (40, 24, 24)
    assert list_paths(root, 5, True) == train
    assert not set(train) & set(ind) and not set(train) & set(conflict) and not set(ind) & set(conflict)
    assert not set(train + ind + conflict) & set(list_paths(root, 1, True) + list_paths(root, 1, False))
    # training: round(0.8 * 10) = 8 of each class's 10 videos show its own background; in-distribution
    # test: round(0.8 * 6) = 5 of 6; bias-conflicting test: none
    assert synthetic.static_cue_agreement(root, 4, True) == pytest.approx(0.8)
    assert synthetic.static_cue_agreement(root, 4, False) == pytest.approx(20 / 24)
    assert synthetic.static_cue_agreement(root, 5, False) == 0.0
    # in the conflicting list each class shows every other class's background, about equally often
    videos = os.path.join(root, "UCF-101")
    cues = {}
    for p in conflict:
        v = meta["videos"][os.path.relpath(p, videos).replace(os.sep, "/")]
        cues.setdefault(meta["classes"].index(v["class"]), []).append(v["background"])
    for ci, bs in cues.items():
        counts = [bs.count(b) for b in range(4) if b != ci]
        assert ci not in bs and min(counts) == max(counts) == 2
    # splits 1-3 stay scene-balanced: no class owns a background there
    assert synthetic.static_cue_agreement(root, 1, True) < 0.5


def test_default_synthetic_plan_sizes_and_cue_fractions():
    """The default set (not written here): 4 classes; splits 1-3 of 120/40 videos; the static-bias
    training list of 240 videos at 90 % cue agreement, two test lists of 120 (>= 100: one video <= 1
    point), in-distribution at 90 %, conflicting at 0 %."""
    plan = synthetic.synthetic_plan(4, 40, 40 * 3 // 2, 40 * 3 // 4, synthetic.SYNTH_BIAS)
    for name, n, agree in (("trainlist04.txt", 240, 0.9), ("testlist04.txt", 120, 0.9),
                           ("testlist05.txt", 120, 0.0), ("trainlist01.txt", 120, None), ("testlist01.txt", 40, None)):
        vs = [v for v in plan if name in v.lists]
        assert len(vs) == n, name
        share = sum(v.background == v.ci for v in vs) / n
        assert share == pytest.approx(agree) if agree is not None else 0.15 < share < 0.35, (name, share)
        # the object look carries no class information: each class shows every look about equally often
        for ci in range(4):
            looks = [v.sprite for v in vs if v.ci == ci]
            assert max(looks.count(k) for k in range(3)) - min(looks.count(k) for k in range(3)) <= 2
    assert len({(v.ci, v.number) for v in plan}) == len(plan)  # one generator seed per video


def test_synthetic_motion_does_not_depend_on_the_cue():
    """Same generator seed, different background (the cue) and object colour: the object and the
    distractor cover exactly the same pixels in every frame, so motion is drawn the same way whatever
    the cue."""
    size, m = 32, 2
    masks = []
    for value, look in ((3, (0, (200, 40, 40))), (250, (0, (10, 120, 220)))):
        bg = np.full((size + 2 * m, size + 2 * m, 3), value, np.uint8)
        video = synthetic._synth_video("MoveUp", bg, look, np.random.default_rng([0, 2, 7]), size, 12)
        masks.append((video != value).any(-1))
    assert masks[0].any() and (masks[0] == masks[1]).all()


def test_split_4_and_5_only_for_synthetic(tmp_path):
    root = str(tmp_path / "s")
    synthetic.write_synthetic(root, classes=2, videos_per_class=4, size=16, frames=4)
    for k in (1, 2, 3, 4, 5):
        assert layouts.parse_dataset("synthetic", root, k, True)[1] and layouts.parse_dataset("synthetic", root, k, False)[1]
    with pytest.raises(ValueError, match=r"synthetic: --split must be 1, 2, 3, 4 or 5, got 6"):
        layouts.parse_dataset("synthetic", root, 6, True)
    for k in (4, 5):
        with pytest.raises(ValueError, match=r"ucf101: --split must be 1, 2 or 3, got %d .*only for --dataset "
                                             r"synthetic" % k):
            layouts.parse_dataset("ucf101", root, k, True)
    with pytest.raises(SystemExit, match="--bias must be a fraction"):
        data.main(["synth", "--out", str(tmp_path / "t"), "--bias", "1.5"])


def test_ensure_synthetic_writes_once_and_refuses_foreign_folder(tmp_path):
    root = str(tmp_path / "s")
    synthetic.ensure_synthetic(root, classes=2, videos_per_class=4, size=16, frames=4)
    stamp = os.path.getmtime(os.path.join(root, "synth_meta.json"))
    synthetic.ensure_synthetic(root)
    assert os.path.getmtime(os.path.join(root, "synth_meta.json")) == stamp
    assert not [d for d in os.listdir(tmp_path) if d.startswith(".synth-tmp")]
    other = tmp_path / "other"
    other.mkdir()
    (other / "x.txt").write_text("hi")
    with pytest.raises(FileNotFoundError, match="synth_meta.json"):
        synthetic.ensure_synthetic(str(other))


# ----------------------------------------------------------------------------------------------- loaders

@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("synth") / "set")
    synthetic.write_synthetic(root, classes=2, videos_per_class=8, size=32, frames=12, seed=1)
    return root


def test_synthetic_is_never_flipped_and_frame_counts_are_shared_by_workers(synth, monkeypatch):
    """Directional synthetic classes: no flip. Each video's frame count is read once per run: a count
    found by one worker is seen by the others, by the next epoch's workers and by the main process."""
    L = data.build_loaders("synthetic", synth, segments=2, frames=3, crop_size=16, batch_size=4, workers=2)
    ds = L.train.dataset
    assert ds.flip is False
    assert (ds._counts.shared == -1).all()
    L.train_sampler.set_epoch(0)
    assert sum(x.shape[0] for x, _ in L.train) == len(ds)
    assert ds._counts.shared.tolist() == [12] * len(ds)   # found in the workers, seen here
    def no_reread(video):
        raise AssertionError(f"{video.path}: frame count read twice")
    monkeypatch.setattr(decode.Video, "frames", property(no_reread))   # forked workers inherit the patch
    L.train_sampler.set_epoch(1)
    assert sum(x.shape[0] for x, _ in L.train) == len(ds)
    assert not ds.skipped                                  # a reread would have failed -> skipped


def float_pipeline(frames, box, size, flip=False):
    """What an item was before items became uint8: crop, resize and flip in uint8, then float in [0, 1]
    and ImageNet's mean and std, in the dataset (written out here as it was)."""
    y0, x0, ch, cw = box
    x = torch.from_numpy(frames[:, y0:y0 + ch, x0:x0 + cw]).permute(0, 3, 1, 2)
    if (ch, cw) != (size, size):
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                                            antialias=True)
    x = (x.flip(-1) if flip else x).contiguous().float().div_(255.0)
    return x.sub_(torch.tensor(data.IMAGENET_MEAN).view(1, 3, 1, 1)).div_(torch.tensor(data.IMAGENET_STD).view(1, 3, 1, 1))


def test_uint8_items_normalised_by_the_model_equal_the_float_pipeline(synth, monkeypatch):
    """Items are uint8 pixels; the model normalises them on its device (DAModel.forward), data.normalize
    elsewhere. Both give the frames the float pipeline gave, training items (multi-scale crop, flip) and
    test items (2 clips x 3 crops) alike, and the model's output on a uint8 clip is its output on them."""
    seen, real = [], data.crop_pixels
    monkeypatch.setattr(data, "crop_pixels", lambda *a: seen.append((a[3:], float_pipeline(*a))) or real(*a))
    samples, classes = layouts.parse_dataset("synthetic", synth, 1, True)[::-1]
    kw = dict(segments=2, frames=3, crop_size=20, seed=5)
    tr = data.VideoDataset(samples, classes, train=True, flip=True, **kw)          # flips, unlike synthetic's own
    te = data.VideoDataset(samples, classes, train=False, clips=2, crops=3, **kw)
    model = backbones.build_model("tsm", 2, input="da", segments=2, frames=3, depth=18, small=True).eval()
    flipped = 0
    for ds, k in [(tr, k) for k in range(8)] + [(te, 0), (te, 3)]:
        seen.clear()
        clip, _ = ds[k]
        views = clip[None] if ds.train else clip                              # (V, S*T, 3, 20, 20) uint8
        old = torch.stack([x for _, x in seen])                                # the same, as the float pipeline
        flipped += sum(bool(f and f[0]) for f, _ in seen)
        assert views.dtype == torch.uint8 and views.shape == old.shape
        assert (data.normalize(views) - old).abs().max() <= 1e-6
        with torch.no_grad():
            a, b = model(views), model(old)
        assert (a.logits - b.logits).abs().max() <= 1e-6 and (a.pwtp.da - b.pwtp.da).abs().max() <= 1e-6
    assert 0 < flipped < 8                                                     # both kinds of training item
    still = probe.still_frame(clip)                                            # a test item's (6, 3, 20, 20)
    with pytest.raises(ValueError, match="normalize"):                         # a half-half mix is no uint8 image
        probe.conflict_clip(clip, still)
    mixed = probe.conflict_clip(clip, still, data.normalize)
    assert torch.equal(mixed, 0.5 * data.normalize(clip) + 0.5 * data.normalize(still)[:, None])


def test_loaders_shapes_views_and_overfit(synth):
    L = data.build_loaders("synthetic", synth, segments=2, frames=3, crop_size=24, batch_size=4, workers=0,
                           clips=2, crops=3)
    assert L.num_classes == 2 and L.classes == ["MoveRight", "MoveLeft"]
    L.train_sampler.set_epoch(0)
    x, y = next(iter(L.train))
    assert x.shape == (4, 6, 3, 24, 24) and y.shape == (4,) and x.dtype == torch.uint8
    assert len(L.train) == 12 // 4
    xv, yv = next(iter(L.val))
    assert xv.shape[1:] == (6, 6, 3, 24, 24)
    o = data.build_loaders("synthetic", synth, segments=2, frames=3, crop_size=24, batch_size=2, workers=0, overfit=3)
    assert o.train.dataset.samples == o.val.dataset.samples and len(o.train.dataset) == 3
    assert not o.val.dataset.train
    s = data.build_loaders("synthetic", synth, segments=2, frames=3, crop_size=24, batch_size=2, workers=0, subset=5)
    assert len(s.train.dataset) == 5 and set(s.train.dataset.samples) <= set(L.train.dataset.samples)


def test_resume_gives_exactly_the_remaining_batches_with_workers(synth):
    L = data.build_loaders("synthetic", synth, segments=2, frames=2, crop_size=16, batch_size=3, workers=0)
    L.train_sampler.set_epoch(4)
    full = list(L.train)
    assert len(full) == 4
    W = data.build_loaders("synthetic", synth, segments=2, frames=2, crop_size=16, batch_size=3, workers=2)
    W.train_sampler.set_epoch(4, skip_batches=1)
    assert len(W.train) == 3
    rest = list(W.train)
    assert len(rest) == 3
    for (a, ya), (b, yb) in zip(full[1:], rest):
        assert torch.equal(ya, yb) and torch.equal(a, b)  # same videos, same augmentation
    L.train_sampler.set_epoch(5)
    other = list(L.train)
    assert not all(torch.equal(a[1], b[1]) and torch.equal(a[0], b[0]) for a, b in zip(full, other))


def test_distributed_shards_cover_every_video(synth):
    ds = data.build_dataset("synthetic", synth, segments=1, frames=1, crop_size=8)
    n = len(ds)  # 12
    shards = [data.ResumableSampler(ds, 2, seed=0, rank=r, world_size=5) for r in range(5)]
    for s in shards:
        s.set_epoch(1)
    idx = [s.indices() for s in shards]
    assert len({len(i) for i in idx}) == 1  # equal per rank (padded, cut to whole batches)
    padded = [data.ResumableSampler(ds, 1, seed=0, rank=r, world_size=5) for r in range(5)]
    for s in padded:
        s.set_epoch(1)
    assert set(sum((s.indices() for s in padded), [])) == set(range(n))
    val = [data.ShardSampler(n, r, 5).indices() for r in range(5)]
    assert sorted(sum(val, [])) == list(range(n))  # each val video exactly once


def test_train_transform_multiscale_crop_and_flip_are_seeded(synth):
    ds = data.build_dataset("synthetic", synth, segments=2, frames=2, crop_size=20, seed=3)
    ds.set_epoch(2)
    a = ds[1][0]
    ds.set_epoch(2)
    assert torch.equal(a, ds[1][0])
    ds.set_epoch(3)
    assert not torch.equal(a, ds[1][0])
    boxes = {data.multiscale_crop_box(240, 320, np.random.default_rng(s)) for s in range(200)}
    for y0, x0, ch, cw in boxes:
        assert 0 <= y0 and y0 + ch <= 240 and 0 <= x0 and x0 + cw <= 320
        assert ch in [int(240 * s) for s in data.MULTISCALE] and cw in [int(240 * s) for s in data.MULTISCALE]
    assert len(boxes) > 20
    (y0, x0, ch, cw), = data.eval_crop_boxes(240, 320, 224, 1)
    assert ch == cw == round(240 * 224 / 256) and abs((x0 + cw / 2) - 160) <= 1
    three = data.eval_crop_boxes(240, 320, 224, 3)
    assert [b[1] for b in three] == [0, 40, 80] and all(b[2] == 240 for b in three)


def test_skips_in_worker_processes_reach_the_parent(tmp_path):
    good = write_numbered(str(tmp_path / "good.avi"), 8)
    bad = str(tmp_path / "bad.avi")
    with open(bad, "wb") as f:
        f.write(b"not a video" * 50)
    ds = data.VideoDataset([(good, 0), (bad, 1), (good, 0), (good, 0)], ["a", "b"], train=True,
                           segments=2, frames=2, crop_size=8)
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2)
    labels = torch.cat([y for _, y in loader])
    assert labels.tolist() == [0, 0, 0, 0]  # the bad one was replaced by a good one
    assert ds.skipped == {bad: 1}  # counted in a worker, visible here (shared memory)


# ----------------------------------------------------------------------------------------------- short videos

def write_short(path, n=60, keep=0.4):
    """An .avi whose header says n frames but whose bytes stop after `keep` of the file (a truncated
    download). Right half of frame i: grey at level(i); left half: noise, so that the frames, not the
    header, hold most of the bytes and the cut falls among the frames."""
    frames = np.stack([np.full((32, 32, 3), level(i), np.uint8) for i in range(n)])
    frames[:, :, :16] = np.random.default_rng(0).integers(0, 256, (n, 32, 16, 3))
    synthetic.write_video(path, frames, gop=10)
    with open(path, "rb") as f:
        blob = f.read()
    with open(path, "wb") as f:
        f.write(blob[: int(len(blob) * keep)])
    return path


def clip_numbers(clip):
    """Frame numbers of a uint8 clip (N, 3, H, W) written by write_short (right half)."""
    return frame_numbers(clip[..., clip.shape[-1] // 2 + 1:].numpy())


def test_short_video_is_sampled_from_its_decodable_frames_and_the_count_is_cached(tmp_path, monkeypatch):
    path = write_short(str(tmp_path / "short.avi"))
    assert data.count_frames(path) == 60  # the header still says 60
    true = data.decodable_frames(path)
    assert 5 <= true <= 30
    with pytest.raises(data.ShortVideo) as e:  # never padded with copies of the last frame
        data.read_frames(path, [0, 45])
    assert e.value.decoded == true and e.value.expected == 60
    last = frame_numbers(data.read_frames(path, [true - 1], true)[:, :, 16:])[0]

    cache = str(tmp_path / "counts.tsv")
    reads = []
    real = decode.Video.read
    monkeypatch.setattr(decode.Video, "read", lambda v, idx, n=None: reads.append(list(idx)) or real(v, idx, n))
    ds = data.VideoDataset([(path, 0)], ["a"], train=False, segments=4, frames=1, crop_size=16, count_cache=cache)
    with pytest.warns(data.ShortVideoWarning) as rec:
        clip, label = ds[0]
    assert len(rec) == 1 and "60" in str(rec[0].message) and f"only {true} decode" in str(rec[0].message)
    assert reads[-1] == data.sparse_indices(true, 4, 1, False).tolist() and max(reads[-1]) < true
    numbers = clip_numbers(clip[0])
    assert label == 0 and numbers == sorted(numbers) and numbers.count(last) <= 1 and len(set(numbers)) >= 3
    assert ds.num_frames(0) == true
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once: learned, no second warning or short decode
        assert torch.equal(ds[0][0], clip)
    with open(cache) as f:
        lines = f.read().splitlines()
    assert len(lines) == 1 and lines[0].split("\t")[0] == os.path.abspath(path) and lines[0].endswith(f"\t{true}")

    # a new dataset object starts from the cached count: no header read, one decode from the right count
    header_count = decode.Video.frames

    def no_header(video):
        raise AssertionError("header read although the count is cached")
    monkeypatch.setattr(decode.Video, "frames", property(no_header))
    reads.clear()
    again = data.VideoDataset([(path, 0)], ["a"], train=False, segments=4, frames=1, crop_size=16, count_cache=cache)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(again[0][0], clip)
    assert reads == [data.sparse_indices(true, 4, 1, False).tolist()]
    # a stale line (the file was replaced since) is ignored; a damaged line breaks nothing
    with open(cache, "a") as f:
        f.write("garbage\tline\n\x00\n")
    write_numbered(path, 40)
    monkeypatch.setattr(decode.Video, "frames", header_count)
    fresh = data.VideoDataset([(path, 0)], ["a"], train=True, segments=2, frames=2, crop_size=16, count_cache=cache)
    assert int(fresh._counts.shared[0]) == -1 and fresh.num_frames(0) == 40


def test_count_cache_location_and_inspect_lists_short_videos(tmp_path, proto, monkeypatch, capsys):
    root = str(tmp_path / "data")
    put(proto, os.path.join(root, "vids", "ok.avi"))
    write_short(os.path.join(root, "vids", "short.avi"))
    true = data.decodable_frames(os.path.join(root, "vids", "short.avi"))
    write_text(os.path.join(root, "train.txt"), ["vids/ok.avi 0", "vids/short.avi 1"])
    write_text(os.path.join(root, "val.txt"), ["vids/short.avi 1"])
    ds = data.build_dataset("list", root, train=True, segments=2, frames=2, crop_size=16)
    assert ds.count_cache == os.path.join(root, framecounts.COUNT_CACHE_NAME)  # writable root: the cache lives there
    with pytest.warns(data.ShortVideoWarning):
        ds[1]
    assert framecounts.cached_counts(ds.count_cache) == {os.path.abspath(os.path.join(root, "vids", "short.avi")): true}
    assert data.build_dataset("list", root, train=False, segments=2, frames=2).num_frames(0) == true

    os.remove(ds.count_cache)
    data.main(["inspect", "--dataset", "list", "--data-root", root])
    out = capsys.readouterr().out
    assert f"COUNT {os.path.join(root, 'vids', 'short.avi')}: header 60 frames, {true} decode" in out
    assert "ok.avi" not in out and "1 with a wrong header frame count" in out
    assert len(framecounts.cached_counts(ds.count_cache)) == 1  # inspect fills the cache (once, not per split)
    with open(ds.count_cache) as f:
        assert len(f.read().splitlines()) == 1

    # a read-only data root: the cache goes to ~/.cache, one file per root
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(framecounts.os, "access", lambda p, mode: False)
    a, b = framecounts.count_cache_path(root), framecounts.count_cache_path(str(tmp_path))
    assert a != b and all(p.startswith(str(tmp_path / "home" / ".cache" / "dynamic-appearance")) for p in (a, b))


# ----------------------------------------------------------------------------------------------- test protocol

def test_test_protocol_never_substitutes_an_unreadable_video(tmp_path, synth):
    good = write_numbered(str(tmp_path / "good.avi"), 12)
    other = write_numbered(str(tmp_path / "other.avi"), 20)
    bad = str(tmp_path / "bad.avi")
    with open(bad, "wb") as f:
        f.write(bytes(np.random.default_rng(1).integers(0, 256, 3000, dtype=np.uint8)))
    samples = [(good, 0), (bad, 1), (other, 1)]
    kw = dict(segments=2, frames=2, crop_size=16)
    ev = data.VideoDataset(samples, ["a", "b"], train=False, clips=2, substitute=False, **kw)
    with pytest.warns(data.SkippedVideoWarning) as rec:
        clip, label = ev[1]
    ref, ref_label = ev[0]
    assert label == -1 and clip.shape == ref.shape == (2, 4, 3, 16, 16) and clip.dtype == ref.dtype
    assert not clip.any() and ref.any() and ref_label == 0
    assert len(rec) == 1 and "bad.avi" in str(rec[0].message) and "label -1" in str(rec[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once
        assert ev[1][1] == -1
    assert ev.unreadable() == [bad] and ev.skipped[bad] == 2
    assert ev[2][1] == 1 and not torch.equal(ev[2][0], ref)  # the other items are their own videos
    labels = torch.cat([y for _, y in torch.utils.data.DataLoader(ev, batch_size=3)])
    assert labels.tolist() == [0, -1, 1]
    # training keeps substituting (with the counted warning)
    tr = data.VideoDataset(samples, ["a", "b"], train=True, **kw)
    with pytest.warns(data.SkippedVideoWarning):
        assert tr[1][1] in (0, 1) and tr.skipped[bad] == 1
    L = data.build_loaders("synthetic", synth, segments=1, frames=1, crop_size=8, batch_size=2, workers=0)
    assert L.train.dataset.substitute and not L.val.dataset.substitute
    o = data.build_loaders("synthetic", synth, segments=1, frames=1, crop_size=8, batch_size=2, workers=0, overfit=2)
    assert o.train.dataset.substitute and not o.val.dataset.substitute
    assert data.build_dataset("synthetic", synth, train=False, substitute=False).substitute is False


# ----------------------------------------------------------------------------------------------- split files

def ucf_root(root, proto, train_lines):
    lists = os.path.join(root, "ucfTrainTestlist")
    write_text(os.path.join(lists, "classInd.txt"), ["1 Archery", "2 Bowling", "3 Diving"], crlf=True)
    for cls in ("Archery", "Bowling", "Diving"):
        put(proto, os.path.join(root, "UCF-101", cls, f"v_{cls}_g01_c01.avi"))
    write_text(os.path.join(lists, "trainlist01.txt"), train_lines, crlf=True)
    write_text(os.path.join(lists, "testlist01.txt"), ["Diving/v_Diving_g01_c01.avi"], crlf=True)
    return os.path.join(lists, "trainlist01.txt")


def test_a_trainlist_label_that_contradicts_its_class_folder_is_rejected(tmp_path, proto):
    listfile = ucf_root(str(tmp_path), proto, ["Archery/v_Archery_g01_c01.avi 1", "Bowling/v_Bowling_g01_c01.avi 3"])
    with pytest.raises(ValueError) as e:
        layouts.parse_dataset("ucf101", str(tmp_path), 1, True)
    msg = str(e.value)
    assert listfile in msg and "line 2" in msg and "'Bowling'" in msg and "'Diving'" in msg
    # the synthetic set reads the same layout, so the same check guards it
    syn = str(tmp_path / "syn")
    synthetic.write_synthetic(syn, classes=2, videos_per_class=2, size=16, frames=4)
    tl = os.path.join(syn, "ucfTrainTestlist", "trainlist01.txt")
    with open(tl) as f:
        lines = f.read().splitlines()
    write_text(tl, lines[:-1] + [lines[-1][:-1] + ("1" if lines[-1].endswith("2") else "2")], crlf=True)
    with pytest.raises(ValueError, match=r"trainlist01.txt, line %d: .*MoveLeft.*MoveRight" % len(lines)):
        layouts.parse_dataset("synthetic", syn, 1, True)


def bad_bytes():
    return bytes(np.random.default_rng(3).integers(128, 256, 400, dtype=np.uint8))  # never valid UTF-8


def test_split_and_class_files_that_are_not_text_are_named(tmp_path, proto):
    cases = {}
    r = str(tmp_path / "ucf")
    ucf_root(r, proto, ["Archery/v_Archery_g01_c01.avi 1"])
    cases["ucf101"] = (r, os.path.join(r, "ucfTrainTestlist", "classInd.txt"))
    r = str(tmp_path / "hmdb")
    put(proto, os.path.join(r, "hmdb51_org", "run", "a.avi"))
    cases["hmdb51"] = (r, os.path.join(r, "testTrainMulti_7030_splits", "run_test_split1.txt"))
    r = str(tmp_path / "sth")
    os.makedirs(os.path.join(r, "20bn-something-something-v1", "1"))
    write_text(os.path.join(r, "something-something-v1-labels.csv"), ["Holding something"])
    cases["sthv1"] = (r, os.path.join(r, "something-something-v1-train.csv"))
    r = str(tmp_path / "kin")
    put(proto, os.path.join(r, "train", "aaa.mp4"))
    cases["kinetics400"] = (r, os.path.join(r, "train.csv"))
    r = str(tmp_path / "list")
    put(proto, os.path.join(r, "a.avi"))
    write_text(os.path.join(r, "train.txt"), ["a.avi 0"])
    cases["list"] = (r, os.path.join(r, "classes.txt"))
    for name, (root, path) in cases.items():
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(bad_bytes())
        with pytest.raises(ValueError) as e:
            layouts.parse_dataset(name, root, 1, True)
        assert path in str(e.value) and "expected a text file" in str(e.value), name


@pytest.mark.parametrize("name,lines,expected", [
    ("ucf101", ["Archery/v_Archery_g01_c01.avi 1", "Bowling/v_Bowling_g01_c01.avi two"], "<class id>"),
    ("ucf101-classInd", ["1 Archery", "x Bowling"], "<ClassName>"),
    ("hmdb51", ["a.avi 1", "b.avi train"], "0|1|2"),
    ("list", ["a.avi 0", "a.avi zero"], "relative/path label"),
    ("kinetics400", ["label,youtube_id,time_start,time_end,split", "run,aaa,0,10,train", "run,bbb,one,10,train"],
     "times in seconds"),
])
def test_a_non_numeric_label_names_file_line_and_form(tmp_path, proto, name, lines, expected):
    root = str(tmp_path)
    if name.startswith("ucf101"):
        listfile = ucf_root(root, proto, ["Archery/v_Archery_g01_c01.avi 1"])
        if name == "ucf101-classInd":
            listfile = os.path.join(root, "ucfTrainTestlist", "classInd.txt")
        name = "ucf101"
    elif name == "hmdb51":
        put(proto, os.path.join(root, "hmdb51_org", "run", "a.avi"))
        listfile = os.path.join(root, "testTrainMulti_7030_splits", "run_test_split1.txt")
    elif name == "list":
        put(proto, os.path.join(root, "a.avi"))
        listfile = os.path.join(root, "train.txt")
    else:
        put(proto, os.path.join(root, "train", "aaa.mp4"))
        listfile = os.path.join(root, "train.csv")
    write_text(listfile, [""] + lines)  # a blank first line: line numbers count it; the last line is bad
    with pytest.raises(ValueError) as e:
        layouts.parse_dataset(name, root, 1, True)
    assert f"{listfile}, line {len(lines) + 1}: expected" in str(e.value) and expected in str(e.value)
