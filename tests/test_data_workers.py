"""Loader workers never keep a process alive: a script that leaves a data.py loader's iteration (by an
error or by exiting) with 2 workers still running ends within seconds, with its own exit code. And a
process-group SIGTERM does not kill the workers while their parent runs (train.py saves first)."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from support import synthetic

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("workers") / "set")
    synthetic.write_synthetic(root, classes=2, videos_per_class=8, size=16, frames=8, seed=0)
    return root


def run_script(body, root, timeout=40, before=""):
    """Run `before`, then `body` with `it` iterating a loader over `root` with 2 workers, in a fresh
    interpreter; (exit code, seconds, stdout, stderr)."""
    script = textwrap.dedent(f"""
        import os, signal, sys, time
        sys.path.insert(0, {REPO!r})
        import data
        {before}
        loaders = data.build_loaders("synthetic", {root!r}, segments=2, frames=2, crop_size=16,
                                     batch_size=2, workers=2)
        loaders.train_sampler.set_epoch(0)
        it = iter(loaders.train)
        x, y = next(it)                     # the workers are up and busy prefetching
        """) + textwrap.dedent(body)
    t0 = time.time()
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the whole group: the hung workers too
        proc.communicate()
        pytest.fail(f"the process hung for over {timeout} s after leaving the loader")
    return proc.returncode, time.time() - t0, out, err


def test_an_error_with_live_workers_ends_the_process(tiny_set):
    code, secs, _, err = run_script('raise RuntimeError("CUDA out of memory (simulated)")\n', tiny_set)
    assert code == 1 and "CUDA out of memory (simulated)" in err
    assert secs < 20


def test_an_abandoned_loader_does_not_block_exit(tiny_set):
    code, secs, out, _ = run_script('print("left mid-epoch"); sys.exit(3)\n', tiny_set)
    assert code == 3 and "left mid-epoch" in out and secs < 20


def test_a_group_sigterm_spares_the_workers_while_the_parent_runs(tiny_set):
    """The scheduler's SIGTERM to the whole group: the workers ignore it, so the parent can still take
    batches (train.py finishes its step and saves), then exits cleanly."""
    before = "stops = []; signal.signal(signal.SIGTERM, lambda *a: stops.append(1))  # as train.py does"
    body = """
        os.killpg(os.getpgid(0), signal.SIGTERM)                     # the scheduler: the whole group
        time.sleep(1.0)
        alive = all(w.is_alive() for w in it._workers)
        n = sum(x.shape[0] for x, _ in it)                           # the rest of the epoch still arrives
        print("stopped", len(stops), "workers alive", alive, "clips", n)
        """
    code, secs, out, err = run_script(body, tiny_set, before=before)
    assert code == 0, err
    assert "stopped 1 workers alive True clips 10" in out and secs < 20


def gone(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            return "\nState:\tZ" in f.read()  # a zombie has exited (its reaper may be slow)
    except FileNotFoundError:
        return True


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc")
def test_workers_outliving_their_parent_exit_on_sigterm(tiny_set):
    """The parent killed outright (SIGKILL, no exit handlers): a SIGTERM then ends its orphaned workers."""
    body = """
        print(" ".join(str(w.pid) for w in it._workers), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    code, _, out, _ = run_script(body, tiny_set)
    assert code == -signal.SIGKILL
    pids = [int(p) for p in out.split()]
    assert len(pids) == 2
    for p in pids:
        if not gone(p):
            os.kill(p, signal.SIGTERM)
    deadline = time.time() + 3  # well under PyTorch's own 5 s watchdog period
    while time.time() < deadline and not all(gone(p) for p in pids):
        time.sleep(0.1)
    assert all(gone(p) for p in pids)
