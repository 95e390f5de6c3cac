"""evaluate.py: the metric functions against hand computations; predict's handling of unreadable
videos; the static-bias probe's clip transforms (support/probe.py) and the algebra behind it; and, on
a real checkpoint and real encoded videos, the multi-view protocol, unreadable videos left out and
listed, output naming, predicting single videos and folders (support/predict_videos.py), --export,
--static-probe and two gloo ranks."""
import csv
import json
import math
import os
import re
import shutil
import subprocess
import sys

import matplotlib.image
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import backbones
import data
import evaluate
import pwtp
import train
import visualize
from support import layouts, plots, probe
from support.checkpoints import load_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# data.py warns once per unreadable video; the tests below break one on purpose.
pytestmark = pytest.mark.filterwarnings("ignore::data.SkippedVideoWarning")


# ---------------------------------------------------------------------------------------------
# Metric functions on a tiny fixed set, checked against numbers worked out by hand
# ---------------------------------------------------------------------------------------------
# 6 videos, 6 classes. Row i: the scores of video i; the comment gives its rank order.
SCORES = torch.tensor([
    [9.0, 1.0, 2.0, 3.0, 4.0, 5.0],   # label 0: predicted 0 -> top-1 hit
    [9.0, 8.0, 1.0, 2.0, 3.0, 4.0],   # label 1: predicted 0, class 1 ranked 2nd -> top-5 hit
    [6.0, 5.0, 4.0, 3.0, 2.0, 1.0],   # label 5: ranked 6th (last) -> top-5 miss
    [1.0, 2.0, 3.0, 9.0, 4.0, 5.0],   # label 3: predicted 3 -> hit
    [1.0, 2.0, 3.0, 9.0, 4.0, 5.0],   # label 3: predicted 3 -> hit
    [5.0, 4.0, 3.0, 2.0, 1.0, 0.0],   # label 3: ranked 4th -> top-5 hit, top-1 miss
])
LABELS = torch.tensor([0, 1, 5, 3, 3, 3])
# top-1: videos 0, 3, 4 right -> 3/6 = 50 %. top-5: all but video 2 -> 5/6 = 83.33 %.
# per class (recall): class 0: 1/1 = 100, class 1: 0/1 = 0, class 3: 2/3 = 66.67, class 5: 0/1 = 0;
# classes 2 and 4 have no video and do not count -> mean class accuracy = (100+0+66.67+0)/4 = 41.67 %.


def test_topk_accuracy_matches_hand_computation():
    acc = evaluate.topk_accuracy(SCORES, LABELS, ks=(1, 5))
    assert acc[1] == pytest.approx(50.0)
    assert acc[5] == pytest.approx(100.0 * 5 / 6)
    acc2 = evaluate.topk_accuracy(SCORES, LABELS, ks=(2,))
    assert acc2[2] == pytest.approx(100.0 * 4 / 6)          # video 1 now counts too


def test_topk_clips_k_to_the_number_of_classes():
    s = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1]])
    acc = evaluate.topk_accuracy(s, torch.tensor([2, 0]), ks=(1, 5))
    assert acc[1] == pytest.approx(50.0) and acc[5] == pytest.approx(100.0)


def test_confusion_matrix_and_mean_class_accuracy_match_hand_computation():
    conf = evaluate.confusion_matrix(SCORES.argmax(1), LABELS, 6)
    expected = torch.zeros(6, 6, dtype=torch.long)
    expected[0, 0] = 1          # video 0
    expected[1, 0] = 1          # video 1 predicted 0
    expected[5, 0] = 1          # video 2 predicted 0
    expected[3, 3] = 2          # videos 3, 4
    expected[3, 0] = 1          # video 5 predicted 0
    assert torch.equal(conf, expected)
    per_class = evaluate.per_class_accuracy(conf)
    assert per_class[0] == pytest.approx(100.0) and per_class[1] == pytest.approx(0.0)
    assert per_class[3] == pytest.approx(200.0 / 3) and per_class[5] == pytest.approx(0.0)
    assert math.isnan(per_class[2]) and math.isnan(per_class[4])
    assert evaluate.mean_class_accuracy(SCORES, LABELS, 6) == pytest.approx((100 + 0 + 200 / 3 + 0) / 4)
    m = evaluate.classification_metrics(SCORES, LABELS, 6)
    assert m == pytest.approx({"top1": 50.0, "top5": 500 / 6, "mean_class_acc": (100 + 200 / 3) / 4})


