"""Dataset archive layouts: where each of the paper's datasets keeps its videos, class names and split
lists once its official archive is unpacked, and one parser per dataset that turns them into
(classes, [(path, label)]) for one split. A user points --data-root at the unpacked archive; nobody
writes list files first.

One parser per dataset (PARSERS), each returning (classes, samples) for one split: classes = list of
names (index = label), samples = list of (path, label). Paths that do not exist are dropped with one
warning (a missing whole folder or list is an error showing the expected layout). A split or class file
that is not text, holds a non-numeric label, or gives a UCF101 video a label that contradicts its class
folder is an error naming the file and the line.
"""
import csv
import io
import math
import os
import re
import warnings

import numpy as np

from support import framecounts
from support.decode import check_video
from support.synthetic import SYNTH_SPLITS, default_synthetic_root, ensure_synthetic

VIDEO_EXTS = (".avi", ".mp4", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".3gp")

# The layouts this file reads. Shown verbatim in every "missing root / file / folder" error.
LAYOUTS = {
    "ucf101": """ROOT/UCF-101/<Class>/v_<Class>_gXX_cYY.avi          (UCF101.rar unpacked)
ROOT/ucfTrainTestlist/classInd.txt                       ("1 ApplyEyeMakeup", 1-based ids)
ROOT/ucfTrainTestlist/trainlist0K.txt, testlist0K.txt    K = 1, 2, 3
    trainlist line: "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1"; testlist line: path only""",
    "hmdb51": """ROOT/hmdb51_org/<class>/<name>.avi                       (each class .rar unpacked)
ROOT/testTrainMulti_7030_splits/<class>_test_split{1,2,3}.txt
    line: "<name>.avi 1" (1 = train, 2 = test, 0 = unused)""",
    "sthv1": """ROOT/20bn-something-something-v1/<id>/00001.jpg, 00002.jpg, ...   (JPEG frame folders)
ROOT/something-something-v1-labels.csv       one label per line (line order = class id)
ROOT/something-something-v1-train.csv        "<id>;<label>"
ROOT/something-something-v1-validation.csv   "<id>;<label>"   (the test split here; only split 1)""",
    "kinetics400": """either folders:  ROOT/train/<label>/<video>.mp4 and ROOT/val/<label>/<video>.mp4
or official CSVs: ROOT/{train,val}.csv (also accepted: validate.csv, kinetics_train.csv,
    kinetics_val.csv, kinetics400_train.csv, kinetics-400_train.csv, ..., or under ROOT/annotations/),
    columns label,youtube_id,time_start,time_end,split; videos found anywhere under ROOT/train and
    ROOT/val (also videos_train/, videos_val/, validate/) named <youtube_id>_<start:06d>_<end:06d>.<ext>
    or <youtube_id>.<ext>; a name found in several label folders is read from the row's label folder.
    CSV rows whose video is absent are dropped with a warning; a video listed twice counts once, and
    one listed with two different labels is left out (warnings name the CSV and its lines).""",
    "minikinetics": """the kinetics400 layout (folders or CSVs, see there), plus Mini-Kinetics-200's id lists
ROOT/train_ytid_list.txt and ROOT/val_ytid_list.txt (one YouTube id per line; also looked for under
ROOT/minikinetics/ and ROOT/annotations/). Classes = the labels left after filtering (200).""",
    "list": """ROOT/train.txt and ROOT/val.txt (split 1; also test.txt), or ROOT/train_split<K>.txt and
ROOT/val_split<K>.txt (or test_split<K>.txt) for split K; optional ROOT/classes.txt (line i = name of
label i). mmaction2-style lines "relative/path label" (video file or folder of JPEG/PNG frames), or
"relative/path num_frames label" for frame folders; paths relative to ROOT (or absolute), kept exactly
as written (spaces and tabs inside a path included).""",
    "csv": """a folder of videos (any sub-folders) and a CSV of labels: ROOT/labels.csv, or the only .csv file in
ROOT. One row per video, "path,label", or a header row naming the columns path (or video, file, filename),
label (or class) and optionally split (train, val or test); comma, semicolon or tab separated. Paths
relative to ROOT (or absolute); labels are class names or numbers, classes = the distinct labels in
sorted order. Without a split column, --split K (1-5) holds out every fifth video of each class
(sorted by path), from its K-th, for validation.""",
    "synthetic": """the ucf101 layout, written by `python data.py synth --out ROOT` (or automatically on first use
when ROOT does not exist; default ROOT = ~/.cache/dynamic-appearance/synth-v4), with splits K = 1..5:
1-3 scene-balanced; 4 and 5 the static-bias split (same training list; testlist04 in-distribution,
testlist05 bias-conflicting); with `--crossed N` also split 6 (the same training list, tested on every
class crossed with every background); ROOT/synth_meta.json records each video's background (its static
cue) and, in split 6, whether it is the video's own class's ("aligned").""",
}
DATASETS = tuple(LAYOUTS)  # the --dataset choices


