"""The synthetic set's parameters: camera jitter on/off, the cue strength rho (--bias), split 6 (the
static-bias training list tested on every class crossed with every background, in motion groups),
lossless PNG frame folders, the object scale, and a video redrawn with its actor and ring masks."""
import json
import os

import numpy as np
import pytest

import data
from support import decode, layouts, synthetic

KW = dict(classes=3, videos_per_class=4, size=16, frames=6, seed=2, bias_train=4, bias_test=2)


def files(root):
    out = {}
    for d, _, fs in os.walk(root):
        for f in fs:
            with open(os.path.join(d, f), "rb") as fh:
                out[os.path.relpath(os.path.join(d, f), root)] = fh.read()
    return out


def test_defaults_are_jitter_on_and_no_split_6(tmp_path):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    synthetic.write_synthetic(a, **KW)
    synthetic.write_synthetic(b, **KW, jitter=True, crossed=0, bias=synthetic.SYNTH_BIAS, image_format="avi",
                              object_scale=1.0)
    assert files(a) == files(b)  # the defaults are these values: the default set is unchanged by them
    meta = json.load(open(os.path.join(a, "synth_meta.json")))
    assert not set(meta) & {"jitter", "crossed", "image_format", "object_scale"}
    assert not os.path.exists(os.path.join(a, "ucfTrainTestlist", "testlist06.txt"))
    with pytest.raises(ValueError, match="got 6 .*--crossed N"):
        layouts.parse_dataset("synthetic", a, 6, False)


def test_a_still_camera_keeps_the_motions_and_stills_the_background():
    size, m = 32, 2
    bgs, sprites = synthetic.synthetic_pool(0, size + 2 * m, 2)
    kw = dict(cls_name="MoveRight", bg=bgs[0], sprite=sprites[0], size=size, frames=10)
    moving = synthetic._synth_video(rng=np.random.default_rng([0, 0, 3]), jitter=True, **kw)
    still = synthetic._synth_video(rng=np.random.default_rng([0, 0, 3]), jitter=False, **kw)
    # still camera: the window is the canvas centre; every pixel that differs from the background there
    # is the object or the ring, in the same places as a still copy of the moving video would have them
    centre = bgs[0][m:m + size, m:m + size]
    fg = (still != centre).any(-1)                              # (frames, H, W): object and ring
    assert 0 < fg.mean() < 0.3
    assert ((still[1:] != still[:-1]).any(-1) <= (fg[1:] | fg[:-1])).all()  # only they change
    assert (moving[1:] != moving[:-1]).any(-1).mean() > 2 * (still[1:] != still[:-1]).any(-1).mean()


def test_crossed_split_and_cue_strength(tmp_path):
    root = str(tmp_path / "s")
    data.main(["synth", "--out", root, "--classes", "3", "--videos-per-class", "4", "--size", "16",
               "--frames", "6", "--bias-train", "10", "--bias-test", "2", "--bias", "0.7", "--no-jitter",
               "--crossed", "2"])
    meta = json.load(open(os.path.join(root, "synth_meta.json")))
    assert meta["jitter"] is False and meta["crossed"] == 2 and meta["bias"] == 0.7
    lists = os.path.join(root, "ucfTrainTestlist")
    read = lambda name: open(os.path.join(lists, name), "rb").read()  # noqa: E731
    assert read("trainlist06.txt") == read("trainlist04.txt")
    assert synthetic.static_cue_agreement(root, 4, True) == pytest.approx(0.7)  # rho: 7 of 10 per class
    classes, test = layouts.parse_dataset("synthetic", root, 6, False)
    assert len(test) == 3 * 3 * 2  # every class on every background, twice
    videos = os.path.join(root, "UCF-101")
    cells = {}
    for path, label in test:
        v = meta["videos"][os.path.relpath(path, videos).replace(os.sep, "/")]
        assert v["aligned"] == (v["background"] == label) and v["class"] == classes[label]
        cells[(label, v["background"])] = cells.get((label, v["background"]), 0) + 1
    assert cells == {(c, b): 2 for c in range(3) for b in range(3)}
    assert synthetic.static_cue_agreement(root, 6, False) == pytest.approx(1 / 3)
    assert all("aligned" not in v for v in meta["videos"].values() if "testlist06.txt" not in v["lists"])
    ds = data.build_dataset("synthetic", root, split=6, train=False, segments=2, frames=2, crop_size=16)
    assert len(ds) == 18 and ds[0][0].shape == (1, 4, 3, 16, 16)


SMALL = dict(classes=2, videos_per_class=4, size=32, frames=8, seed=1, bias_train=2, bias_test=1, crossed=2)


def meta_of(root):
    with open(os.path.join(root, "synth_meta.json")) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def png_set(tmp_path_factory):
    """A still-camera PNG set with split 6, written through ensure_synthetic (which passes the format on)."""
    root = str(tmp_path_factory.mktemp("png") / "s")
    return synthetic.ensure_synthetic(root, **SMALL, jitter=False, image_format="png")