def test_view_averaging_is_the_mean_of_softmaxes():
    # one video, two views: view 1 is sure of class 0, view 2 mildly prefers class 1.
    logits = torch.tensor([[[4.0, 0.0], [0.0, 1.0]]])               # (B=1, V=2, K=2)
    p1 = torch.tensor([math.exp(4) / (math.exp(4) + 1), 1 / (math.exp(4) + 1)])
    p2 = torch.tensor([1 / (1 + math.e), math.e / (1 + math.e)])
    avg = evaluate.average_view_scores(logits)
    assert torch.allclose(avg[0], (p1 + p2) / 2)
    assert avg.argmax(1).item() == 0         # not the same as averaging the arg-maxes (a tie)




def test_mean_nll_is_the_cross_entropy_of_the_averaged_probabilities():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]])
    labels = torch.tensor([0, 1])
    one_view = evaluate.average_view_scores(logits.unsqueeze(1))          # (B, V=1, K)
    assert evaluate.mean_nll(one_view, labels) == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-6)
    probs = torch.tensor([[0.5, 0.5], [0.25, 0.75]])                     # by hand: -(log .5 + log .75)/2
    assert evaluate.mean_nll(probs, torch.tensor([0, 1])) == pytest.approx(-(math.log(0.5) + math.log(0.75)) / 2)
    assert math.isnan(evaluate.mean_nll(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long)))


# ---------------------------------------------------------------------------------------------
# predict: rows with label -1 (unreadable videos) are dropped and counted
# ---------------------------------------------------------------------------------------------
class MeanModel(torch.nn.Module):
    """logits (B, 2) = [mean of the clip, 0]: a different score for every clip value; no PWTP."""
    def forward(self, x):                                   # (B, S*T, C, H, W)
        m = x.flatten(1).mean(1)
        return backbones.ModelOutput(torch.stack([m, torch.zeros_like(m)], 1), None)


def test_predict_drops_and_counts_unreadable_rows():
    clips = torch.arange(5.0).view(5, 1, 1, 1, 1, 1).expand(5, 3, 2, 1, 2, 2)   # (N=5, V=3, S*T=2, C, H, W)
    labels = torch.tensor([0, -1, 1, -1, 0])
    loader = [(clips[:2], labels[:2]), (clips[2:4], labels[2:4]), (clips[4:], labels[4:])]
    done = []
    p = evaluate.predict(MeanModel(), loader, torch.device("cpu"), progress=done.append)
    assert isinstance(p, evaluate.Predictions)
    assert p.unreadable == 2 and p.labels.tolist() == [0, 1, 0] and p.scores.shape == (3, 2)
    assert p.views == 3 and p.forwarded == 3 * 3 and p.enopr_count == 0
    want = torch.softmax(torch.tensor([[0.0, 0], [2.0, 0], [4.0, 0]]), 1)   # videos 0, 2, 4 only
    assert torch.allclose(p.scores, want)
    assert done == [2, 4, 5]
    # a (B, S*T, C, H, W) batch is one view per video
    p1 = evaluate.predict(MeanModel(), [(clips[:, 0], labels)], torch.device("cpu"))
    assert p1.views == 1 and p1.forwarded == 3 and p1.unreadable == 2
    # every row unreadable: nothing forwarded, an empty result
    p0 = evaluate.predict(MeanModel(), [(clips[:2], torch.tensor([-1, -1]))], torch.device("cpu"))
    assert p0.unreadable == 2 and p0.labels.numel() == 0 and p0.forwarded == 0