def layout_error(name, root, what):
    """A FileNotFoundError naming what is missing and showing the layout `name` expects."""
    return FileNotFoundError(
        f"{name}: {what} (data root: {root!r}).\nExpected layout for --dataset {name}:\n{LAYOUTS[name]}")


def read_text(path):
    """The text of a split or class file (UTF-8, a BOM dropped); a clear error when it is not text."""
    with open(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: expected a text file (a split or class list), but byte {e.start} is not "
                         "UTF-8 text; is it the right file, unpacked?") from None
    if "\x00" in text:
        raise ValueError(f"{path}: expected a text file (a split or class list), but it holds NUL bytes")
    return text


def read_lines(path):
    """(line number, stripped line) of every non-empty line of a text file; CRLF (the official UCF101
    lists) and a BOM are handled."""
    return [(n, ln.strip()) for n, ln in enumerate(read_text(path).splitlines(), 1) if ln.strip()]


def _line_error(path, n, line, expected):
    return ValueError(f"{path}, line {n}: expected {expected}, got {line!r}")


def _number(text, path, n, line, expected):
    """int(text), or the error naming the file, the line and the expected form."""
    if not (text.isascii() and text.isdigit()):
        raise _line_error(path, n, line, expected)
    return int(text)


class _Resolver:
    """Existence checks by directory listing (one listdir per folder instead of one stat per file) with a
    case-insensitive fallback: the official UCF101 lists say HandstandPushups/v_HandStandPushups_... ."""

    def __init__(self):
        self._dirs = {}

    def _listing(self, d):
        if d not in self._dirs:
            try:
                names = os.listdir(d)
            except OSError:
                names = []
            self._dirs[d] = (set(names), {n.lower(): n for n in names})
        return self._dirs[d]

    def resolve(self, path):
        """The existing path (maybe with different letter case), or None."""
        parent, base = os.path.split(path)
        if parent and parent != path and not os.path.isdir(parent):
            parent = self.resolve(parent)
            if parent is None:
                return None
        exact, lower = self._listing(parent or ".")
        if base in exact:
            return os.path.join(parent, base)
        if base.lower() in lower:
            return os.path.join(parent, lower[base.lower()])
        return None


def _keep_existing(name, root, samples):
    res = _Resolver()
    kept, missing = [], []
    for path, label in samples:
        p = res.resolve(path)
        (kept.append((p, label)) if p is not None else missing.append(path))
    if samples and not kept:
        raise layout_error(name, root, f"none of the {len(samples)} listed videos exist "
                                       f"(first expected: {missing[0]})")
    if missing:
        warnings.warn(f"{name}: {len(missing)} of {len(samples)} listed videos are missing and are left out "
                      f"(first: {missing[0]})", RuntimeWarning)
    return kept


def _need_root(name, root, split=None, splits=None, hint=""):
    """The data root must exist (else the layout error); `split`, when checked, must be in `splits`
    (else an error ending with `hint` when the split is one that a set may lack)."""
    if not os.path.isdir(root):
        raise layout_error(name, root, "the data root does not exist")
    if splits is not None and split not in splits:
        raise ValueError(f"{name}: --split must be {', '.join(map(str, splits[:-1]))} or {splits[-1]}, got {split}"
                         + (hint if split in SYNTH_SPLITS else ""))


