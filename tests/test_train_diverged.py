"""Nothing silently wrong: a diverged model is never saved or called best, a validation set that
cannot be read stops cleanly and keeps the epoch, impossible flags are refused before any work, a
full disk at the first save leaves a way on that works, a reused PID does not hold a run folder,
and the smaller promises of the run folder (its log, its printed commands, --max-steps)."""
import csv
import json
import os
import socket
import subprocess
import sys
import time

import pytest
import torch

import evaluate
import train
from support import checkpoints, runs
from test_train_robustness import TINY, list_dataset, sha


def finite(path):
    return checkpoints.finite_weights(torch.load(path, map_location="cpu", weights_only=False)["model"])


# --- a diverged model -----------------------------------------------------------------------------
def test_a_huge_learning_rate_never_saves_non_finite_weights_and_the_advice_works(synth_root, tmp_path):
    run = str(tmp_path / "run")
    common = ["--data-root", synth_root, "--out", run, "--epochs", "3", "--workers", "0"] + TINY
    train.main(common + ["--max-steps", "3"])                  # one epoch: finite last.pt and best.pt
    before = sha(os.path.join(run, "best.pt"))
    with pytest.raises(SystemExit) as e:
        train.main(["--resume", run, "--lr", "1e5"])
    msg = str(e.value)
    assert "not finite" in msg or "non-finite" in msg, msg
    assert f"--resume {run} --lr 10000" in msg and "holds finite weights" in msg, msg
    assert finite(os.path.join(run, "last.pt")) and sha(os.path.join(run, "best.pt")) == before
    metrics = json.load(open(os.path.join(run, "metrics.json")))
    assert all(m["val_top1"] == m["val_top1"] for m in metrics if "val_top1" in m)     # no NaN epoch recorded
    res = train.main(["--resume", run, "--lr", "1e-4", "--max-steps", "5"])            # the advice works
    assert res["step"] == 5 and finite(os.path.join(run, "last.pt"))


def test_weights_gone_non_finite_are_not_validated_or_saved(synth_root, tmp_path, monkeypatch):
    run = str(tmp_path / "run")
    real = train.train_step

    def poison(r, clip, labels, step, **kw):                  # an update that overflows, loss still finite
        out = real(r, clip, labels, step, **kw)
        if step == 2:
            with torch.no_grad():
                next(r.model.parameters()).fill_(float("inf"))
        return out
    monkeypatch.setattr(train, "train_step", poison)
    with pytest.raises(SystemExit, match="no longer finite after step 3.*no checkpoint was written yet"):
        train.main(["--data-root", synth_root, "--out", run, "--epochs", "2", "--workers", "0"] + TINY)
    assert not os.path.exists(os.path.join(run, "best.pt")) and not os.path.exists(os.path.join(run, "last.pt"))


# --- a validation set that cannot be read ---------------------------------------------------------
def test_an_unreadable_validation_set_stops_cleanly_and_keeps_the_epoch(synth_root, tmp_path):
    root = list_dataset(synth_root, str(tmp_path / "list"), ["a", "b", "c", "d"])
    empty = []
    for n, line in enumerate(open(os.path.join(root, "val.txt"))):
        path = os.path.join(root, f"empty{n}.avi")
        open(path, "wb").close()                               # an empty file for every validation video
        empty.append(f"{path} {line.split()[-1]}\n")
    open(os.path.join(root, "val.txt"), "w").writelines(empty)
    run = str(tmp_path / "run")
    flags = ["--dataset", "list", "--data-root", root, "--pretrained", "none", "--small", "--depth", "18",
             "--out", run, "--epochs", "2", "--workers", "0"] + TINY
    with pytest.raises(SystemExit, match=r"all 4 videos of the validation list of list .* are unreadable.*--resume"):
        train.main(flags)
    assert finite(os.path.join(run, "last.pt"))               # the epoch is kept
    ckpt = torch.load(os.path.join(run, "last.pt"), map_location="cpu", weights_only=False)
    assert ckpt["step"] == 3
    p = subprocess.run([sys.executable, "train.py"] + flags[:-len(TINY)] + ["--out", str(tmp_path / "r2")] + TINY,
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), capture_output=True,
                       text=True, timeout=300)
    assert p.returncode != 0 and "unreadable" in p.stderr and "Traceback" not in p.stderr, p.stderr[-2000:]


# --- impossible flags -----------------------------------------------------------------------------
@pytest.mark.parametrize("flag,value,expected", [("--seed", "-1", "--seed must be in"), ("--lr", "inf", "--lr must be a finite"),
                                                 ("--lr", "nan", "--lr must be a finite"),
                                                 ("--lam", "inf", "--lam must be a finite"),
                                                 ("--warmup-epochs", "nan", "--warmup-epochs must be a finite")])