# ---------------------------------------------------------------------------------------------
# Static-bias probe: the clip transforms, the partner rule, and the algebra of DA + a static image
# ---------------------------------------------------------------------------------------------
def test_frozen_clip_has_no_temporal_variation():
    clip = torch.randn(3, 8, 3, 5, 5)                                   # (V, S*T, C, H, W)
    frozen = probe.frozen_clip(clip)
    assert frozen.shape == clip.shape
    assert torch.equal(frozen.diff(dim=1), torch.zeros(3, 7, 3, 5, 5))  # zero temporal variation
    assert torch.equal(frozen[:, 0], clip[:, 4])                        # the middle frame S*T // 2
    assert probe.frozen_clip(clip[0]).shape == clip[0].shape        # (S*T, C, H, W) too


def test_conflict_clip_is_the_exact_half_half_mix():
    clip, other = torch.randn(2, 6, 3, 4, 4), torch.randn(2, 6, 3, 4, 4)
    still = probe.still_frame(other)                                 # (V, C, H, W)
    assert still.shape == (2, 3, 4, 4) and torch.equal(still, other[:, 3])
    mixed = probe.conflict_clip(clip, still)
    assert mixed.shape == clip.shape
    assert torch.equal(mixed, 0.5 * clip + 0.5 * still[:, None])
    with pytest.raises(ValueError, match="still"):
        probe.conflict_clip(clip, still[0])


class FakeTestSet:
    """Items (clip filled with its index, label); video 5 is unreadable (zeros, -1)."""
    def __init__(self, labels):
        self.samples = [(f"v{i}.avi", y) for i, y in enumerate(labels)]

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        if i == 5:
            return torch.zeros(1, 4, 3, 2, 2), -1
        return torch.full((1, 4, 3, 2, 2), float(i)), self.samples[i][1]


def test_conflict_partner_is_a_readable_video_of_another_class_chosen_by_seed():
    labels = [0, 0, 1, 1, 2, 2, 0]
    for i in range(len(labels)):
        order = probe.partner_order(labels, i, seed=3)
        assert sorted(order) == [j for j, y in enumerate(labels) if y != labels[i]]
        assert order == probe.partner_order(labels, i, seed=3)      # deterministic
    orders = {tuple(probe.partner_order(labels, 0, seed=s)) for s in range(10)}
    assert len(orders) > 1                                               # the seed matters
    ds = probe.StaticProbeDataset(FakeTestSet(labels), "conflict", seed=3)
    for i in range(len(labels)):
        clip, label = ds[i]
        if i == 5:
            assert label == -1                                           # unreadable stays out
            continue
        partner = int(2 * clip[0, 0, 0, 0, 0].item() - i)                # 0.5 * i + 0.5 * partner
        assert labels[partner] != labels[i] and partner != 5             # another class, readable
        first = probe.partner_order(labels, i, seed=3)
        assert partner == [j for j in first if j != 5][0]
    frozen = probe.StaticProbeDataset(FakeTestSet(labels), "frozen")
    assert torch.equal(frozen[2][0], torch.full((1, 4, 3, 2, 2), 2.0)) and frozen[2][1] == 1


def test_da_ignores_a_static_image_when_the_subspace_holds_the_constant_direction():
    """Eq. 1, 5, 6: with A's first column all ones (D = 2), the residual of x + c (c constant over
    t) equals the residual of x, hence DA too; a frozen clip has no DA at all. Without the ones
    column the static image leaks into DA."""
    torch.manual_seed(0)
    N, T, C, H, W = 2, 6, 3, 4, 5
    x = torch.randn(N, T, C, H, W, dtype=torch.float64)
    c = torch.randn(N, 1, C, H, W, dtype=torch.float64)                 # a static image
    A = torch.randn(N, H, W, T, 2, dtype=torch.float64)
    A[..., 0] = 1.0                                                       # the all-ones direction

    def da(clip, basis):
        x_hat, _ = pwtp.project(clip, basis, ridge=0.0)
        residual = pwtp.projection_residual(clip, x_hat)
        return residual, pwtp.dynamic_appearance(residual)

    r0, da0 = da(x, A)
    r1, da1 = da(x + c, A)
    assert torch.allclose(r1, r0, atol=1e-9) and torch.allclose(da1, da0, atol=1e-9)
    _, da_still = da(c.expand(N, T, C, H, W), A)
    assert da_still.abs().max() < 1e-9
    B = torch.randn(N, H, W, T, 2, dtype=torch.float64)                  # no ones column
    assert not torch.allclose(da(x + c, B)[1], da(x, B)[1], atol=1e-3)