def _need(name, root, path, kind="file"):
    ok = os.path.isdir(path) if kind == "folder" else os.path.isfile(path)
    if not ok:
        raise layout_error(name, root, f"missing {kind} {path}")
    return path


def parse_ucf101(root, split=1, train=True, name="ucf101"):
    """UCF101's official layout (LAYOUTS["ucf101"]); also the synthetic set's, which adds splits 4 and 5
    (its static-bias split, see write_synthetic) and, when written with --crossed, 6. Real UCF101 has
    splits 1-3 only."""
    if name == "ucf101" and split in SYNTH_SPLITS[3:]:
        raise ValueError(f"ucf101: --split must be 1, 2 or 3, got {split} (splits 4 and 5, the static-bias "
                         "split, exist only for --dataset synthetic)")
    crossed = os.path.isfile(os.path.join(root, "ucfTrainTestlist", "testlist06.txt"))
    splits = SYNTH_SPLITS[:6 if crossed else 5] if name == "synthetic" else (1, 2, 3)
    _need_root(name, root, split, splits, hint=" (split 6 exists only in a set written with --crossed N)")
    lists = _need(name, root, os.path.join(root, "ucfTrainTestlist"), "folder")
    videos = _need(name, root, os.path.join(root, "UCF-101"), "folder")
    classes, cfile = [], _need(name, root, os.path.join(lists, "classInd.txt"))
    for n, ln in read_lines(cfile):
        parts = ln.split(maxsplit=1)
        form = f"'{len(classes) + 1} <ClassName>' (ids 1, 2, ... in order)"
        if len(parts) != 2 or _number(parts[0], cfile, n, ln, form) != len(classes) + 1:
            raise _line_error(cfile, n, ln, form)
        classes.append(parts[1])
    by_lower = {c.lower(): i for i, c in enumerate(classes)}
    listfile = _need(name, root, os.path.join(lists, f"{'trainlist' if train else 'testlist'}0{split}.txt"))
    samples = []
    for n, ln in read_lines(listfile):
        parts = ln.split()
        rel = parts[0].replace("\\", "/")
        folder = by_lower.get(rel.split("/")[0].lower()) if "/" in rel else None  # class from the folder
        if len(parts) > 1:  # trainlist: 1-based class id, which must agree with the folder
            label = _number(parts[1], listfile, n, ln, "'<Class>/v_<Class>_gXX_cYY.avi <class id>'") - 1
            if not 0 <= label < len(classes):
                raise ValueError(f"{listfile}, line {n}: class id {parts[1]} is not in classInd.txt "
                                 f"(1..{len(classes)}): {ln!r}")
            if folder is not None and folder != label:
                raise ValueError(f"{listfile}, line {n}: {rel!r} is in the folder of class {classes[folder]!r} "
                                 f"(id {folder + 1}) but labelled {parts[1]} = class {classes[label]!r}")
        elif folder is None:  # testlist: the folder is the only label
            raise ValueError(f"{listfile}, line {n}: class folder of {rel!r} is not in classInd.txt")
        else:
            label = folder
        samples.append((os.path.join(videos, *rel.split("/")), label))
    return classes, _keep_existing(name, root, samples)


def parse_hmdb51(root, split=1, train=True):
    name = "hmdb51"
    _need_root(name, root, split, splits=(1, 2, 3))
    sdir = _need(name, root, os.path.join(root, "testTrainMulti_7030_splits"), "folder")
    vdir = _need(name, root, os.path.join(root, "hmdb51_org"), "folder")
    suffix = f"_test_split{split}.txt"
    files = sorted(f for f in os.listdir(sdir) if f.endswith(suffix))
    if not files:
        raise layout_error(name, root, f"no *{suffix} files in {sdir}")
    classes = [f[: -len(suffix)] for f in files]
    want = "1" if train else "2"
    samples = []
    for label, (cls, f) in enumerate(zip(classes, files)):
        path = os.path.join(sdir, f)
        for n, ln in read_lines(path):
            parts = ln.split()
            if len(parts) < 2 or parts[1] not in ("0", "1", "2"):
                raise _line_error(path, n, ln, "'<name>.avi 0|1|2' (1 = train, 2 = test, 0 = unused)")
            if parts[1] == want:
                samples.append((os.path.join(vdir, cls, parts[0]), label))
    return classes, _keep_existing(name, root, samples)


