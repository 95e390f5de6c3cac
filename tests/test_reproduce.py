"""REPRODUCE.md: its tables are experiments/reproduce.py's PAPER_ROWS, and every command in it parses and resolves
under `train.py --dry-run` on stand-in datasets (the layouts with empty files, nothing decodable)."""
import json
import os
import re
import shlex

import pytest
import torch

import bench
import train
from experiments import reproduce
from support import runs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMANDS = re.findall(r"`(python train\.py [^`]*)`", open(os.path.join(ROOT, "REPRODUCE.md")).read())


def touch(path, text=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text or "")


def stand_in_datasets(root):
    """Two classes of each dataset, in its archive layout, with empty video files."""
    classes = ("Archery", "Bowling")
    for k, c in enumerate(classes):                                  # UCF101
        for g in (1, 2):
            touch(f"{root}/ucf101/UCF-101/{c}/v_{c}_g0{g}_c01.avi")
    touch(f"{root}/ucf101/ucfTrainTestlist/classInd.txt", "1 Archery\n2 Bowling\n")
    touch(f"{root}/ucf101/ucfTrainTestlist/trainlist01.txt",
          "".join(f"{c}/v_{c}_g01_c01.avi {k + 1}\n" for k, c in enumerate(classes)))
    touch(f"{root}/ucf101/ucfTrainTestlist/testlist01.txt", "".join(f"{c}/v_{c}_g02_c01.avi\n" for c in classes))
    for c in ("climb", "jump"):                                      # HMDB51
        for n in ("a", "b"):
            touch(f"{root}/hmdb51/hmdb51_org/{c}/{c}_{n}.avi")
        touch(f"{root}/hmdb51/testTrainMulti_7030_splits/{c}_test_split1.txt", f"{c}_a.avi 1\n{c}_b.avi 2\n")
    for vid in ("100", "200", "300"):                                # Something-Something V1
        touch(f"{root}/sthv1/20bn-something-something-v1/{vid}/00001.jpg")
    touch(f"{root}/sthv1/something-something-v1-labels.csv", "Holding something\nPushing something\n")
    touch(f"{root}/sthv1/something-something-v1-train.csv", "100;Holding something\n200;Pushing something\n")
    touch(f"{root}/sthv1/something-something-v1-validation.csv", "300;Holding something\n")
    for name in ("k400", "minik"):                                   # Kinetics folders, Mini-Kinetics' id lists
        for split, label, vid in (("train", "abseiling", "aaa"), ("train", "zumba", "bbb"), ("val", "zumba", "ccc")):
            touch(f"{root}/{name}/{split}/{label}/{vid}_000000_000010.mp4")
    touch(f"{root}/minik/train_ytid_list.txt", "aaa\nbbb\n")
    touch(f"{root}/minik/val_ytid_list.txt", "ccc\n")


def stand_in_weights(root):
    """Files that checkpoint_format recognises: a pytorchvideo X3D and one of this project's models."""
    x3d = {"model_state": {"blocks.0.conv.conv_t.weight": torch.zeros(1)}}
    for name in ("x3d_xs_k400.pyth", "x3d_m_k400.pyth"):
        os.makedirs(root, exist_ok=True)
        torch.save(x3d, os.path.join(root, name))
    torch.save({"model": {"net.fc.weight": torch.zeros(1)}, "model_config": {}}, os.path.join(root, "k400_da_tsm.pt"))


def test_reproduce_md_holds_bench_paper_rows():
    # One source: REPRODUCE.md's tables are what `python bench.py reproduce` prints.
    expected = ["python train.py " + reproduce.paper_mode(cmd) for _, _, cmd, *_ in reproduce.PAPER_ROWS]
    assert COMMANDS == expected
    assert {"1", "3", "5", "6", "8", "9", "10", "Fig. 3"} <= {row[0] for row in reproduce.PAPER_ROWS}


def test_reproduce_md_tables_are_what_bench_py_reproduce_prints(tmp_path, capsys):
    # Under its introduction REPRODUCE.md is the command's output to the letter, costs included.
    bench.main(["reproduce", "--out", str(tmp_path / "reproduce.json")])
    printed = capsys.readouterr().out
    text = open(os.path.join(ROOT, "REPRODUCE.md")).read()
    assert text[text.index("## Table 1"):] == printed[printed.index("## Table 1"):]
    rows = json.loads((tmp_path / "reproduce.json").read_text())
    assert [r["command"] for r in rows] == COMMANDS and all(r["h100_h"] > 0 for r in rows)


def test_every_reproduce_command_passes_dry_run(tmp_path, monkeypatch, capsys):
    # The timing and FLOP counting of a dry run are stubbed (full-size models on a CPU take seconds
    # each; test_train_dryrun.py times them for real): this checks that each command parses, finds
    # its dataset and starting point, resolves its recipe and builds its model.
    stand_in_datasets(str(tmp_path / "DATA"))
    stand_in_weights(str(tmp_path / "WEIGHTS"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(runs, "step_seconds", lambda *a, **k: (1.0, "stubbed"))
    monkeypatch.setattr(runs, "view_seconds", lambda *a, **k: 0.1)
    monkeypatch.setattr("evaluate.count_flops", lambda *a, **k: 2e9)
    before = sorted(os.listdir(tmp_path))
    for command in COMMANDS:
        result = train.main(shlex.split(command)[2:] + ["--dry-run"])
        out = capsys.readouterr().out
        assert result["steps_per_epoch"] >= 1 and result["parameters"] > 0, command
        assert "steps per epoch" in out and "recipe:" in out, command
    assert sorted(os.listdir(tmp_path)) == before                  # no run folder, nothing written


def test_pwtp_flags_shape_the_module_as_table_8():
    # --pwtp-expansion/--blocks/--bottleneck reach pwtp.PWTP: config #1 of Table 8 has 16,644 parameters.
    args = train.resolve_defaults(train.build_parser().parse_args(
        ["--frames", "8", "--pwtp-expansion", "4", "--pwtp-blocks", "1", "--pwtp-bottleneck", "0.25"]), 1, "none")
    model = train.build_model(args, 4)
    assert sum(p.numel() for p in model.pwtp.parameters()) == 16644
    with pytest.raises(SystemExit, match="--pwtp-blocks"):
        train.resolve_defaults(train.build_parser().parse_args(["--input", "rgb", "--pwtp-blocks", "2"]), 1, "none")