# ---------------------------------------------------------------------------------------------
# The whole evaluate.py on a checkpoint and real encoded videos
# ---------------------------------------------------------------------------------------------
TINY = ["--crop-size", "32", "--segments", "2", "--frames", "4", "--batch-size", "4"]


@pytest.fixture(scope="session")
def checkpoint(synth_root, tmp_path_factory):
    run = str(tmp_path_factory.mktemp("run-eval") / "run")
    train.main(["--data-root", synth_root, "--out", run, "--max-steps", "2", "--workers", "0"] + TINY)
    return os.path.join(run, "best.pt")


@pytest.fixture
def broken_root(synth_root, tmp_path):
    """A copy of the synthetic set with one test video overwritten by random bytes: (root, path)."""
    root = str(tmp_path / "broken")
    shutil.copytree(synth_root, root)
    _, samples = layouts.parse_dataset("synthetic", root, 1, train=False)
    bad = samples[1][0]
    with open(bad, "wb") as f:
        f.write(np.random.default_rng(0).bytes(4096))
    return root, bad


def test_three_crops_two_clips_give_six_views(checkpoint, synth_root, tmp_path):
    out = str(tmp_path / "eval.json")
    res = evaluate.main(["--checkpoint", checkpoint, "--data-root", synth_root, "--clips", "2", "--crops", "3",
                         "--batch-size", "2", "--workers", "0", "--out", out])
    assert res["views_per_video"] == 6
    assert res["videos"] == res["videos_total"] == 4 and res["clips_forwarded"] == 6 * 4
    assert res["unreadable"] == []
    saved = json.load(open(out))
    for key in ("top1", "top5", "mean_class_acc", "enopr", "parameters", "flops_per_view",
                "gflops_per_view", "gmacs_per_view", "loss"):
        assert key in saved, key
    assert 0.0 <= saved["top1"] <= saved["top5"] <= 100.0
    assert 0.0 < saved["enopr"] < 2.0                               # DA input: ENoPR is reported
    assert saved["flops_per_view"] > 0 and saved["gmacs_per_view"] == pytest.approx(saved["gflops_per_view"] / 2)
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    assert saved["parameters"] == sum(v.numel() for k, v in ckpt["model"].items()
                                      if "running" not in k and "num_batches" not in k)
    # the CSVs agree with the JSON: per-class rows = classes, confusion total = videos
    with open(str(tmp_path / "eval_per_class.csv")) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and sum(int(r["videos"]) for r in rows) == 4
    correct = sum(int(r["correct"]) for r in rows)
    assert saved["top1"] == pytest.approx(100.0 * correct / 4)
    with open(str(tmp_path / "eval_confusion.csv")) as f:
        conf = list(csv.reader(f))
    assert len(conf) == 5 and sum(int(v) for r in conf[1:] for v in r[1:]) == 4
    # one row per video, in the test list's order, agreeing with the per-class counts
    with open(str(tmp_path / "eval_per_video.csv")) as f:
        videos = list(csv.DictReader(f))
    ds = data.build_dataset("synthetic", synth_root, split=1, train=False, segments=2, frames=2, crop_size=32)
    assert [v["path"] for v in videos] == [path for path, _ in ds.samples]
    assert [int(v["label"]) for v in videos] == [label for _, label in ds.samples]
    assert sum(v["label"] == v["predicted"] for v in videos) == correct


