"""train.py and evaluate.py when things go wrong: an error with loader workers ends the process, a
run owns its folder, --resume continues only the newest state of the same data, log.csv survives
a crash, the warm-up fits the run, a signal during validation saves at once, and evaluate.py's
--video and the closing lines say what is true."""
import csv
import hashlib
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import types

import pytest
import torch

import data
import evaluate
import pwtp
import train
from support import layouts, runlog, runs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--crop-size", "32", "--segments", "2", "--frames", "4", "--batch-size", "4"]
pytestmark = pytest.mark.filterwarnings("ignore::data.SkippedVideoWarning")


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def script(tmp_path, body):
    """A python file that imports train.py from the repository, runs `body`, then train.main(argv)."""
    path = tmp_path / "wrapped_train.py"
    path.write_text(f"import sys, time\nsys.path.insert(0, {ROOT!r})\nimport data, train\n{body}\n"
                    "train.main(sys.argv[1:])\n")
    return str(path)


def start(cmd):
    """A child in its own process group (like a batch job), threads as in this process (bit-exact)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()))
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)


def finish(p, timeout):
    """(output, seconds until exit); a child still running after `timeout` is killed and the test fails."""
    t0 = time.time()
    try:
        out = p.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out = p.communicate()[0]
        pytest.fail(f"still running after {timeout} s:\n{out[-3000:]}")
    return out, time.time() - t0


# --- an exception in the step with loader workers ends the process ---------------------------
def test_an_error_in_the_step_with_two_workers_ends_the_process(synth_root, tmp_path):
    boom = ("real = train.train_step\n"
            "def boom(run, clip, labels, step, *a, **kw):\n"
            "    if step == 2:\n"
            "        raise RuntimeError('CUDA out of memory (raised on purpose at step 3)')\n"
            "    return real(run, clip, labels, step, *a, **kw)\n"
            "train.train_step = boom")
    p = start([sys.executable, script(tmp_path, boom), "--data-root", synth_root, "--out", str(tmp_path / "run"),
               "--workers", "2", "--log-every", "1"] + TINY + ["--batch-size", "2"])
    t0 = time.time()
    out, _ = finish(p, timeout=60)
    assert p.returncode not in (0, None) and "CUDA out of memory (raised on purpose" in out, out
    assert time.time() - t0 < 30, f"took {time.time() - t0:.0f} s to exit"
    assert not os.path.exists(tmp_path / "run" / "train.lock")          # released on the way out


# --- a run owns its folder ---------------------------------------------------------------------
def test_a_second_run_in_the_same_folder_stops_and_names_the_first(synth_root, tmp_path):
    run = str(tmp_path / "run")
    cmd = [sys.executable, os.path.join(ROOT, "train.py"), "--data-root", synth_root, "--out", run,
           "--resume", "auto", "--epochs", "200", "--workers", "0", "--log-every", "1"] + TINY
    first = start(cmd)
    try:
        for line in first.stdout:                          # its lock is taken before the first step
            if "step 1/" in line:
                break
        second = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert second.returncode != 0
        assert f"PID {first.pid}" in second.stderr and "train.lock" in second.stderr, second.stderr
    finally:
        os.killpg(first.pid, signal.SIGTERM)
        finish(first, timeout=60)
    assert first.returncode == 128 + signal.SIGTERM            # the first run saved and stopped normally
    rows = list(csv.DictReader(open(os.path.join(run, "log.csv"))))
    assert [int(r["step"]) for r in rows] == list(range(1, len(rows) + 1))   # one writer: no duplicate rows


def test_a_lock_left_by_a_dead_run_is_taken_over_with_a_warning(synth_root, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()                                            # a PID that no longer runs
    (run / "train.lock").write_text(f"{gone.pid} {socket.gethostname()}\n")
    res = train.main(["--data-root", synth_root, "--out", str(run), "--max-steps", "1", "--workers", "0"] + TINY)
    assert res["step"] == 1
    assert f"took over {run / 'train.lock'} left by PID {gone.pid}" in capsys.readouterr().out
    assert not (run / "train.lock").exists()               # released at the end
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:                                                   # a live holder is never taken over
        (run / "train.lock").write_text(f"{alive.pid} {socket.gethostname()}\n")
        before = sha(run / "last.pt")
        with pytest.raises(SystemExit, match=f"in use by PID {alive.pid}, which has run since"):
            train.main(["--resume", str(run)])
        assert sha(run / "last.pt") == before and (run / "train.lock").read_text().startswith(str(alive.pid))
    finally:
        alive.kill()
        alive.wait()


# --- --resume continues the newest state only ---------------------------------------------------
def test_resume_from_a_file_that_is_not_the_newest_state_is_refused(synth_root, tmp_path):
    run = tmp_path / "run"
    common = ["--data-root", synth_root, "--out", str(run), "--epochs", "3", "--workers", "0"] + TINY
    train.main(common + ["--max-steps", "3"])              # epoch 1: best.pt and last.pt at step 3
    train.main(["--resume", str(run), "--max-steps", "4"])  # last.pt now at step 4
    before = {f: sha(run / f) for f in ("last.pt", "log.csv", "metrics.json")}
    with pytest.raises(SystemExit, match=r"best\.pt is not the run's newest state .*last\.pt.*--resume .*--pretrained"):
        train.main(["--resume", str(run / "best.pt")])
    assert {f: sha(run / f) for f in before} == before     # nothing rolled back
    assert train.main(["--resume", str(run / "last.pt"), "--max-steps", "5"])["step"] == 5   # last.pt is fine


# --- log.csv: rewritten atomically, crash leftovers dropped ------------------------------------
def test_resume_drops_a_partial_row_and_nul_bytes_from_log_csv(synth_root, tmp_path, capsys):
    run = tmp_path / "run"
    train.main(["--data-root", synth_root, "--out", str(run), "--epochs", "2", "--max-steps", "2",
                "--log-every", "1", "--workers", "0"] + TINY)
    with open(run / "log.csv", "ab") as f:                 # what a crash mid-write can leave
        f.write(b"3,1,1.23")
        f.write(b"\x00" * 64)
    capsys.readouterr()
    assert train.main(["--resume", str(run)])["finished"]
    assert "dropped 1 incomplete row" in capsys.readouterr().out
    rows = list(csv.DictReader(open(run / "log.csv")))
    assert [int(r["step"]) for r in rows] == list(range(1, 7)) and all(r["loss_c"] for r in rows)
    assert b"\x00" not in (run / "log.csv").read_bytes()


def test_a_crash_while_log_csv_is_rewritten_leaves_it_whole(synth_root, tmp_path, monkeypatch):
    run = tmp_path / "run"
    train.main(["--data-root", synth_root, "--out", str(run), "--epochs", "2", "--max-steps", "2",
                "--log-every", "1", "--workers", "0"] + TINY)
    before = sha(run / "log.csv")

    def crash(self, rows):                                 # a kill half-way through the rewrite
        for r in list(rows)[:1]:
            self.writerow(r)
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(runlog.csv.DictWriter, "writerows", crash)
    with pytest.raises(OSError):
        train.main(["--resume", str(run)])
    assert sha(run / "log.csv") == before
    assert not [f for f in os.listdir(run) if ".tmp." in f]


# --- --resume checks what it continues ------------------------------------------------------------
def list_dataset(synth_root, root, classes):
    """The synthetic videos as a `list` dataset (train.txt, val.txt, classes.txt) under `root`."""
    os.makedirs(root, exist_ok=True)
    for train_split, name in ((True, "train.txt"), (False, "val.txt")):
        _, samples = layouts.parse_dataset("synthetic", synth_root, 1, train_split)
        with open(os.path.join(root, name), "w") as f:
            f.writelines(f"{path} {label}\n" for path, label in samples)
    with open(os.path.join(root, "classes.txt"), "w") as f:
        f.writelines(c + "\n" for c in classes)
    return root


def test_resume_refuses_other_classes_and_says_which_file_rules(synth_root, tmp_path, capsys):
    root = list_dataset(synth_root, str(tmp_path / "list"), ["a", "b", "c", "d"])
    run = tmp_path / "run"
    train.main(["--dataset", "list", "--data-root", root, "--pretrained", "none", "--small", "--depth", "18",
                "--out", str(run), "--epochs", "2", "--max-steps", "1", "--workers", "0"] + TINY)
    with open(os.path.join(root, "classes.txt"), "w") as f:              # renamed and reordered
        f.write("a\nc\nb\nd\n")
    with pytest.raises(SystemExit, match=r"lists class 1 as 'c', but the checkpoint was trained with 'b'"):
        train.main(["--resume", str(run)])
    with open(os.path.join(root, "classes.txt"), "w") as f:              # a class added
        f.write("a\nb\nc\nd\ne\n")
    with pytest.raises(SystemExit, match=r"lists 5 classes, but the checkpoint was trained with 4"):
        train.main(["--resume", str(run)])
    with open(os.path.join(root, "classes.txt"), "w") as f:
        f.write("a\nb\nc\nd\n")
    args = json.load(open(run / "args.json"))
    json.dump(dict(args, epochs=7, dropout=0.5), open(run / "args.json", "w"))   # edited by hand
    capsys.readouterr()
    res = train.main(["--resume", str(run)])
    out = capsys.readouterr().out
    assert "args.json differs from the checkpoint in --dropout, --epochs: the checkpoint rules" in out
    assert res["finished"] and json.load(open(run / "args.json"))["epochs"] == 2   # rewritten from it


# --- the warm-up fits in the run -----------------------------------------------------------------
def test_a_warmup_longer_than_the_run_is_shortened_and_the_cosine_runs(synth_root, tmp_path, capsys):
    run = tmp_path / "run"
    train.main(["--data-root", synth_root, "--out", str(run), "--epochs", "2", "--warmup-epochs", "5",
                "--log-every", "1", "--workers", "0"] + TINY)    # 3 steps per epoch: 15 asked, 6 in all
    assert "warm-up is shortened to 3 steps" in capsys.readouterr().out
    lr = [float(r["lr"]) for r in csv.DictReader(open(run / "log.csv"))]
    assert lr[:3] == pytest.approx([0.005 / 3, 0.010 / 3, 0.005], rel=1e-4)            # warm-up to the peak
    assert lr[3:] == pytest.approx([0.0025 * (1 + math.cos(math.pi * k / 3)) for k in range(3)], rel=1e-4)  # cosine
    assert lr[-1] < lr[2]


# --- a signal during validation saves at once ---------------------------------------------------
def test_sigterm_during_validation_saves_the_training_state_and_resumes_exactly(synth_root, tmp_path):
    common = ["--data-root", synth_root, "--epochs", "2", "--log-every", "1", "--workers", "0"] + TINY + [
        "--batch-size", "1"]                               # 12 steps per epoch, validation in 4 batches
    a = train.main(common + ["--out", str(tmp_path / "a")])
    slow = ("real = data.VideoDataset.__getitem__\n"
            "def slow(self, i):\n"
            "    if not self.train:\n"
            "        print('validation item', flush=True)\n"
            "        time.sleep(3.0)\n"
            "    return real(self, i)\n"
            "data.VideoDataset.__getitem__ = slow")
    p = start([sys.executable, script(tmp_path, slow)] + common + ["--out", str(tmp_path / "b")])
    for line in p.stdout:
        if line.startswith("validation item"):
            os.killpg(p.pid, signal.SIGTERM)               # what a batch system sends, to every process
            break
    out, seconds = finish(p, timeout=120)
    assert p.returncode == 128 + signal.SIGTERM and "stopped by SIGTERM at step 12" in out, out
    assert seconds < 8, f"{seconds:.1f} s from SIGTERM to exit"      # the 3 other batches would take 9 s
    ck = torch.load(tmp_path / "b" / "last.pt", map_location="cpu", weights_only=False)
    assert (ck["step"], ck["epoch"], ck["batch_in_epoch"], ck["history"]) == (12, 0, 12, [])   # not one step more
    b = train.main(["--resume", str(tmp_path / "b")])     # validates epoch 1 again, then goes on
    assert [e["val_top1"] for e in b["history"]] == [e["val_top1"] for e in a["history"]]
    sa, sb = a["model"].state_dict(), b["model"].state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


# --- the closing lines name files that exist ----------------------------------------------------
def test_closing_lines_do_not_point_at_a_deleted_best_pt(tmp_path):
    for name in ("log.csv", "metrics.json", "args.json", "last.pt"):
        (tmp_path / name).write_text("x")
    said = []
    run = types.SimpleNamespace(run_dir=str(tmp_path), log=said.append, args=types.SimpleNamespace(max_steps=None),
                                total_steps=6)
    runlog.closing_lines(run, {"history": [], "step": 6, "best_top1": 50.0}, None, None)
    assert "best.pt" not in said[-1] and f"--checkpoint {tmp_path}/last.pt" in said[-1]
    (tmp_path / "best.pt").write_text("x")
    runlog.closing_lines(run, {"history": [], "step": 6, "best_top1": 50.0}, None, None)
    assert f"--checkpoint {tmp_path}/best.pt" in said[-1]


# --- the run's DC gain ----------------------------------------------------------------------------
def test_dc_gain_is_logged_per_step_and_averaged_per_epoch(synth_root, tmp_path):
    run = tmp_path / "run"
    train.main(["--data-root", synth_root, "--out", str(run), "--epochs", "1", "--log-every", "1",
                "--workers", "0"] + TINY)
    rows = list(csv.DictReader(open(run / "log.csv")))
    gains = [float(r["dc_gain"]) for r in rows]
    assert len(gains) == 3 and all(0.0 < g <= 1.0 for g in gains)
    (epoch,) = json.load(open(run / "metrics.json"))
    assert epoch["dc_gain"] == pytest.approx(sum(gains) / 3, rel=1e-4)      # the mean over the logged steps
    rgb = tmp_path / "rgb"                                 # no PWTP: no DC gain
    train.main(["--data-root", synth_root, "--out", str(rgb), "--input", "rgb", "--epochs", "1", "--max-steps", "1",
                "--log-every", "1", "--workers", "0"] + TINY)
    assert [r["dc_gain"] for r in csv.DictReader(open(rgb / "log.csv"))] == [""]
    assert json.load(open(rgb / "metrics.json"))[0]["dc_gain"] is None


def test_only_a_logged_step_hands_back_its_bases(synth_root, tmp_path):
    """The DC gain is a diagnostic: a logged step returns its last micro-batch's bases A for it,
    any other step nothing, and both take the same step."""
    a = train.build_parser().parse_args(["--data-root", synth_root, "--out", str(tmp_path / "r"), "--workers", "0",
                                         "--batch-size", "2", "--accum-steps", "2"] + TINY[:6])
    results = []
    for log in (True, False):
        run = train.build_run(train.resolve_defaults(a, 1, "none"), 0, 1, torch.device("cpu"), print)
        torch.manual_seed(0)
        results.append((train.train_step(run, torch.randn(4, 8, 3, 32, 32), torch.tensor([0, 1, 2, 3]), 0, log=log),
                        run.model.state_dict()))
    (logged, w1), (plain, w2) = results
    assert logged.bases.shape == (2 * 2, 32, 32, 4, 1) and plain.bases is None   # (B*S, H, W, T, D)
    assert 0.0 < float(pwtp.dc_gain(logged.bases).mean()) <= 1.0
    assert all(torch.equal(w1[k], w2[k]) for k in w1)


# --- evaluate.py --video -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoint(synth_root, tmp_path_factory):
    run = str(tmp_path_factory.mktemp("ckpt") / "run")
    train.main(["--data-root", synth_root, "--out", run, "--max-steps", "1", "--workers", "0"] + TINY)
    return os.path.join(run, "last.pt")


def test_video_with_no_readable_file_exits_nonzero(checkpoint, tmp_path):
    folder = tmp_path / "broken"
    folder.mkdir()
    for name in ("a.avi", "b.mp4"):
        (folder / name).write_bytes(os.urandom(2048))
    with pytest.raises(SystemExit, match="none of the 2 --video files could be read") as e:
        evaluate.main(["--checkpoint", checkpoint, "--video", str(folder), "--workers", "0"])
    assert e.value.code not in (0, None)
    p = subprocess.run([sys.executable, os.path.join(ROOT, "evaluate.py"), "--checkpoint", checkpoint,
                        "--video", str(folder / "a.avi"), "--workers", "0"], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode != 0 and "none of the 1 --video files could be read" in p.stderr


def test_video_folder_counts_what_it_skipped(checkpoint, synth_root, tmp_path, capsys):
    _, samples = layouts.parse_dataset("synthetic", synth_root, 1, train=False)
    folder = tmp_path / "clips"
    folder.mkdir()
    shutil.copy(samples[0][0], folder / "one.avi")
    (folder / "notes.txt").write_text("not a video")
    (folder / "frames").mkdir()
    res = evaluate.main(["--checkpoint", checkpoint, "--video", str(folder), "--workers", "0",
                         "--out", str(tmp_path / "p.csv")])
    assert len(res["predictions"]) == 1
    assert res["skipped"] == [str(folder / "frames"), str(folder / "notes.txt")]
    assert "skipped 2 entries" in capsys.readouterr().out


def test_a_checkpoint_with_the_older_progress_names_still_resumes(synth_root, tmp_path):
    """Checkpoints written before the epoch's running sums were called epoch_sums (and held the
    DC gain) hold "epoch_acc": --resume reads them."""
    run = tmp_path / "run"
    train.main(["--data-root", synth_root, "--out", str(run), "--epochs", "2", "--max-steps", "2",
                "--workers", "0"] + TINY)
    ck = torch.load(run / "last.pt", map_location="cpu", weights_only=False)
    sums = ck.pop("epoch_sums")
    ck["epoch_acc"] = {k: sums[k] for k in ("loss_sum", "steps", "correct", "seen")}
    torch.save(ck, run / "last.pt")
    res = train.main(["--resume", str(run)])
    assert res["finished"] and res["history"][0]["dc_gain"] is not None      # the steps after the resume
