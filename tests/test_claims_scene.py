"""The claims benchmark's dose-response test and its mechanism measure (experiments/stats.py,
experiments/scene.py) on known inputs and on a real written set: a trend test that finds a trend and
only a trend, and an object/background energy that sees exactly what moves."""
import csv
import math

import pytest
import torch

import backbones
from experiments import scene, stats
from support import synthetic


def test_trend_test_finds_a_trend_and_only_a_trend():
    rising = [(0, [0.0, 5.0, 2.0, 0.0]), (1, [10.0, 20.0, 5.0, 12.0]), (3, [40.0, 30.0, 50.0, 45.0])]
    t = stats.trend_test(rising)
    pairs = [(i, y) for i, (_, ys) in enumerate(rising) for y in ys]
    assert t["rho"] == pytest.approx(stats.spearman(pairs)) and t["n"] == 12
    assert t["p"] == pytest.approx(math.erfc(t["rho"] * math.sqrt(11) / math.sqrt(2)))
    assert t["verdict"] == "rises" and t["p"] < 0.01
    falling = [(d, [100 - y for y in ys]) for d, ys in rising]
    assert stats.trend_test(falling)["verdict"] == "falls"
    flat = [(0, [1.0, 2.0, 3.0]), (1, [2.0, 1.0, 3.0]), (2, [3.0, 2.0, 1.0])]
    assert stats.trend_test(flat)["verdict"] == "no trend"
    assert stats.trend_test([(0, [1.0, 1.0]), (1, [1.0, 1.0])]) is None      # outcomes that never vary


def test_trend_power_resamples_within_each_dose():
    rising = [(0, [0.0, 5.0, 2.0, 0.0]), (1, [10.0, 20.0, 5.0, 12.0]), (3, [40.0, 30.0, 50.0, 45.0])]
    assert stats.trend_power(rising, "rises", trials=300) > 0.9
    assert stats.trend_power(rising, "rises", trials=300) == stats.trend_power(rising, "rises", trials=300)  # seeded
    # bimodal doses that do not differ: a trend is rarely "found", whatever the seeds
    flat = [(d, [0.0, 90.0, 0.0, 90.0, 0.0]) for d in range(4)]
    assert stats.trend_power(flat, "rises", runs_per_dose=10, trials=300) < 0.2


@pytest.fixture(scope="module")
def png_sets(tmp_path_factory):
    """Two tiny PNG sets with crossed groups, one with a still camera and one with camera jitter."""
    out = {}
    for jitter in (False, True):
        root = tmp_path_factory.mktemp(f"scene_jitter{int(jitter)}")
        synthetic.write_synthetic(str(root), classes=4, videos_per_class=1, size=32, frames=16, bias_train=1,
                                  bias_test=1, bias=0.25, crossed=1, jitter=jitter, image_format="png")
        out[jitter] = str(root)
    return out


def checkpoint(tmp_path, input):
    torch.manual_seed(0)
    model = backbones.build_model("tsm", 4, input=input, segments=4, frames=4, depth=18, small=True, crop_size=32)
    path = tmp_path / f"{input}.pt"
    torch.save({"model": model.state_dict(), "model_config": model.config}, path)
    return str(path)


def test_masks_follow_the_test_sampling(png_sets):
    root = png_sets[False]
    (rel, meta), *_ = scene.crossed_videos(root)
    x, obj, moving = scene.masked_clip(root, rel, 4, 4, 32)
    assert x.shape == (4, 4, 3, 32, 32) and obj.shape == moving.shape == (4, 32, 32)
    assert obj.any(dim=(1, 2)).all()                  # the actor shows in every segment
    assert (obj & ~moving).sum() == 0                 # the object is part of what moves
    assert (~moving).float().mean() > 0.3             # and most of the frame is background


def test_energy_sees_exactly_what_moves(png_sets, tmp_path):
    """The RGB difference of a still camera is zero wherever nothing moves: background energy 0 and the
    object's > 0. Camera jitter moves the textured background, and its energy with it."""
    ckpt = checkpoint(tmp_path, "rgbdiff")
    still, jitter = (scene.scene_energy(ckpt, png_sets[j]) for j in (False, True))
    assert still["energy_background"] == 0.0 and still["energy_object"] > 0 and still["energy_ratio"] is None
    assert jitter["energy_background"] > 0 and jitter["energy_ratio"] > 0
    assert scene.scene_energy(checkpoint(tmp_path, "rgb"), png_sets[True]) == {}   # RGB: no motion representation
    da = scene.scene_energy(checkpoint(tmp_path, "da"), png_sets[True])          # an untrained PWTP: a number
    assert da["energy_object"] > 0 and da["energy_background"] > 0


def test_flips_count_background_swaps(png_sets, tmp_path):
    root = png_sets[True]
    videos = scene.crossed_videos(root)
    assert len(videos) == 16 and sum(v["aligned"] for _, v in videos) == 4
    path = tmp_path / "val_per_video.csv"

    def write(predict):
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "label", "predicted"])
            for rel, v in videos:
                w.writerow([f"/data/UCF-101/{rel}", v["class"], predict(v)])
        return scene.flips(str(path), root)

    assert write(lambda v: v["class"]) == 0.0                              # the motion decides: no flip
    assert write(lambda v: str(v["background"])) == 1.0                   # the background decides: all flip
    # one group in four answers by background: its 3 conflicting videos flip, 3 of 12
    assert write(lambda v: str(v["background"]) if v["group"].endswith("/0") and v["class"] == "MoveLeft"
                 else v["class"]) == pytest.approx(3 / 12)