def test_png_frames_are_the_generated_frames_and_the_set_loads(png_set, tmp_path):
    meta = meta_of(png_set)
    assert meta["image_format"] == "png" and "object_scale" not in meta
    # the avi set of the same arguments lists the same paths: only the files behind them differ
    avi = synthetic.write_synthetic(str(tmp_path / "avi"), **SMALL, jitter=False)
    lists = lambda root: {n: open(os.path.join(root, "ucfTrainTestlist", n), "rb").read()  # noqa: E731
                          for n in sorted(os.listdir(os.path.join(root, "ucfTrainTestlist")))}
    assert lists(avi) == lists(png_set) and meta_of(avi)["videos"] == meta["videos"]
    rel = "MoveLeft/v_MoveLeft_g03_c01.avi"  # class 1, number 2: generator (seed, 1, 2)
    path = os.path.join(png_set, "UCF-101", *rel.split("/"))
    assert os.path.isdir(path) and sorted(os.listdir(path)) == [f"{n:06d}.png" for n in range(1, 9)]
    bgs, sprites = synthetic.synthetic_pool(1, 32 + 2 * 2, 2)
    v = meta["videos"][rel]
    made = synthetic._synth_video("MoveLeft", bgs[v["background"]], sprites[v["sprite"]],
                                  np.random.default_rng([1, 1, 2]), 32, 8, jitter=False)
    assert np.array_equal(decode.read_frames(path, list(range(8))), made)  # lossless
    for split, train in ((6, False), (6, True), (1, True)):  # train.py --dataset synthetic --split 6 reads these
        ds = data.build_dataset("synthetic", png_set, split=split, train=train, segments=2, frames=2, crop_size=16)
        clip, label = ds[0]
        assert label in (0, 1) and clip.shape[-3:] == (3, 16, 16) and clip.float().std() > 0


def test_crossed_groups_show_one_motion_on_every_background(tmp_path):
    root = synthetic.write_synthetic(str(tmp_path / "s"), **{**SMALL, "classes": 3}, image_format="png")
    groups = {}
    for rel, v in meta_of(root)["videos"].items():
        if "testlist06.txt" in v["lists"]:
            groups.setdefault(v["group"], []).append((rel, v))
    assert set(groups) == {f"{c}/{q}" for c in ("MoveRight", "MoveLeft", "MoveUp") for q in (0, 1)}
    for members in groups.values():  # one video per background, one aligned, one look, one generator
        assert sorted(v["background"] for _, v in members) == [0, 1, 2]
        assert sum(v["aligned"] for _, v in members) == 1
        assert len({v["sprite"] for _, v in members}) == len({v["draw"] for _, v in members}) == 1
    (rel_a, _), (rel_b, _) = groups["MoveRight/1"][:2]
    a, b = synthetic.regenerate_video(root, rel_a), synthetic.regenerate_video(root, rel_b)
    assert np.array_equal(a.actor, b.actor) and np.array_equal(a.ring, b.ring) and a.actor.any()
    shown = a.actor | a.ring                               # (F, H, W): object and ring, same pixels in both
    assert np.array_equal(a.frames[shown], b.frames[shown])
    assert (a.frames != b.frames).any(-1)[~shown].mean() > 0.9  # the background differs (nearly) everywhere
    assert (a.frames != b.frames).any(-1)[shown].sum() == 0
    # and two groups of one class show different motions
    (rel_c, _) = groups["MoveRight/0"][0]
    assert not np.array_equal(synthetic.regenerate_video(root, rel_c).actor, a.actor)


def test_regenerated_masks_match_the_written_frames(png_set):
    meta = meta_of(png_set)
    rel = next(r for r, v in meta["videos"].items() if v["class"] == "MoveRight" and "testlist06.txt" in v["lists"])
    path = os.path.join(png_set, "UCF-101", *rel.split("/"))
    frames, actor, ring = synthetic.regenerate_video(png_set, path)  # an absolute path works as well as the key
    assert np.array_equal(frames, decode.read_frames(path, list(range(8))))
    assert frames.shape == (8, 32, 32, 3) and actor.shape == ring.shape == (8, 32, 32)
    assert actor.any((1, 2)).all() and not (actor & ring).any()
    xs = [np.nonzero(a)[1].mean() for a in actor]
    assert xs[-1] > xs[0] + 5  # MoveRight: the actor's centroid travels right (amplitude >= 0.3 x 32 px)
    # a still camera: every pixel neither mask covers is the background's centre, exactly
    bg = synthetic.synthetic_pool(1, 36, 2)[0][meta["videos"][rel]["background"]][2:34, 2:34]
    rest = ~(actor | ring)
    assert np.array_equal(frames[rest], np.broadcast_to(bg, frames.shape)[rest])
    with pytest.raises(ValueError, match="synth_meta.json"):
        synthetic.regenerate_video(png_set, "MoveRight/v_MoveRight_g99_c01.avi")


def test_object_scale_grows_actor_and_ring_only(tmp_path):
    root = str(tmp_path / "s")
    data.main(["synth", "--out", root, "--classes", "2", "--videos-per-class", "4", "--size", "32", "--frames",
               "8", "--bias-train", "1", "--bias-test", "1", "--no-jitter", "--png", "--object-scale", "1.5"])
    meta = meta_of(root)
    assert meta["object_scale"] == 1.5 and meta["image_format"] == "png"
    rel = "MoveLeft/v_MoveLeft_g02_c01.avi"
    big = synthetic.regenerate_video(root, rel)
    meta.pop("object_scale")  # the same video at scale 1: same motion, only the radii change
    with open(os.path.join(root, "synth_meta.json"), "w") as f:
        json.dump(meta, f)
    small = synthetic.regenerate_video(root, rel)
    for b, s in ((big.actor, small.actor), (big.ring | big.actor, small.ring | small.actor)):
        assert 1.5 ** 2 * 0.8 < b.sum() / s.sum() < 1.5 ** 2 * 1.2  # area ~ radius squared
    centre = lambda mask: np.array([np.argwhere(f).mean(0) for f in mask])  # noqa: E731  (F, 2): y, x
    assert np.abs(centre(big.actor) - centre(small.actor)).max() < 1.0  # the same path
    for bad, match in (({"image_format": "jpg"}, "image_format"), ({"object_scale": 0}, "--object-scale")):
        with pytest.raises(ValueError, match=match):
            synthetic.write_synthetic(str(tmp_path / "bad"), **SMALL, **bad)
