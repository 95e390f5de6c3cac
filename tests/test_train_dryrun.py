"""train.py --dry-run: the recipe, the dataset counts from the lists, steps, parameters, FLOPs and an
epoch-time estimate from a few timed steps, without training or writing anything; and the default
--workers, never above the machine's cores."""
import os
import re

import pytest
import torch

import train
from support import dryrun

TINY = ["--crop-size", "32", "--segments", "2", "--frames", "4", "--batch-size", "4"]


def tree(root):
    """Every path under `root` with its size: what a dry run must leave as it was."""
    return sorted((os.path.relpath(os.path.join(d, n), root), os.path.getsize(os.path.join(d, n)))
                  for d, dirs, files in os.walk(root) for n in dirs + files)


def fake_ucf101(root, classes=("Archery", "Bowling", "Diving"), per_class=5):
    """UCF101's layout with empty .avi files: split lists and folders only, nothing decodable."""
    os.makedirs(os.path.join(root, "ucfTrainTestlist"))
    train_rows, test_rows = [], []
    for k, c in enumerate(classes):
        os.makedirs(os.path.join(root, "UCF-101", c))
        for g in range(per_class):
            rel = f"{c}/v_{c}_g{g + 1:02d}_c01.avi"
            open(os.path.join(root, "UCF-101", rel), "wb").close()
            (test_rows.append(rel) if g == 0 else train_rows.append(f"{rel} {k + 1}"))
    for name, rows in (("classInd.txt", [f"{k + 1} {c}" for k, c in enumerate(classes)]),
                       ("trainlist01.txt", train_rows), ("testlist01.txt", test_rows)):
        with open(os.path.join(root, "ucfTrainTestlist", name), "w") as f:
            f.write("".join(r + "\r\n" for r in rows))
    return root