def parse_sthv1(root, split=1, train=True):
    name = "sthv1"
    _need_root(name, root)
    if split != 1:
        raise ValueError(f"{name}: only split 1 exists (train / validation), got --split {split}")
    fdir = _need(name, root, os.path.join(root, "20bn-something-something-v1"), "folder")
    classes = [ln for _, ln in read_lines(_need(name, root, os.path.join(root, "something-something-v1-labels.csv")))]
    index = {c: i for i, c in enumerate(classes)}
    listfile = _need(name, root, os.path.join(
        root, f"something-something-v1-{'train' if train else 'validation'}.csv"))
    samples = []
    for n, ln in read_lines(listfile):
        if ";" not in ln:
            raise _line_error(listfile, n, ln, "'<id>;<label>'")
        vid, label = ln.split(";", 1)
        if label not in index:
            raise ValueError(f"{listfile}, line {n}: label {label!r} is not in something-something-v1-labels.csv")
        samples.append((os.path.join(fdir, vid), index[label]))
    return classes, _keep_existing(name, root, samples)


_KINETICS_ID = re.compile(r"^(.*)_(\d{6})_(\d{6})$")


def _first_file(root, names):
    for n in names:
        p = os.path.join(root, n)
        if os.path.isfile(p):
            return p
    return None


def _kinetics_csv(root, train):
    stems = ["train"] if train else ["val", "validate", "validation"]
    names = []
    for s in stems:
        names += [f"{s}.csv", f"kinetics_{s}.csv", f"kinetics400_{s}.csv", f"kinetics-400_{s}.csv",
                  f"kinetics_400_{s}.csv"]
    names += [os.path.join("annotations", n) for n in names]
    return _first_file(root, names)


def _kinetics_dir(root, train):
    for d in (["train", "videos_train", "train_256"] if train else ["val", "validate", "videos_val", "val_256"]):
        if os.path.isdir(os.path.join(root, d)):
            return os.path.join(root, d)
    return None


def _index_videos(folder):
    """stem -> [paths] of every video under `folder` (recursive): video files, and frame folders named like
    a video file (what `python data.py prepare --frames` writes)."""
    out = {}
    for dp, dirs, fs in os.walk(folder):
        framedirs = [d for d in dirs if os.path.splitext(d)[1].lower() in VIDEO_EXTS]
        dirs[:] = sorted(d for d in dirs if d not in framedirs)
        for f in sorted(fs) + sorted(framedirs):
            stem, ext = os.path.splitext(f)
            if ext.lower() in VIDEO_EXTS:
                out.setdefault(stem, []).append(os.path.join(dp, f))
    return out


def _youtube_id(path):
    stem = os.path.splitext(os.path.basename(path))[0]
    m = _KINETICS_ID.match(stem)
    return m.group(1) if m else stem


def _read_kinetics_csv(path):
    """Rows (line, label, youtube_id, start, end) of an official Kinetics CSV (header row required)."""
    rows, form = [], "label,youtube_id,time_start,time_end,split"
    reader = csv.reader(io.StringIO(read_text(path), newline=""))
    header = [h.strip() for h in next((r for r in reader if r), [])]  # the first non-empty row
    if not {"youtube_id", "time_start", "time_end"} <= set(header):
        raise ValueError(f"{path}: expected a header with {form}; got {header}")
    col = {h: i for i, h in enumerate(header)}
    for r in reader:
        if not r:
            continue
        line = ",".join(r)
        if len(r) < len(header):
            raise _line_error(path, reader.line_num, line, f"{len(header)} columns ({form})")
        try:
            start, end = int(float(r[col["time_start"]])), int(float(r[col["time_end"]]))
        except ValueError:
            raise _line_error(path, reader.line_num, line, f"{form} with times in seconds") from None
        label = r[col["label"]].strip() if "label" in col else ""
        rows.append((reader.line_num, label, r[col["youtube_id"]].strip(), start, end))
    return rows


