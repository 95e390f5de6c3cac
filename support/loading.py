"""What keeps a long run's data loading alive and honest, apart from the paper's pipeline in data.py:
unreadable videos counted across DataLoader worker processes and warned about once, and worker processes
that survive a scheduler's SIGTERM but never keep a finished process from exiting."""
import atexit
import collections
import functools
import multiprocessing.util  # noqa: F401 - its exit handler must be registered before ours (see below)
import os
import random
import signal
import warnings

import numpy as np
import torch

from support.system import gather_objects


class SkippedVideoWarning(RuntimeWarning):
    """A video could not be read (replaced by another one in training, scored as unreadable at test)."""


class SkipLog:
    """The unreadable videos of one dataset object. Counts live in shared memory, so DataLoader worker
    processes (fork or spawn) add to the counters the main process reads. Increments from two workers at
    the same instant could lose one count; that only under-reports, it never hides a broken file (the
    worker prints the warning either way). Warned once: in training per path per epoch and process
    (`substitute`: the video is replaced), in the test protocol per path (its item has label -1)."""

    def __init__(self, paths, name, substitute):
        self.paths, self.name, self.substitute = list(paths), name, substitute
        self.counts = torch.zeros(len(self.paths), dtype=torch.int32).share_memory_()
        self.bad = set()  # indices that failed in this process: not retried as substitutes
        self.warned = set()  # (epoch, path) or path already warned about in this process

    def note(self, index, err, epoch):
        path = self.paths[index]
        first = int(self.counts[index]) == 0  # over all workers: the test protocol warns once
        self.counts[index] += 1
        self.bad.add(index)
        if self.substitute and (epoch, path) not in self.warned:
            self.warned.add((epoch, path))
            warnings.warn(f"{self.name}: skipping unreadable video {path} (epoch {epoch}): "
                          f"{type(err).__name__}: {err}", SkippedVideoWarning)
        elif not self.substitute and first and path not in self.warned:
            self.warned.add(path)
            warnings.warn(f"{self.name}: unreadable video {path}: {type(err).__name__}: {err}; not replaced: "
                          "its item has label -1 (left out of the scores, counted as unreadable)",
                          SkippedVideoWarning)

    def skipped(self):
        """collections.Counter path -> how many times it was skipped (all workers)."""
        nz = torch.nonzero(self.counts).flatten().tolist()
        return collections.Counter({self.paths[i]: int(self.counts[i]) for i in nz})

    def report(self):
        """A one-line summary of skipped videos ('' if none), for train.py to print once per epoch."""
        s = self.skipped()
        if not s:
            return ""
        items = ", ".join(f"{p} (x{c})" for p, c in s.most_common(10))
        more = f", ... {len(s) - 10} more" if len(s) > 10 else ""
        return f"{self.name}: {sum(s.values())} reads of {len(s)} unreadable videos were skipped: {items}{more}"


def unreadable_over_ranks(ds):
    """Sorted paths of the unreadable videos of dataset `ds` over every rank (its SkipLog counts in
    shared memory, so DataLoader workers' failures are included)."""
    return sorted({path for part in gather_objects(list(ds.unreadable())) for path in part})


# Worker shutdown. A scheduler (SLURM, Kubernetes) sends SIGTERM to every process of the job, and Ctrl-C
# sends SIGINT to the whole foreground group. A worker that died of it would take the run down with
# "DataLoader worker ... killed by signal" before the main process could save its mid-epoch checkpoint,
# so while their parent runs the workers ignore both, and the main process (train.py's stop request)
# finishes its step, saves, and shuts them down. But at interpreter exit, multiprocessing stops every
# worker still up with SIGTERM and then joins it: an ignored SIGTERM would hang that join forever (an
# error with live workers, a script that leaves a loader mid-epoch). So the main process raises a
# shared flag at exit, before multiprocessing's exit handler runs (atexit runs the later-registered
# first), and a worker's SIGTERM handler exits when that flag is up or when its parent is gone. (Until
# the worker's init runs, a forked worker has its parent's handlers: train.py installs its own before
# it starts any worker.)
_EXITING = torch.zeros(1, dtype=torch.uint8).share_memory_()
atexit.register(_EXITING.fill_, 1)  # registered after multiprocessing.util's: runs before it


def _on_sigterm(exiting, parent):
    def handler(signum, frame):
        if int(exiting[0]) or os.getppid() != parent:
            os._exit(0)  # nothing to flush: a worker holds no state of its own
    return handler


def _worker_init(worker_id, exiting, parent):
    # Items do not depend on these seeds (they use (seed, epoch, index)); seeding keeps any other library
    # randomness distinct per worker and reproducible. One intra-op thread per worker avoids oversubscribing.
    s = torch.utils.data.get_worker_info().seed % 2 ** 32
    np.random.seed(s)
    random.seed(s)
    torch.set_num_threads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_sigterm(exiting, parent))


def worker_init_fn():
    """DataLoader's worker_init_fn for workers started by this process (picklable, for spawn too)."""
    return functools.partial(_worker_init, exiting=_EXITING, parent=os.getpid())