@pytest.mark.parametrize("dry", [False, True])
def test_impossible_flag_values_are_refused_at_once(synth_root, tmp_path, flag, value, expected, dry):
    run = tmp_path / "run"
    with pytest.raises(SystemExit, match=expected):
        train.main(["--data-root", synth_root, "--out", str(run), flag, value] + TINY + (["--dry-run"] if dry else []))
    assert not run.exists()                                    # refused before any work


# --- a full disk at the first save ----------------------------------------------------------------
@pytest.mark.parametrize("fails", ["last.pt", "best.pt"])
def test_a_full_disk_at_the_first_save_leaves_a_way_on_that_works(synth_root, tmp_path, monkeypatch, fails):
    run = str(tmp_path / "run")
    real = runs.atomic_torch_save

    def full(obj, path):
        if os.path.basename(path) == fails:
            raise OSError(28, f"could not write {path} (No space left on device)")
        return real(obj, path)
    monkeypatch.setattr(runs, "atomic_torch_save", full)
    common = ["--data-root", synth_root, "--out", run, "--epochs", "2", "--workers", "0"] + TINY
    with pytest.raises(SystemExit) as e:
        train.main(common)
    monkeypatch.setattr(runs, "atomic_torch_save", real)
    if fails == "last.pt":                                     # nothing to resume: start again, as it says
        assert "start the run again with the same command" in str(e.value), str(e.value)
        assert not os.path.exists(os.path.join(run, "best.pt"))
        assert train.main(common)["finished"]
    else:                                                      # last.pt was written first: resume, as it says
        assert f"--resume {run}" in str(e.value), str(e.value)
        assert train.main(["--resume", run])["finished"]


# --- a lock whose PID now belongs to another program -----------------------------------------------
def test_a_lock_whose_pid_was_reused_is_taken_over(synth_root, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = run / "train.lock"
        lock.write_text(f"{other.pid} {socket.gethostname()}\n")
        past = time.time() - 3600                              # written an hour before that process started
        os.utime(lock, (past, past))
        res = train.main(["--data-root", synth_root, "--out", str(run), "--max-steps", "1", "--workers", "0"] + TINY)
        assert res["step"] == 1 and f"left by PID {other.pid}" in capsys.readouterr().out
    finally:
        other.kill()
        other.wait()


# --- the run folder's smaller promises ------------------------------------------------------------
def test_log_csv_leftovers_and_an_all_nul_log_are_handled_with_a_word(synth_root, tmp_path, capsys):
    run = tmp_path / "run"
    common = ["--data-root", synth_root, "--out", str(run), "--epochs", "2", "--log-every", "1", "--workers", "0"]
    train.main(common + ["--max-steps", "2"] + TINY)
    (run / "log.csv.tmp.999999").write_text("step,epoch\n1,")  # what a kill during the rewrite leaves
    (run / "log.csv").write_bytes(b"\x00" * 300)
    capsys.readouterr()
    train.main(["--resume", str(run), "--max-steps", "3"])
    assert "log.csv is unreadable" in capsys.readouterr().out
    assert not list(run.glob("log.csv.tmp.*"))
    assert [int(r["step"]) for r in csv.DictReader(open(run / "log.csv"))] == [3]


def test_printed_commands_are_quoted_and_max_steps_validates_a_skipped_epoch(synth_root, tmp_path, capsys):
    run = tmp_path / "a run"
    train.main(["--data-root", synth_root, "--out", str(run), "--epochs", "4", "--val-every", "3",
                "--max-steps", "3", "--workers", "0"] + TINY)   # ends with epoch 1, which --val-every skips
    out = capsys.readouterr().out
    assert f"--checkpoint '{run}/best.pt'" in out and f"--resume '{run}'" in out, out
    metrics = json.load(open(run / "metrics.json"))
    assert metrics[-1]["epoch"] == 1 and "val_top1" in metrics[-1]
    assert "final validation" in out


def test_an_empty_split_is_named(tmp_path):
    for name, text in (("train.txt", ""), ("val.txt", ""), ("classes.txt", "a\nb\n")):
        (tmp_path / name).write_text(text)
    with pytest.raises(SystemExit, match=rf"list at {tmp_path}: split 1's training list has no videos"):
        train.main(["--dataset", "list", "--data-root", str(tmp_path), "--pretrained", "none", "--small",
                    "--out", str(tmp_path / "run"), "--workers", "0"] + TINY)


def test_evaluate_refuses_a_checkpoint_with_non_finite_weights(synth_root, tmp_path):
    run = tmp_path / "run"
    train.main(["--data-root", synth_root, "--out", str(run), "--max-steps", "1", "--workers", "0"] + TINY)
    ckpt = torch.load(run / "last.pt", map_location="cpu", weights_only=False)
    next(iter(v for v in ckpt["model"].values() if v.is_floating_point())).fill_(float("nan"))
    torch.save(ckpt, tmp_path / "diverged.pt")
    with pytest.raises(SystemExit, match="holds weights that are not finite"):
        evaluate.main(["--checkpoint", str(tmp_path / "diverged.pt"), "--data-root", synth_root, "--workers", "0"])