def _folder_key(name):
    """A label as a folder name may spell it: 'air drumming', 'air_drumming' and 'Air-Drumming' agree."""
    return re.sub(r"[^0-9a-z]+", "", name.lower())


def _resolve_row(videos, labels, label, yid, t0, t1):
    """The file of one CSV row: named <id>_<start>_<end> (else <id>), in the row's label folder when the
    name is in several folders. A file found only in ANOTHER label's folder is not this row's (the same
    YouTube id may be two clips of two classes): (None, that path). Returns (path or None, stray path)."""
    for stem in (f"{yid}_{t0:06d}_{t1:06d}", yid):
        paths = videos.get(stem, [])
        folder = [_folder_key(os.path.basename(os.path.dirname(p))) for p in paths]
        mine = [p for p, f in zip(paths, folder) if f == _folder_key(label)]
        if mine:
            return mine[0], None
        neutral = [p for p, f in zip(paths, folder) if f not in labels]  # flat, or folders that are no label
        if len(neutral) == 1:
            return neutral[0], None
        if paths:
            return None, paths[0]
    return None, None


def _lines(rows):
    return " and ".join(map(str, rows[:2])) + (f" (and {len(rows) - 2} more)" if len(rows) > 2 else "")


def _dedupe(name, csv_path, rows):
    """rows [(line, path, label, youtube_id)] -> [(path, label, youtube_id)], one per file. A file listed
    more than once with one label counts once; one listed with different labels is left out (one of its
    labels is wrong, and we cannot tell which). Both are reported, naming the CSV and its lines."""
    by_path = {}
    for line, path, label, yid in rows:
        by_path.setdefault(path, []).append((line, label, yid))
    items, dups, contra = [], [], []
    for path, rs in by_path.items():
        labels = sorted({lab for _, lab, _ in rs})
        where = f"lines {_lines([ln for ln, _, _ in rs])}: {path}"
        if len(labels) > 1:
            contra.append(f"{where} as {' and '.join(map(repr, labels))}")
            continue
        dups += [where] if len(rs) > 1 else []
        items.append((path, rs[0][1], rs[0][2]))
    if dups:
        warnings.warn(f"{name}: {csv_path}: {len(dups)} videos are listed more than once, each counted once "
                      f"({'; '.join(dups[:3])}{'; ...' if len(dups) > 3 else ''})", RuntimeWarning)
    if contra:
        warnings.warn(f"{name}: {csv_path}: {len(contra)} videos are listed with different labels and left out "
                      f"({'; '.join(contra[:3])}{'; ...' if len(contra) > 3 else ''})", RuntimeWarning)
    return items


def _kinetics_csv_items(name, root, vdir, train_csv, split_csv):
    """(classes, [(path, label_name, youtube_id)]) of one split from the official CSVs."""
    classes = sorted({r[1] for r in _read_kinetics_csv(train_csv)})
    labels, videos = {_folder_key(c) for c in classes}, _index_videos(vdir)
    rows, missing, stray = [], 0, []
    for line, label, yid, t0, t1 in _read_kinetics_csv(split_csv):
        path, other = _resolve_row(videos, labels, label, yid, t0, t1)
        if path is not None:
            rows.append((line, path, label, yid))
        elif other is not None:
            stray.append(f"line {line} ({label!r}): {other}")
        else:
            missing += 1
    items = _dedupe(name, split_csv, rows)
    if not items:
        raise layout_error(name, root, f"none of the videos listed in {split_csv} were found under {vdir}")
    if missing:
        warnings.warn(f"{name}: {missing} videos listed in {split_csv} are not under {vdir}; left out "
                      "(normal for Kinetics: some YouTube videos are gone)", RuntimeWarning)
    if stray:
        warnings.warn(f"{name}: {len(stray)} videos listed in {split_csv} were found only in another label's "
                      f"folder; left out (first: {stray[0]})", RuntimeWarning)
    return classes, items


