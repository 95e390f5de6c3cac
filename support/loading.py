"""What keeps a long run's data loading alive, exact, honest and fast, apart from the paper's pipeline in
data.py: unreadable videos counted across DataLoader worker processes, warned about once and replaced
(training) or scored as unreadable (test protocol); the samplers that resume mid-epoch and shard over
ranks; batches handed from the workers through a ring of shared memory (data_loader, SharedBatches);
and worker processes that survive a scheduler's SIGTERM but never keep a finished process from exiting."""
import atexit
import collections
import functools
import math
import multiprocessing.util  # noqa: F401 - its exit handler must be registered before ours (see below)
import os
import random
import signal
import uuid
import warnings
import weakref

import numpy as np
import torch
from torch._utils import ExceptionWrapper  # what DataLoader hands on for its loop to raise

from support import decode
from support.system import distributed, gather_objects


class SkippedVideoWarning(RuntimeWarning):
    """A video could not be read (replaced by another one in training, scored as unreadable at test)."""


class SkipLog:
    """The unreadable videos of one dataset object. Counts live in shared memory, so DataLoader worker
    processes (fork or spawn) add to the counters the main process reads. Increments from two workers at
    the same instant could lose one count; that only under-reports, it never hides a broken file (the
    worker prints the warning either way). Warned once: in training per path per epoch and process
    (`substitute`: the video is replaced), in the test protocol per path (its item has label -1)."""

    def __init__(self, paths, name, substitute, seed=0):
        self.paths, self.name, self.substitute, self.seed = list(paths), name, substitute, seed
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

    def item(self, index, load, epoch, blank):
        """load(index, key) -> (clip, label) for item `index`, but a corrupt, empty or unreadable video never
        stops a run: it is counted and warned about (note), then replaced (substitute=True, see
        _substitute) or returned as blank() = (zeros, -1) (substitute=False: the test protocol)."""
        err = RuntimeError("failed earlier in this process")
        if index not in self.bad:
            try:
                return load(index, index)
            except Exception as e:  # noqa: BLE001 - any decode/IO failure means "skip this video"
                err = e
        self.note(index, err, epoch)
        return self._substitute(index, err, load, epoch) if self.substitute else blank()

    def _substitute(self, index, err, load, epoch):
        """The next readable sample of a permutation seeded by (seed, epoch, index), with item `index`'s
        randomness (load(j, index)), so the substitute is deterministic too. If 100 videos in a row fail,
        or every video fails, the data is broken: raise with the last error."""
        fails = 1
        order = np.random.default_rng([self.seed, epoch, index, 1]).permutation(len(self.paths))
        for j in order.tolist():
            if j == index or j in self.bad:
                continue
            try:
                return load(j, index)
            except Exception as e:  # noqa: BLE001
                self.note(j, e, epoch)
                err, fails = e, fails + 1
                if fails >= 100:
                    break
        raise RuntimeError(f"{self.name}: {fails} videos in a row could not be read "
                           f"({'every video failed' if fails < 100 else 'the data looks broken'}); "
                           f"last error: {type(err).__name__}: {err}. Check the files with "
                           f"`python data.py inspect --dataset {self.name} --data-root ...`")

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


# Samplers. train.py needs an exact mid-epoch resume and every rank its own share of the videos.
def _rank_world(rank=None, world_size=None):
    """(rank, world size): the given ones, else torch.distributed's when it is initialised, else (0, 1)."""
    r, w = 0, 1
    if distributed():
        r, w = torch.distributed.get_rank(), torch.distributed.get_world_size()
    return (r if rank is None else rank), (w if world_size is None else world_size)


class _IndexSampler(torch.utils.data.Sampler):
    """What both samplers share: they compute their `indices()` list; iterating and len() use it."""

    def __iter__(self):
        return iter(self.indices())

    def __len__(self):
        return len(self.indices())


