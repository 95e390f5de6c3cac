"""This project's checkpoint files: reading them with errors that name the file, rebuilding the model
one describes, and exporting shareable weights; and evaluate.py's result files (where its JSON goes,
the CSVs beside it). train.py writes checkpoints (support/runs.py), evaluate.py and visualize.py read
them here. Other codebases' weight formats live in support/weights.py.

A checkpoint (RUN_DIR/last.pt, best.pt) is a dict: "model" (a DAModel state dict), "model_config"
(backbones.build_model's keyword arguments), "classes", "args" (train.py's flags), and, for
training, "optimizer", "scheduler", "scaler", "rng" and the progress entries of support/runs.py.
An export (evaluate.py --export) keeps model, model_config, classes and args only.
"""
import json
import os
import pickle

import torch

from support.system import atomic_csv, atomic_json, atomic_torch_save


def read_torch_file(path, what, warn=False):
    """torch.load(path) with errors that say which file and flag: `what` is e.g.
    "train.py: --resume". A missing, empty, truncated or foreign file raises ValueError (or
    FileNotFoundError) naming it, instead of a bare EOFError / UnpicklingError / zip error.

    The one loading policy of the project: first with weights_only=True (tensors and plain
    containers only: an evaluate.py --export file, a state dict); only a file that needs more (our
    own training checkpoints hold numpy RNG states) is unpickled in full, which runs code from the
    file: only load files you trust. warn=True says so when it happens (train.py --pretrained)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} {path!r} does not exist")
    if os.path.getsize(path) == 0:
        raise ValueError(f"{what} {path!r} is empty (0 bytes): an interrupted copy or a full disk?")
    for weights_only in (True, False):
        try:
            return torch.load(path, map_location="cpu", weights_only=weights_only)
        except pickle.UnpicklingError as e:
            if weights_only and "Weights only load failed" in str(e):
                if warn:
                    print(f"warning: {what} {path} holds more than tensors; it is unpickled in full "
                          "(only use files you trust)", flush=True)
                continue
            err = e
        except Exception as e:   # noqa: BLE001 - EOFError, zip errors, KeyError...: any of them = unreadable
            err = e
        raise ValueError(f"{what} {path!r} is not a readable PyTorch file: truncated, corrupt or not "
                         f"written by torch.save ({type(err).__name__}: {str(err).splitlines()[0][:160]})")


def load_checkpoint(path, prog="evaluate.py", flag="--checkpoint"):
    """train.py's checkpoint (or an exported weights file), checked for the entries that rebuild the
    model. Raises FileNotFoundError / ValueError naming `prog`, `flag`, the file and what was
    expected. Used by evaluate.py, visualize.py and train.py --resume."""
    ckpt = read_torch_file(path, f"{prog}: {flag}")
    for key in ("model", "model_config"):
        if not isinstance(ckpt, dict) or key not in ckpt:
            raise ValueError(f"{prog}: {flag} {path!r} has no {key!r} entry; expected a checkpoint "
                             "written by train.py (keys 'model', 'model_config', ...) or by "
                             "evaluate.py --export")
    return ckpt


def class_list_error(trained, classes, where):
    """None when the dataset's `classes` are the checkpoint's `trained` ones in the same order;
    else the first difference, in words. Renamed or reordered classes would score (or train) label
    k against another class; another count does not even fit the classifier."""
    trained, classes = list(trained), list(classes)
    if trained == classes:
        return None
    if len(trained) != len(classes):
        return f"{where} lists {len(classes)} classes, but the checkpoint was trained with {len(trained)}"
    k = next(k for k, (a, b) in enumerate(zip(trained, classes)) if a != b)
    return f"{where} lists class {k} as {classes[k]!r}, but the checkpoint was trained with {trained[k]!r} there"


def result_path(out, checkpoint, name, dataset, data_root):
    """Where an evaluation's JSON goes: `out`, or `name` next to the checkpoint. Refused when the
    file exists and records another dataset or data root: an evaluation of other videos would be
    silently replaced."""
    out = out or os.path.join(os.path.dirname(os.path.abspath(checkpoint)), name)
    if not os.path.exists(out):
        return out
    try:
        with open(out) as f:
            old = json.load(f)
    except (OSError, ValueError):
        old = None
    if not isinstance(old, dict) or "dataset" not in old:
        raise SystemExit(f"evaluate.py: {out} exists and is not an evaluate.py result; not overwriting it. "
                         "Pass --out with another file")
    old_root, root = old.get("data_root"), os.path.abspath(data_root) if data_root else None
    if old["dataset"] != dataset or (os.path.abspath(old_root) if old_root else None) != root:
        raise SystemExit(f"evaluate.py: {out} records an evaluation of {old['dataset']} at {old_root}, "
                         f"this one is of {dataset} at {root}; not overwriting it. Pass --out with "
                         "another file (or remove the old one)")
    return out


def write_results(out, result, classes, conf, per_class, samples, p):
    """An evaluation's files, each written atomically: the JSON record `result` at `out`, and beside
    it {stem}_per_class.csv (class, videos, correct, accuracy), {stem}_confusion.csv (rows = true
    class, columns = predicted class) and {stem}_per_video.csv (write_per_video). Returns the stem."""
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    atomic_json(result, out)
    stem = out[:-5] if out.endswith(".json") else out
    acc = [per_class[k].item() for k in range(len(classes))]
    atomic_csv(stem + "_per_class.csv", ["class_index", "class", "videos", "correct", "accuracy"],
               [[k, name, int(conf[k].sum()), int(conf[k, k]), "" if acc[k] != acc[k] else f"{acc[k]:.4f}"]
                for k, name in enumerate(classes)])
    atomic_csv(stem + "_confusion.csv", ["true\\pred"] + list(classes),
               [[name] + [int(v) for v in conf[k]] for k, name in enumerate(classes)])
    write_per_video(stem + "_per_video.csv", samples, classes, p)
    return stem


def write_per_video(path, samples, classes, p):
    """One row per readable test video, in the dataset's order: its path, true and predicted class
    and the predicted class's probability (averaged over the views), for analyses by video.
    `p`: evaluate.Predictions (index, labels, view-averaged scores); samples: the dataset's (path, label)."""
    conf, pred = p.scores.max(dim=1)
    rows = sorted((int(i), int(y), int(k), float(c)) for i, y, k, c in zip(p.index, p.labels, pred, conf))
    atomic_csv(path, ["path", "label", "class", "predicted", "predicted_class", "probability"],
               [[samples[i][0], y, classes[y], k, classes[k], f"{c:.6f}"] for i, y, k, c in rows])