def _kinetics_items(root, train, name):
    """(classes, [(path, label_name, youtube_id)]) for one Kinetics split, from CSVs or label folders."""
    _need_root(name, root)
    vdir = _kinetics_dir(root, train)
    if vdir is None:
        raise layout_error(name, root, f"missing video folder {os.path.join(root, 'train' if train else 'val')}")
    train_csv = _kinetics_csv(root, True)
    if train_csv is not None:
        split_csv = _kinetics_csv(root, train)
        if split_csv is None:
            raise layout_error(name, root, f"found {train_csv} but no {'train' if train else 'val'} CSV")
        return _kinetics_csv_items(name, root, vdir, train_csv, split_csv)
    # folder layout: ROOT/{train,val}/<label>/<video>
    tdir = _kinetics_dir(root, True)
    if tdir is None:
        raise layout_error(name, root, "no train CSV and no train/<label>/ folders")
    classes = sorted(d for d in os.listdir(tdir) if os.path.isdir(os.path.join(tdir, d)))
    if not classes:
        raise layout_error(name, root, f"no label folders in {tdir}")
    items = []
    for label in sorted(os.listdir(vdir)):
        ldir = os.path.join(vdir, label)
        if not os.path.isdir(ldir):
            continue
        for f in sorted(os.listdir(ldir)):
            if os.path.splitext(f)[1].lower() in VIDEO_EXTS:
                items.append((os.path.join(ldir, f), label, _youtube_id(f)))
    return classes, items


def _label_items(name, root, classes, items):
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted({lab for _, lab, _ in items if lab not in index})
    if unknown:
        raise ValueError(f"{name}: labels {unknown[:5]} in the split are not among the training labels")
    return [(p, index[lab]) for p, lab, _ in items]


def parse_kinetics400(root, split=1, train=True):
    if split != 1:
        raise ValueError(f"kinetics400: only split 1 exists (train / val), got --split {split}")
    classes, items = _kinetics_items(root, train, "kinetics400")
    return classes, _label_items("kinetics400", root, classes, items)


def parse_minikinetics(root, split=1, train=True):
    name = "minikinetics"
    if split != 1:
        raise ValueError(f"{name}: only split 1 exists (train / val), got --split {split}")
    _need_root(name, root)
    ids = {}
    for which in ("train", "val"):
        f = _first_file(root, [os.path.join(d, f"{which}_ytid_list.txt") for d in ("", "minikinetics", "annotations")])
        if f is None:
            raise layout_error(name, root, f"missing {os.path.join(root, f'{which}_ytid_list.txt')}")
        ids[which] = {ln for _, ln in read_lines(f)}
    # the classes are the Kinetics labels that survive the train-id filter (200 in the official lists)
    _, train_items = _kinetics_items(root, True, name)
    train_items = [it for it in train_items if it[2] in ids["train"]]
    classes = sorted({lab for _, lab, _ in train_items})
    if not classes:
        raise layout_error(name, root, "no training video matches train_ytid_list.txt")
    if train:
        items = train_items
    else:
        _, items = _kinetics_items(root, False, name)
        items = [it for it in items if it[2] in ids["val"]]
    return classes, _label_items(name, root, classes, items)


def _list_files(root, split):
    """(train list, val list) paths of the `list` layout for split K (None where absent)."""
    tr = [f"train_split{split}.txt", f"train{split}.txt"] + (["train.txt", "train_list.txt"] if split == 1 else [])
    va = [f"val_split{split}.txt", f"test_split{split}.txt", f"val{split}.txt", f"test{split}.txt"]
    va += ["val.txt", "test.txt", "val_list.txt", "test_list.txt"] if split == 1 else []
    return (_first_file(root, tr), tr), (_first_file(root, va), va)


def _parse_list_file(root, listfile):
    """[(path, label)] of an mmaction2-style list. The path is everything before the last one or two
    whitespace-separated fields, kept exactly (double spaces and tabs in a file name included)."""
    samples, form = [], "'relative/path label' (label: 0, 1, ...)"
    for n, ln in read_lines(listfile):
        parts = ln.rsplit(None, 1)
        label = _number(parts[-1] if len(parts) > 1 else "", listfile, n, ln, form)
        rel = parts[0]
        head = rel.rsplit(None, 1)
        if len(head) == 2 and head[1].isdigit() and not os.path.exists(os.path.join(root, rel)):
            rel = head[0]  # rawframes style: "path num_frames label"
        samples.append((os.path.join(root, rel), label))
    return samples