class ResumableSampler(_IndexSampler):
    """Training order: a permutation seeded by (seed, epoch), padded (by repeating its start) to a multiple
    of the world size like DistributedSampler, this rank's share taken as every world-th index, cut to
    whole batches (drop_last; kept whole if shorter than one batch), minus the first `skip_batches`
    batches (mid-epoch resume). `set_epoch` also sets the dataset's epoch (augmentation randomness), so
    train.py only calls `train_sampler.set_epoch(epoch, skip_batches)` before each epoch.

    It stands in for torch's DistributedSampler, whose sharding it reproduces (rank and world size come
    from torch.distributed when it is initialised), because DistributedSampler cannot start an epoch
    part-way through: an exact mid-epoch resume needs `skip_batches`."""

    def __init__(self, dataset, batch_size, seed=0, shuffle=True, drop_last=True, rank=None, world_size=None):
        self.dataset, self.batch_size, self.seed = dataset, batch_size, seed
        self.shuffle, self.drop_last = shuffle, drop_last
        self.rank, self.world_size = rank, world_size
        self.epoch, self.skip_batches = 0, 0

    def set_epoch(self, epoch, skip_batches=0):
        self.epoch, self.skip_batches = int(epoch), int(skip_batches)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    def indices(self):
        rank, world = _rank_world(self.rank, self.world_size)
        n = len(self.dataset)
        order = np.random.default_rng([self.seed, self.epoch, 7]).permutation(n) if self.shuffle else np.arange(n)
        total = math.ceil(n / world) * world
        order = np.resize(order, total)  # pads by repeating from the start
        mine = order[rank:total:world]
        if self.drop_last and len(mine) >= self.batch_size:
            mine = mine[: len(mine) // self.batch_size * self.batch_size]
        return mine[self.skip_batches * self.batch_size:].tolist()


class ShardSampler(_IndexSampler):
    """Validation: sequential, every world-th sample for this rank, no padding, so each video is scored
    exactly once over all ranks. The per-rank metric sums are all-reduced by train.py / evaluate.py."""

    def __init__(self, n, rank=None, world_size=None):
        self.n, self.rank, self.world_size = n, rank, world_size

    def indices(self):
        rank, world = _rank_world(self.rank, self.world_size)
        return list(range(rank, self.n, world))


# Batches through shared memory. DataLoader's own hand-over costs a worker as much as decoding a small
# clip: each batch is stacked into freshly created shared memory (every page faulted in anew) and its
# file descriptor passed to the parent over a socket. Here each worker owns a few batch slots of one
# ring of shared memory made before the workers start: it copies its items into the next slot, in the
# order the decoder left their pixels, and sends only the slot's number and the labels. The parent,
# on receiving it (in the pin-memory thread when there is one), copies the slot out into a tensor of
# its own (pinned for CUDA), so a batch never changes under whoever holds it.
_RINGS = weakref.WeakValueDictionary()  # key -> SharedBatches, in the process that built the loader
PREFETCH = 2  # batches each worker works ahead (DataLoader's prefetch_factor, its default)


class SharedBatches:
    """A DataLoader collate_fn for (clip, label) items whose clips are uint8 of `item_shape` (..., C, H,
    W): in a worker process it fills the worker's next slot of the ring and returns a _Slot, which the
    parent unpickles into (clips (n, *item_shape), labels (n,)); in the parent process (workers=0), or
    for other items, it is torch's default_collate. Made for data_loader's loaders: a map-style
    dataset, batches in order, prefetch_factor = `prefetch` (anything else may raise the error below).

    Slot safety: worker w writes its batches into slots w*Q ... w*Q+Q-1 in turn, Q = prefetch. Indices
    go to the workers in turn, prefetch per worker ahead of the consumer, so worker w is given its
    batch j+Q only after its batch j+1 was handed out, and its batches reach the parent in order: batch
    j was received, and copied out, before. A per-slot stamp, set to -1 while a slot is written, turns
    what would break that (two iterators of one loader at once) into an error, never a mixed batch."""

    def __init__(self, item_shape, batch_size, workers, prefetch=PREFETCH, pin=False):
        *lead, c, h, w = item_shape
        self.item_shape, self.batch_size, self.per_worker, self.pin = tuple(item_shape), batch_size, prefetch, pin
        slots = workers * prefetch
        try:  # channels last: the order of the items' pixels, so a copy into a slot is a plain copy
            self.ring = torch.empty((slots, batch_size, *lead, h, w, c), dtype=torch.uint8).share_memory_()
        except RuntimeError as e:
            raise RuntimeError(f"the data loader could not take {slots} batches of shared memory "
                               f"({slots * batch_size * math.prod(item_shape) / 2 ** 20:.0f} MiB, {prefetch} for "
                               f"each of its {workers} workers) from /dev/shm: {e}. Give /dev/shm more room "
                               "(docker run --shm-size ...), or pass fewer --workers or a smaller --batch-size") from e
        self.stamps = torch.zeros(slots, dtype=torch.int64).share_memory_()
        self.key, self.count = uuid.uuid4().hex, 0
        _RINGS[self.key] = self

    def fits(self, batch):
        """Whether `batch` is a list of at most batch_size (uint8 clip of item_shape, int label) items."""
        return len(batch) <= self.batch_size and all(
            isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], torch.Tensor)
            and item[0].dtype == torch.uint8 and tuple(item[0].shape) == self.item_shape
            and isinstance(item[1], (int, np.integer)) for item in batch)

    def __call__(self, batch):
        info = torch.utils.data.get_worker_info()
        if info is None or info.id * self.per_worker >= len(self.stamps) or not self.fits(batch):
            return torch.utils.data.default_collate(batch)
        clips, labels = zip(*batch)
        i = info.id * self.per_worker + self.count % self.per_worker
        self.count += 1
        stamp = (os.getpid() << 24) + self.count  # unique to this worker and batch
        self.stamps[i] = -1
        for j, x in enumerate(clips):  # (..., C, H, W) channels-last -> (..., H, W, C), a plain copy
            self.ring[i, j].copy_(x.movedim(-3, -1))
        self.stamps[i] = stamp
        return _Slot(self.key, i, len(batch), np.asarray(labels, dtype=np.int64), stamp)

    def receive(self, i, n, stamp):
        """A copy of slot i's first n clips, checked against the stamp the worker sent."""
        out = torch.empty((n, *self.ring.shape[2:]), dtype=torch.uint8, pin_memory=self.pin)
        out.numpy()[:] = self.ring[i, :n].numpy()  # a plain copy on this thread (torch's would wake its pool)
        if int(self.stamps[i]) != stamp:
            raise RuntimeError("a shared batch was overwritten while it was read: is a second iterator of the "
                               "same DataLoader running? (support/loading.py, SharedBatches)")
        return out.movedim(-1, -3)  # (n, *item_shape), channels-last like the items