def test_single_view_default_and_bad_checkpoint(checkpoint, synth_root, tmp_path, capsys):
    res = evaluate.main(["--checkpoint", checkpoint, "--data-root", synth_root, "--workers", "0",
                         "--out", str(tmp_path / "e1.json")])
    assert res["views_per_video"] == 1 and res["clips_forwarded"] == 4
    assert re.search(r"ETA \d+:\d\d:\d\d", capsys.readouterr().out)     # progress lines as in training
    with pytest.raises(SystemExit, match="does not exist"):
        evaluate.main(["--checkpoint", str(tmp_path / "missing.pt")])
    # a checkpoint whose class list disagrees with the dataset's (same count, other order) is refused
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    ckpt["classes"] = list(reversed(ckpt["classes"]))
    torch.save(ckpt, tmp_path / "swapped.pt")
    with pytest.raises(SystemExit, match="trained with"):
        evaluate.main(["--checkpoint", str(tmp_path / "swapped.pt"), "--data-root", synth_root, "--workers", "0",
                       "--out", str(tmp_path / "e2.json")])
    torch.save({"weights": 1}, tmp_path / "foreign.pt")
    with pytest.raises(SystemExit, match="no 'model' entry"):
        evaluate.main(["--checkpoint", str(tmp_path / "foreign.pt")])


@pytest.mark.parametrize("argv, match", [
    (["--clips", "0"], "--clips must be >= 1"),
    (["--topk", "0"], "--topk must be >= 1"),
    (["--batch-size", "0"], "--batch-size must be >= 1"),
    (["--video", "/no/such/video.avi"], "--video '/no/such/video.avi' does not exist"),
    (["--video", "VIDEO", "--export", "x.pt"], "--export .* cannot be combined with --video"),
    (["--da-png", "x.png"], "--da-png .* add --video"),
    (["--video", "VIDEO", "--static-probe"], "--static-probe .* --video"),
    (["--dataset", "imagenet"], "--dataset 'imagenet'"),
])
def test_bad_flags_are_named(checkpoint, synth_root, argv, match):
    _, samples = layouts.parse_dataset("synthetic", synth_root, 1, train=False)
    argv = [samples[0][0] if a == "VIDEO" else a for a in argv]
    with pytest.raises(SystemExit, match=match):
        evaluate.main(["--checkpoint", checkpoint] + argv)


def test_unreadable_test_video_is_left_out_and_listed(checkpoint, broken_root, capsys):
    root, bad = broken_root
    with pytest.warns(data.SkippedVideoWarning, match="not replaced"):
        res = evaluate.main(["--checkpoint", checkpoint, "--data-root", root, "--workers", "0",
                             "--clips", "2", "--out", os.path.join(root, "eval.json")])
    assert res["videos_total"] == 4 and res["videos"] == 3 and res["unreadable"] == [bad]
    assert res["clips_forwarded"] == 3 * 2
    out = capsys.readouterr().out
    assert re.search(r"top-1 \d+\.\d\d % over 3 of 4 videos; 1 unreadable", out), out
    assert bad in out
    saved = json.load(open(os.path.join(root, "eval.json")))
    assert saved["unreadable"] == [bad] and saved["videos"] == 3 and saved["videos_total"] == 4
    with open(os.path.join(root, "eval_per_class.csv")) as f:
        rows = list(csv.DictReader(f))
    assert sum(int(r["videos"]) for r in rows) == 3                  # left out of every metric
    assert saved["top1"] == pytest.approx(100.0 * sum(int(r["correct"]) for r in rows) / 3)


def test_validate_leaves_unreadable_out_and_reports_the_held_out_loss(checkpoint, broken_root):
    ckpt = load_checkpoint(checkpoint)
    model = backbones.model_from_checkpoint(ckpt)
    root, _ = broken_root
    ds = data.build_dataset("synthetic", root, 1, train=False, segments=2, frames=4, crop_size=32, substitute=False)
    loader = torch.utils.data.DataLoader(ds, batch_size=4)
    m = evaluate.validate(model, loader, torch.device("cpu"), None, 4)
    assert m["val_unreadable"] == 1 and m["val_videos"] == 3
    p = evaluate.predict(model, loader, torch.device("cpu"))
    assert m["val_loss"] == pytest.approx(evaluate.mean_nll(p.scores, p.labels)) and m["val_loss"] > 0
    # the training run's metrics.json carries both
    metrics = json.load(open(os.path.join(os.path.dirname(checkpoint), "metrics.json")))
    assert metrics[-1]["val_unreadable"] == 0 and metrics[-1]["val_loss"] > 0