def parse_list(root, split=1, train=True):
    name = "list"
    _need_root(name, root)
    (trf, trc), (vaf, vac) = _list_files(root, split)
    listfile, cands = (trf, trc) if train else (vaf, vac)
    if listfile is None:
        raise layout_error(name, root, f"no list file among {cands}")
    samples = _parse_list_file(root, listfile)
    cfile = os.path.join(root, "classes.txt")
    if os.path.isfile(cfile):
        classes = [ln for _, ln in read_lines(cfile)]
    else:
        # no names given: count labels over BOTH lists so train and val agree on the number of classes
        n = max(lab for f in (trf, vaf) if f for _, lab in _parse_list_file(root, f)) + 1
        classes = [str(i) for i in range(n)]
    bad = [lab for _, lab in samples if not 0 <= lab < len(classes)]
    if bad:
        raise ValueError(f"{listfile}: label {bad[0]} outside 0..{len(classes) - 1} (classes.txt has {len(classes)})")
    return classes, _keep_existing(name, root, samples)


CSV_COLUMNS = {"path": ("path", "video", "file", "filename"), "label": ("label", "class"), "split": ("split",)}
CSV_SPLITS = {"train": True, "val": False, "validation": False, "test": False}


def _csv_file(root):
    """The labels CSV of the `csv` layout: ROOT/labels.csv, or the only .csv file in ROOT."""
    _need_root("csv", root)
    found = sorted(f for f in os.listdir(root) if f.lower().endswith(".csv") and os.path.isfile(os.path.join(root, f)))
    if "labels.csv" not in found and len(found) != 1:
        raise layout_error("csv", root, f"no labels.csv, and {len(found)} other .csv files: name yours labels.csv"
                           if found else "no labels.csv")
    return os.path.join(root, "labels.csv" if "labels.csv" in found else found[0])


def _csv_rows(path):
    """[(line, path, label, split or None)] of a labels CSV, its header (if any) read for the columns."""
    text = read_text(path)
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    rows = [(n, [c.strip() for c in r]) for n, r in enumerate(csv.reader(io.StringIO(text), dialect), 1) if any(r)]
    if not rows:
        raise ValueError(f"{path}: no rows; expected one row per video, 'path,label'")
    head = [c.lower() for c in rows[0][1]]
    cols = {k: next((head.index(n) for n in names if n in head), None) for k, names in CSV_COLUMNS.items()}
    if cols["path"] is None or cols["label"] is None:
        cols, header = {"path": 0, "label": 1, "split": None}, False
    else:
        header = True
    out = []
    for n, r in rows[header:]:
        if len(r) <= max(c for c in cols.values() if c is not None) or not r[cols["path"]] or not r[cols["label"]]:
            raise _line_error(path, n, ",".join(r), "a video path and its label" + (", split" if cols["split"] else ""))
        split = None if cols["split"] is None else r[cols["split"]].lower()
        if split is not None and split not in CSV_SPLITS:
            raise _line_error(path, n, ",".join(r), f"a split among {', '.join(CSV_SPLITS)}")
        out.append((n, r[cols["path"]], r[cols["label"]], split))
    return out


def parse_csv(root, split=1, train=True):
    """A folder of videos with a CSV of labels (LAYOUTS["csv"]): classes are the distinct labels, sorted
    (numerically when they all are numbers); the split is the CSV's split column, or every fifth video
    of each class from its `split`-th (1-5) held out for validation."""
    name = "csv"
    path = _csv_file(root)
    rows = _csv_rows(path)
    labels = sorted({lab for _, _, lab, _ in rows}, key=lambda s: (int(s), s) if s.isdigit() else (math.inf, s))
    index = {lab: i for i, lab in enumerate(labels)}
    if any(s is not None for *_, s in rows):
        if split != 1:
            raise ValueError(f"{path} has a split column: only --split 1 (its train and val/test rows), got {split}")
        chosen = [(p, lab) for _, p, lab, s in rows if CSV_SPLITS[s] == train]
    else:
        if not 1 <= split <= 5:
            raise ValueError(f"csv: --split must be 1-5 (the fifth of each class held out), got {split}")
        by_class = {}
        for _, p, lab, _ in sorted(rows, key=lambda r: r[1]):
            by_class.setdefault(lab, []).append(p)
        chosen = [(p, lab) for lab, ps in by_class.items() for i, p in enumerate(ps)
                  if (len(ps) > 1 and i % 5 == split - 1) != train]
    samples = [(os.path.join(root, p), index[lab]) for p, lab in chosen]     # an absolute p stays as it is
    if not samples:
        raise ValueError(f"{path}: no {'training' if train else 'validation'} video in split {split}")
    return labels, _keep_existing(name, root, samples)