def test_dry_run_on_the_synthetic_set_writes_nothing(synth_root, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = tree(synth_root)
    res = train.main(["--dry-run", "--data-root", synth_root, "--out", str(tmp_path / "run")] + TINY)
    out = capsys.readouterr().out
    assert (res["train_videos"], res["val_videos"], res["classes"]) == (12, 4, 4)
    assert res["steps_per_epoch"] == 3 and res["total_steps"] == 3 * 30      # 12 videos / batch 4, 30 epochs
    assert "3 steps per epoch" in out and "90 steps in 30 epochs" in out
    assert res["parameters"] > 0 and res["flops_per_view"] > 0 and "GFLOPs" in out
    assert re.search(r"\d+\.\d+ s per training step \(median of 3 timed steps after 1 warm-up", out), out
    assert res["seconds_per_epoch"] > 0 and "per epoch" in out and "recipe: synthetic quick start" in out
    assert tree(synth_root) == before and os.listdir(tmp_path) == []        # no run folder, no cache file


def test_dry_run_says_a_missing_synthetic_set_would_be_written_and_writes_none(tmp_path, capsys):
    root = tmp_path / "not-yet"
    res = train.main(["--dry-run", "--data-root", str(root), "--out", str(tmp_path / "run")] + TINY)
    out = capsys.readouterr().out
    assert f"the synthetic set is not at {root} yet: a real run writes it there first" in out
    assert (res["train_videos"], res["val_videos"], res["classes"]) == (120, 40, 4)   # its plan, split 1
    assert res["steps_per_epoch"] == 30
    assert os.listdir(tmp_path) == []


def test_dry_run_on_the_cards_command_reads_only_the_lists(tmp_path, capsys):
    root = fake_ucf101(str(tmp_path / "ucf101"))
    before = tree(root)
    # The card's command (--dataset ucf101 --data-root DIR --backbone tsm) at a CPU-test size.
    res = train.main(["--dry-run", "--dataset", "ucf101", "--data-root", root, "--backbone", "tsm",
                      "--small", "--depth", "18", "--out", str(tmp_path / "run")] + TINY)
    out = capsys.readouterr().out
    assert (res["train_videos"], res["val_videos"], res["classes"]) == (12, 3, 3)
    assert "recipe: from random weights" in out and "no video opened" in out
    assert res["steps_per_epoch"] == 3 and "3 steps per epoch" in out
    assert re.search(r"~\d+:\d\d:\d\d per epoch", out) and res["seconds_per_step"] > 0
    assert tree(root) == before and not os.path.exists(tmp_path / "run")


def test_dry_run_prints_the_resolved_recipe_and_says_when_it_scales_a_smaller_batch(tmp_path, capsys, monkeypatch):
    root = fake_ucf101(str(tmp_path / "ucf101"))
    monkeypatch.setattr(dryrun, "timed_clips", lambda device, flops, batch: 2)    # as a big model on a CPU
    res = train.main(["--dry-run", "--dataset", "ucf101", "--data-root", root, "--pretrained", "none", "--small",
                      "--depth", "18", "--out", str(tmp_path / "run")] + TINY)
    out = capsys.readouterr().out
    recipe = out[out.index("recipe: "):out.index("ucf101, split 1")]
    for said in ("lr 0.0025: 0.04 per 64 clips = 8 GPUs x 8 (ours)", "weight decay 0.0001 (ours)", "dropout 0.3 (ours)",
                 "50 epochs (ours)", "warm-up 2 epochs (ours)", "batch 4 clips per process (yours)",
                 "= 4 clips per step", "joint training: MGDA, Algorithm 1 (--mgda-normalize loss+, ours",
                 "views: DA S x T = 2 x 4, D = 1 at 32^2; validation 1 clip x 1 centre crop"):
        assert said in recipe, said
    assert re.search(r"median of 3 timed steps after 1 warm-up, random input \(2, 8, 3, 32, 32\), scaled x 4/2 "
                     r"clips: a full step would take minutes on this CPU", out), out
    assert res["seconds_per_step"] > 0 and not os.path.exists(tmp_path / "run")


def test_a_big_model_on_a_cpu_times_fewer_clips():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert dryrun.timed_clips(cpu, 66e9, 8) == 1 and dryrun.timed_clips(cuda, 66e9, 8) == 8   # TSM-R50 DA8x8, 224^2
    assert dryrun.timed_clips(cpu, 0.1e9, 8) == 8 and dryrun.timed_clips(cpu, 2e9, 8) == 3


@pytest.mark.slow
def test_two_identical_dry_runs_of_the_cards_command_agree(tmp_path, capsys):
    # The card's command at full size (TSM-R50, DA 8x8, 224^2, ImageNet recipe; no download in a dry run):
    # one clip timed after a warm-up and scaled to the batch. Two runs agree within 1.5x.
    root = fake_ucf101(str(tmp_path / "ucf101"))
    argv = ["--dataset", "ucf101", "--data-root", root, "--backbone", "tsm", "--dry-run"]
    first, second = (train.main(argv)["seconds_per_step"] for _ in range(2))
    assert max(first, second) / min(first, second) <= 1.5, (first, second)
    assert "scaled x 8/1 clips" in capsys.readouterr().out


def test_dry_run_never_downloads_imagenet_weights(tmp_path, capsys, monkeypatch):
    import torch

    def offline(*a, **k):
        raise AssertionError("a dry run must not download")
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    root = fake_ucf101(str(tmp_path / "ucf101"))
    res = train.main(["--dry-run", "--dataset", "ucf101", "--data-root", root, "--depth", "18",
                      "--out", str(tmp_path / "run")] + TINY)             # ImageNet weights by default
    assert "recipe: from ImageNet weights" in capsys.readouterr().out and res["steps_per_epoch"] == 3


def test_default_workers_never_exceed_the_cores(monkeypatch, tmp_path):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})        # a one-core job
    parse = lambda *flags: train.resolve_defaults(train.build_parser().parse_args(list(flags)), 1, "none")
    assert parse("--dataset", "ucf101").workers == 1
    assert parse().workers == 1                                           # synthetic: 2, capped
    assert parse("--dataset", "ucf101", "--workers", "3").workers == 3    # asked for: kept
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)))
    assert parse("--dataset", "ucf101").workers == 4 and parse().workers == 2