def test_default_output_is_named_after_the_data_and_never_replaces_another_dataset(
        checkpoint, synth_root, broken_root, tmp_path):
    ck = tmp_path / "ck" / "best.pt"
    ck.parent.mkdir()
    shutil.copy(checkpoint, ck)
    first = evaluate.main(["--checkpoint", str(ck), "--data-root", synth_root, "--workers", "0"])
    out = tmp_path / "ck" / "eval_synthetic-split1-1x1.json"
    assert out.is_file() and json.load(open(out))["data_root"] == os.path.abspath(synth_root)
    # the same data again: overwritten
    again = evaluate.main(["--checkpoint", str(ck), "--data-root", synth_root, "--workers", "0"])
    assert again["top1"] == first["top1"]
    # another data root would land in the same file: refused, naming both roots and --out
    root, _ = broken_root
    with pytest.raises(SystemExit) as e:
        evaluate.main(["--checkpoint", str(ck), "--data-root", root, "--workers", "0"])
    msg = str(e.value)
    assert os.path.abspath(synth_root) in msg and os.path.abspath(root) in msg and "--out" in msg
    assert json.load(open(out))["data_root"] == os.path.abspath(synth_root)   # untouched
    other = evaluate.main(["--checkpoint", str(ck), "--data-root", root, "--workers", "0",
                           "--out", str(tmp_path / "ck" / "broken.json")])
    assert other["videos"] == 3


def test_predict_videos_files_folder_csv_and_da_png(checkpoint, broken_root, tmp_path, capsys):
    root, bad = broken_root
    _, samples = layouts.parse_dataset("synthetic", root, 1, train=False)
    good = [p for p, _ in samples if p != bad]
    res = evaluate.main(["--checkpoint", checkpoint, "--video", good[0], "--topk", "3", "--workers", "0",
                         "--clips", "2", "--crops", "3"])
    (r,) = res["predictions"]
    ckpt_classes = torch.load(checkpoint, map_location="cpu", weights_only=False)["classes"]
    assert r.path == good[0] and len(r.names) == 3 and set(r.names) <= set(ckpt_classes)
    assert r.probs == sorted(r.probs, reverse=True) and 0 < sum(r.probs) <= 1 + 1e-6
    assert res["csv"] is None
    out = capsys.readouterr().out
    assert f"{good[0]}: {r.names[0]} " in out
    # a folder: every video in it, the unreadable one reported by name and skipped, a CSV next to it
    folder = tmp_path / "clips"
    folder.mkdir()
    for p in good[:2] + [bad]:
        shutil.copy(p, folder / os.path.basename(p))
    (folder / "notes.txt").write_text("not a video")
    res = evaluate.main(["--checkpoint", checkpoint, "--video", str(folder), "--workers", "0",
                         "--da-png", str(tmp_path / "da.png")])
    csv_path = str(tmp_path / "clips_predictions.csv")
    assert res["csv"] == csv_path and os.path.isfile(csv_path)
    bad_copy = str(folder / os.path.basename(bad))
    assert res["unreadable"] == [bad_copy] and len(res["predictions"]) == 2
    out = capsys.readouterr().out
    assert f"{bad_copy}: unreadable, skipped" in out and f"wrote {csv_path}" in out
    rows = list(csv.DictReader(open(csv_path)))
    assert [r["path"] for r in rows] == sorted(str(folder / os.path.basename(p)) for p in good[:2])
    assert set(rows[0]) == {"path", "class_1", "prob_1", "class_2", "prob_2", "class_3", "prob_3",
                            "class_4", "prob_4"}                            # --topk 5 clipped to 4 classes
    # one DA picture per readable video, suffixed with the video's name, of the size visualize draws
    pngs = res["da_png"]
    assert len(pngs) == 2 and all(os.path.isfile(p) for p in pngs)
    assert pngs[0] == str(tmp_path / ("da_" + os.path.splitext(os.path.basename(rows[0]["path"]))[0] + ".png"))
    assert matplotlib.image.imread(pngs[0]).shape[:2] == plots.figure_pixels(plots.da_figsize(2), 100)


