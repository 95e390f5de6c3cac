"""Your own videos: a folder of videos with a CSV of labels (--dataset csv) trains in one step, with a
small set's recipe (never Kinetics' 100-epoch schedule); the CSV's forms and its errors."""
import argparse
import glob
import os

import pytest

import train
from support import layouts


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def own_folder(root, synth_root, header="file,class\n", form="clips/{name},{label}\n"):
    """The tiny synthetic set's real videos in one flat folder, with ROOT/labels.csv."""
    rows = []
    for v in sorted(glob.glob(os.path.join(synth_root, "UCF-101", "*", "*.avi"))):
        name, label = os.path.basename(v), os.path.basename(os.path.dirname(v))
        os.makedirs(os.path.join(root, "clips"), exist_ok=True)
        os.symlink(v, os.path.join(root, "clips", name))
        rows.append(form.format(name=name, label=label))
    write(os.path.join(root, "labels.csv"), header + "".join(rows))
    return root


def test_a_folder_with_a_csv_of_labels_trains_with_a_small_sets_recipe(synth_root, tmp_path, capsys):
    root = own_folder(str(tmp_path / "mine"), synth_root)
    res = train.main(["--dataset", "csv", "--data-root", root, "--pretrained", "none", "--small", "--depth", "18",
                      "--crop-size", "32", "--segments", "2", "--frames", "4", "--batch-size", "4", "--max-steps", "1",
                      "--workers", "0", "--out", str(tmp_path / "run")])
    out = capsys.readouterr().out
    assert res["step"] == 1 and "csv: 48 training / 16 validation videos, 4 classes" in out
    assert "your own videos take a small set's recipe" in out and "50 epochs (ours)" in out
    # from ImageNet (the default for a full-size TSM) or a Kinetics model: a small set's recipe, said to be ours
    ns = argparse.Namespace(dataset="csv", backbone="tsm")
    for start, name, epochs in (("imagenet", "small-set", 25), ("kinetics", "fine-tune", 10)):
        recipe, why = train.choose_recipe(ns, start)
        assert (recipe["name"], recipe["epochs"], recipe["ours"]) == (name, epochs, train.OURS_IF_ELSEWHERE)
        assert "your own videos take a small set's recipe" in why


def test_the_csv_forms(tmp_path):
    root = str(tmp_path)
    for i in range(12):
        write(f"{root}/v/{i}.mp4", "")
    # no header, semicolons, numeric labels (sorted as numbers), the fifth of each class held out by --split
    write(f"{root}/labels.csv", "".join(f"v/{i}.mp4;{10 if i % 2 else 9}\n" for i in range(12)))
    classes, train_set = layouts.parse_dataset("csv", root, 1, True)
    _, val = layouts.parse_dataset("csv", root, 1, False)
    assert classes == ["9", "10"] and len(train_set) == 8 and len(val) == 4
    assert {os.path.basename(p) for p, _ in val} == {"0.mp4", "8.mp4", "1.mp4", "9.mp4"}   # 1st and 6th by path
    _, val2 = layouts.parse_dataset("csv", root, 2, False)
    assert {os.path.basename(p) for p, _ in val2} == {"10.mp4", "11.mp4"}     # 2nd: paths sort as text, 0, 10, 2 ...
    # a header with a split column, in any column order; the only .csv in the folder is found by any name
    os.remove(f"{root}/labels.csv")
    write(f"{root}/mine.csv", "split,label,video\n" + "".join(
        f"{'test' if i < 3 else 'train'},{'b' if i % 2 else 'a'},{root}/v/{i}.mp4\n" for i in range(12)))
    classes, train_set = layouts.parse_dataset("csv", root, 1, True)
    assert classes == ["a", "b"] and len(train_set) == 9 and len(layouts.parse_dataset("csv", root, 1, False)[1]) == 3


@pytest.mark.parametrize("text, error", [
    ("path,label\nv/0.mp4\n", r"labels.csv, line 2: expected a video path and its label"),
    ("path,label,split\nv/0.mp4,a,holdout\n", r"line 2: expected a split among train, val, validation, test"),
    ("", "no rows"),
])
def test_a_bad_csv_is_named_with_its_line(tmp_path, text, error):
    write(str(tmp_path / "labels.csv"), text)
    with pytest.raises(ValueError, match=error):
        layouts.parse_dataset("csv", str(tmp_path), 1, True)


def test_a_folder_without_its_csv_shows_the_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match="(?s)no labels.csv.*Expected layout for --dataset csv"):
        layouts.parse_dataset("csv", str(tmp_path), 1, True)
    write(str(tmp_path / "a.csv"), "x,y\n")
    write(str(tmp_path / "b.csv"), "x,y\n")
    with pytest.raises(FileNotFoundError, match="2 other .csv files: name yours labels.csv"):
        layouts.parse_dataset("csv", str(tmp_path), 1, True)
