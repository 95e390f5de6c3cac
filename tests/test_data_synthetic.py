"""The synthetic set's parameters: camera jitter on/off, the cue strength rho (--bias) and split 6,
the static-bias training list tested on every class crossed with every background."""
import json
import os

import numpy as np
import pytest

import data
from support import layouts, synthetic

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
    synthetic.write_synthetic(b, **KW, jitter=True, crossed=0, bias=synthetic.SYNTH_BIAS)
    assert files(a) == files(b)  # the defaults are these values: the default set is unchanged by them
    meta = json.load(open(os.path.join(a, "synth_meta.json")))
    assert "jitter" not in meta and "crossed" not in meta
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