def test_da_png_of_a_model_without_pwtp_is_a_clear_error(checkpoint, synth_root, tmp_path):
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    cfg = dict(ckpt["model_config"], input="rgb", frames=1)
    for k in ("kernel_size", "stride", "channels", "expansion", "bottleneck_ratio", "blocks"):
        cfg.pop(k, None)
    model = backbones.build_model(**cfg)
    torch.save({"model": model.state_dict(), "model_config": model.config}, tmp_path / "rgb.pt")
    _, samples = layouts.parse_dataset("synthetic", synth_root, 1, train=False)
    with pytest.raises(SystemExit, match="--da-png needs a DA model.*input='rgb'"):
        evaluate.main(["--checkpoint", str(tmp_path / "rgb.pt"), "--video", samples[0][0],
                       "--da-png", str(tmp_path / "x.png")])


def test_export_is_weights_only_and_works_as_a_checkpoint(checkpoint, synth_root, tmp_path):
    out = str(tmp_path / "shared" / "model.pt")
    evaluate.main(["--checkpoint", checkpoint, "--export", out])
    exported = torch.load(out, weights_only=True)                      # no pickle code needed
    assert set(exported) == {"model", "model_config", "classes", "args"}
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    assert exported["classes"] == ckpt["classes"] and exported["model_config"] == ckpt["model_config"]
    assert all(torch.equal(exported["model"][k], v) for k, v in ckpt["model"].items())
    assert exported["args"]["dataset"] == "synthetic" and os.path.getsize(out) < os.path.getsize(checkpoint)
    # evaluates exactly like the checkpoint it came from
    a = evaluate.main(["--checkpoint", checkpoint, "--data-root", synth_root, "--workers", "0",
                       "--out", str(tmp_path / "a.json")])
    b = evaluate.main(["--checkpoint", out, "--data-root", synth_root, "--workers", "0",
                       "--out", str(tmp_path / "b.json")])
    assert a["top1"] == b["top1"] and a["loss"] == pytest.approx(b["loss"])
    # and visualize.py da reads it
    _, samples = layouts.parse_dataset("synthetic", synth_root, 1, train=False)
    visualize.main(["da", "--video", samples[0][0], "--checkpoint", out, "--segments", "2",
                    "--out", str(tmp_path / "da.png")])
    assert os.path.isfile(tmp_path / "da.png")
    with pytest.raises(SystemExit, match="is the --checkpoint itself"):
        evaluate.main(["--checkpoint", out, "--export", out])


def test_static_probe_reports_frozen_and_conflict_top1(checkpoint, synth_root, tmp_path, capsys):
    out = str(tmp_path / "probe.json")
    res = evaluate.main(["--checkpoint", checkpoint, "--data-root", synth_root, "--workers", "0",
                         "--static-probe", "--out", out])
    probe = json.load(open(out))["static_probe"]
    assert probe == res["static_probe"]
    for key in ("frozen_top1", "conflict_top1"):
        assert probe[key] in (0.0, 25.0, 50.0, 75.0, 100.0)              # 4 test videos
    assert probe["frozen_videos"] == probe["conflict_videos"] == 4
    assert "seed=0" in probe["conflict_rule"]
    text = capsys.readouterr().out
    assert re.search(r"static probe: .*% frozen .*% conflict", text)


def test_torchrun_two_gloo_ranks_match_one_process(checkpoint, broken_root, tmp_path):
    root, bad = broken_root
    single = evaluate.main(["--checkpoint", checkpoint, "--data-root", root, "--workers", "0",
                            "--batch-size", "1", "--out", str(tmp_path / "one.json")])
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           os.path.join(ROOT, "evaluate.py"), "--checkpoint", checkpoint, "--data-root", root,
           "--workers", "0", "--batch-size", "1", "--log-every", "1", "--out", str(tmp_path / "two.json")]
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    two = json.load(open(tmp_path / "two.json"))
    assert two["top1"] == single["top1"] and two["videos"] == single["videos"] == 3
    assert two["unreadable"] == [bad] and two["videos_total"] == 4
    assert two["loss"] == pytest.approx(single["loss"], rel=1e-5)
    # rank 0 alone prints: one headline; progress lines with an ETA
    assert len(re.findall(r"over 3 of 4 videos; 1 unreadable", out)) == 1, out
    assert re.search(r"videos \d/4 \| .* videos/s \| ETA", out), out
