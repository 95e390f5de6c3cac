"""Archive layouts (support/layouts.py) beyond test_data.py: Kinetics rows resolved by label and id,
duplicate and contradicting rows reported with file and line and counted once, list-file paths kept
exactly."""
import os
import shutil
import warnings

import numpy as np
import pytest

import data
from support import layouts, synthetic

HEADER = "label,youtube_id,time_start,time_end,split"


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Two tiny videos that differ (one dark, one bright), to copy wherever a layout needs a file."""
    d = tmp_path_factory.mktemp("clips")
    out = []
    for k, level in enumerate((40, 200)):
        path = str(d / f"{k}.avi")
        synthetic.write_video(path, np.full((4, 16, 16, 3), level, np.uint8))
        out.append(path)
    return out


def put(src, path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    shutil.copy(src, path)


def write_lines(path, lines):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", newline="") as f:
        f.write("".join(ln + "\n" for ln in lines))


def test_a_name_in_two_label_folders_resolves_by_label(tmp_path, clips):
    root = str(tmp_path)
    # one YouTube id and time window, filed under two labels: each row must read its own label's file
    put(clips[0], os.path.join(root, "train", "abseiling", "xyz_000000_000010.mp4"))
    put(clips[1], os.path.join(root, "train", "zumba", "xyz_000000_000010.mp4"))
    put(clips[0], os.path.join(root, "train", "zumba", "only_000005_000015.mp4"))
    put(clips[0], os.path.join(root, "val", "zumba", "v_000001_000011.mp4"))
    write_lines(os.path.join(root, "train.csv"), [HEADER, "zumba,xyz,0,10,train", "abseiling,xyz,0,10,train",
                                                  "abseiling,only,5,15,train"])
    write_lines(os.path.join(root, "val.csv"), [HEADER, "zumba,v,1,11,val"])
    with pytest.warns(RuntimeWarning, match="1 videos listed"):  # "only" sits in another label's folder
        classes, train = layouts.parse_dataset("kinetics400", root, 1, True)
    assert classes == ["abseiling", "zumba"]
    rel = [(os.path.relpath(p, root), lab) for p, lab in train]
    assert rel == [(os.path.join("train", "zumba", "xyz_000000_000010.mp4"), 1),
                   (os.path.join("train", "abseiling", "xyz_000000_000010.mp4"), 0)]


def test_duplicate_rows_count_once_and_contradictions_are_left_out(tmp_path, clips):
    root = str(tmp_path)
    for name in ("aaa_000014_000024.mp4", "bbb_000000_000010.mp4"):
        put(clips[0], os.path.join(root, "train", name))  # flat: no label folders
    put(clips[0], os.path.join(root, "train", "ccc.mp4"))
    put(clips[1], os.path.join(root, "val", "ddd_000000_000010.mp4"))
    train_csv = os.path.join(root, "train.csv")
    write_lines(train_csv, [HEADER, "abseiling,aaa,14,24,train", "zumba,bbb,0,10,train",
                            "abseiling,aaa,14,24,train",            # line 4: the same row again
                            "abseiling,ccc,0,10,train",             # line 5 and 6: one file, two labels
                            "zumba,ccc,20,30,train"])
    val_csv = os.path.join(root, "val.csv")
    write_lines(val_csv, [HEADER, "zumba,ddd,0,10,val", "zumba,ddd,0,10,val"])
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        classes, train = layouts.parse_dataset("kinetics400", root, 1, True)
    msgs = [str(w.message) for w in rec]
    dup = [m for m in msgs if "more than once" in m]
    contra = [m for m in msgs if "different labels" in m]
    assert len(dup) == 1 and train_csv in dup[0] and "lines 2 and 4" in dup[0] and "aaa_000014_000024" in dup[0]
    assert len(contra) == 1 and train_csv in contra[0] and "lines 5 and 6" in contra[0] and "ccc.mp4" in contra[0]
    assert "'abseiling'" in contra[0] and "'zumba'" in contra[0]
    assert [(os.path.basename(p), lab) for p, lab in train] == [("aaa_000014_000024.mp4", 0),
                                                                ("bbb_000000_000010.mp4", 1)]
    with pytest.warns(RuntimeWarning, match=r"val.csv.*lines 2 and 3"):
        _, val = layouts.parse_dataset("kinetics400", root, 1, False)
    assert len(val) == 1  # validation scores the video once
    with pytest.warns(RuntimeWarning, match="more than once"):
        ds = data.build_dataset("kinetics400", root, train=False, segments=1, frames=1, crop_size=8)
    assert len(ds) == 1


def test_list_paths_keep_double_spaces_and_tabs(tmp_path, clips):
    root = str(tmp_path)
    names = ["vids/a  b.avi", "vids/c\td.avi", "vids/e f.avi"]
    for n in names:
        put(clips[0], os.path.join(root, n))
    os.makedirs(os.path.join(root, "frames", "g  h"))
    write_lines(os.path.join(root, "train.txt"), [f"{names[0]} 0", f"{names[1]}\t1", f"{names[2]}  0",
                                                  "frames/g  h 12 1"])
    write_lines(os.path.join(root, "val.txt"), [f"{names[1]} 1"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing may go missing
        classes, train = layouts.parse_dataset("list", root, 1, True)
    assert [(os.path.relpath(p, root), lab) for p, lab in train] == [
        (names[0], 0), (names[1], 1), (names[2], 0), (os.path.join("frames", "g  h"), 1)]
    assert all(os.path.exists(p) for p, _ in train)
