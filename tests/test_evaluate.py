"""evaluate.py: the metric functions against hand computations, and the multi-view protocol
(3 crops x 2 clips = 6 views per video) on a real checkpoint and real encoded videos."""
import csv
import json
import math
import os

import pytest
import torch

import evaluate
import train


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


# ---------------------------------------------------------------------------------------------
# The whole evaluate.py on a checkpoint and real encoded videos
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def checkpoint(synth_root, tmp_path_factory):
    run = str(tmp_path_factory.mktemp("run-eval") / "run")
    train.main(["--data-root", synth_root, "--out", run, "--crop-size", "32", "--segments", "2",
                "--frames", "4", "--batch-size", "4", "--epochs", "1", "--workers", "0"])
    return os.path.join(run, "best.pt")


def test_three_crops_two_clips_give_six_views(checkpoint, synth_root, tmp_path):
    out = str(tmp_path / "eval.json")
    res = evaluate.main(["--checkpoint", checkpoint, "--data-root", synth_root, "--clips", "2", "--crops", "3",
                         "--batch-size", "2", "--workers", "0", "--out", out])
    assert res["views_per_video"] == 6
    assert res["videos"] == 4 and res["clips_forwarded"] == 6 * 4
    saved = json.load(open(out))
    for key in ("top1", "top5", "mean_class_acc", "enopr", "parameters", "flops_per_view",
                "gflops_per_view", "gmacs_per_view"):
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


def test_single_view_default_and_bad_checkpoint(checkpoint, synth_root, tmp_path):
    res = evaluate.main(["--checkpoint", checkpoint, "--data-root", synth_root, "--workers", "0",
                         "--out", str(tmp_path / "e1.json")])
    assert res["views_per_video"] == 1 and res["clips_forwarded"] == 4
    with pytest.raises(SystemExit, match="does not exist"):
        evaluate.main(["--checkpoint", str(tmp_path / "missing.pt")])
    # a checkpoint whose class list disagrees with the dataset's (same count, other order) is refused
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    ckpt["classes"] = list(reversed(ckpt["classes"]))
    torch.save(ckpt, tmp_path / "swapped.pt")
    with pytest.raises(SystemExit, match="trained with"):
        evaluate.main(["--checkpoint", str(tmp_path / "swapped.pt"), "--data-root", synth_root, "--workers", "0"])
    torch.save({"weights": 1}, tmp_path / "foreign.pt")
    with pytest.raises(SystemExit, match="no 'model' entry"):
        evaluate.main(["--checkpoint", str(tmp_path / "foreign.pt")])