# Named here, not looked up by name, so every parser's call site is found by a text search.
PARSERS = {"ucf101": parse_ucf101, "hmdb51": parse_hmdb51, "sthv1": parse_sthv1,
           "kinetics400": parse_kinetics400, "minikinetics": parse_minikinetics, "list": parse_list,
           "csv": parse_csv}


def parse_dataset(name, data_root, split=1, train=True):
    """(classes, samples) of one split of dataset `name` at `data_root` (official layouts, see LAYOUTS)."""
    if name not in DATASETS:
        raise ValueError(f"--dataset must be one of {DATASETS}, got {name!r}")
    if name == "synthetic":
        root = ensure_synthetic(data_root or default_synthetic_root())
        return parse_ucf101(root, split, train, name="synthetic")
    if not data_root:
        raise layout_error(name, data_root, "no --data-root given")
    return PARSERS[name](data_root, split, train)


def video_arguments(paths):
    """(files, folders, skipped): --video arguments expanded; a folder gives every file directly
    inside it whose extension is one of VIDEO_EXTS, sorted by name; `skipped` lists the
    folders' other entries (not videos, or sub-folders), which are left out."""
    files, folders, skipped = [], [], []
    for path in paths:
        if not os.path.isdir(path):
            files.append(path)
            continue
        entries = sorted(os.path.join(path, n) for n in os.listdir(path))
        found = [e for e in entries if e.lower().endswith(VIDEO_EXTS) and os.path.isfile(e)]
        if not found:
            raise SystemExit(f"evaluate.py: --video {path!r} is a folder without video files "
                             f"({' '.join(VIDEO_EXTS)})")
        files, folders, skipped = files + found, folders + [path], skipped + [e for e in entries if e not in found]
    return files, folders, skipped


def inspect(name, data_root, split, limit):
    """`python data.py inspect`: print classes, split sizes, how many videos decode, the decodable
    frame-count range, and every checked video whose header frame count differs from the frames that
    decode (each checked video is decoded in full, see decode.check_video). Those counts go into the
    dataset's count cache, so training starts with them."""
    cache = framecounts.count_cache_path(data_root or default_synthetic_root())
    for train in (True, False):
        classes, samples = parse_dataset(name, data_root, split, train)
        known = framecounts.cached_counts(cache)
        if train:
            print(f"{name} split {split}: {len(classes)} classes ({', '.join(classes[:5])}"
                  f"{', ...' if len(classes) > 5 else ''})")
        chosen = samples if not limit or limit >= len(samples) else \
            [samples[i] for i in np.linspace(0, len(samples) - 1, limit).astype(int)]
        counts, bad, differ = [], [], []
        for path, _ in chosen:
            try:
                header, true = check_video(path)
            except Exception as e:  # noqa: BLE001
                bad.append(f"{path}: {type(e).__name__}: {e}")
                continue
            counts.append(true)
            if true != header:
                differ.append(f"{path}: header {header} frames, {true} decode")
                if known.get(os.path.abspath(path)) != true:
                    framecounts.append_count(cache, path, true)
        rng_txt = f"frames {min(counts)}..{max(counts)} (median {int(np.median(counts))})" if counts else "no frames"
        print(f"  {'train' if train else 'test'}: {len(samples)} videos; checked {len(chosen)}: {len(counts)} "
              f"decode, {len(bad)} fail, {len(differ)} with a wrong header frame count; decodable {rng_txt}")
        for b in bad[:10]:
            print(f"    FAIL {b}")
        for d in differ:
            print(f"    COUNT {d}")