class _Slot:
    """What a worker sends for one batch: unpickled in the parent as (clips, labels), copied out of the ring."""

    def __init__(self, key, i, n, labels, stamp):
        self.key, self.i, self.n, self.labels, self.stamp = key, i, n, labels, stamp

    def __reduce__(self):
        return _received, (self.key, self.i, self.n, self.labels, self.stamp)


def _received(key, i, n, labels, stamp):
    """(clips, labels) of a worker's batch; an error comes back as DataLoader's ExceptionWrapper, which the
    loop raises in the training thread with its message (raised here, in the pin-memory thread, it would
    only end that thread, and the loop would report "pin memory thread exited unexpectedly")."""
    try:
        ring = _RINGS.get(key)
        if ring is None:
            raise RuntimeError("a loader worker sent a shared batch its parent has no ring for "
                               "(support/loading.py, SharedBatches)")
        return ring.receive(i, n, stamp), torch.from_numpy(labels)
    except Exception:  # noqa: BLE001 - any failure is handed to the loop, which raises it
        return ExceptionWrapper(where="receiving a batch from a data loader worker")


def data_loader(ds, batch_size, sampler, workers, item_shape=None, seed=0, pin=None):
    """A DataLoader of (clip, label) items whose workers hand batches over through SharedBatches (when
    `item_shape`, the uint8 clips' shape, is given), are seeded (worker_init_fn, and `seed` for the
    loader's own generator) and outlive a scheduler's SIGTERM; pinned when `pin` (default: when CUDA is
    there). workers=0 loads in this process."""
    pin = torch.cuda.is_available() if pin is None else pin
    ring = workers > 0 and item_shape is not None
    return torch.utils.data.DataLoader(
        ds, batch_size=batch_size, sampler=sampler, num_workers=workers, pin_memory=pin,
        collate_fn=SharedBatches(item_shape, batch_size, workers, pin=pin) if ring else None,
        prefetch_factor=PREFETCH if workers > 0 else None, worker_init_fn=worker_init_fn(),
        persistent_workers=False, generator=torch.Generator().manual_seed(seed))


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
    decode.THREADS = 1  # the workers decode several videos at once: one decoder thread each
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_sigterm(exiting, parent))


def worker_init_fn():
    """DataLoader's worker_init_fn for workers started by this process (picklable, for spawn too)."""
    return functools.partial(_worker_init, exiting=_EXITING, parent=os.getpid())