def finite_weights(state_dict):
    """Every floating-point tensor of a state dict is finite (a diverged step leaves NaN or inf)."""
    return all(bool(torch.isfinite(t).all()) for t in state_dict.values()
               if torch.is_tensor(t) and t.is_floating_point())


def model_state(ckpt):
    """The checkpoint's state dict without the key prefixes DistributedDataParallel ("module.") and
    torch.compile ("_orig_mod.") add to every key."""
    state = ckpt["model"]
    for prefix in ("module.", "_orig_mod."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def is_plain(value):
    """Plain data torch.load(..., weights_only=True) reads back: str, int, float, bool, None and
    lists, tuples and str-keyed dicts of those."""
    if isinstance(value, (str, int, float, bool, type(None))):
        return True
    if isinstance(value, (list, tuple)):
        return all(is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and is_plain(v) for k, v in value.items())
    return False


def export_weights(ckpt, checkpoint_path, out):
    """Write {"model", "model_config", "classes", "args"} to `out` atomically: the weights and what
    rebuilds and names them, without optimiser, schedule, scaler or RNG states, so the file is a
    fraction of a checkpoint and loads with torch.load(out, weights_only=True) (no pickle code runs).
    It works wherever a checkpoint does (load_checkpoint reads "model" and "model_config")."""
    if os.path.exists(out) and os.path.samefile(out, checkpoint_path):
        raise SystemExit(f"evaluate.py: --export {out} is the --checkpoint itself; choose another file")
    config = dict(ckpt["model_config"])
    bad = sorted(k for k, v in config.items() if not is_plain(v))
    if bad:
        raise SystemExit(f"evaluate.py: --checkpoint {checkpoint_path}: model_config entries {bad} are not "
                         "plain values; cannot export them for weights_only loading")
    run_args = ckpt.get("args") or {}
    run_args = run_args if isinstance(run_args, dict) else vars(run_args)
    exported = {"model": {k: v.detach().cpu() for k, v in model_state(ckpt).items()}, "model_config": config,
                "classes": [str(c) for c in ckpt.get("classes") or []],
                "args": {k: v for k, v in run_args.items() if is_plain(v)}}
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    try:
        atomic_torch_save(exported, out)
    except OSError as e:
        raise SystemExit(f"evaluate.py: --export: {e}") from None
    torch.load(out, map_location="cpu", weights_only=True)     # the promise, checked once
    dropped = sorted(set(run_args) - set(exported["args"]))
    print(f"wrote {out} ({os.path.getsize(out) / 2**20:.1f} MiB): {len(exported['model'])} weight tensors, "
          f"model_config, {len(exported['classes'])} class names and the run's args"
          f"{' (left out, not plain values: ' + ', '.join(dropped) + ')' if dropped else ''}; "
          f"no optimiser or RNG state. Loads with torch.load(..., weights_only=True).")
    return exported
