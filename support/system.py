"""The machine a run is on: device choice, torchrun's process group, mixed precision, atomic file
writes, progress lines. One home for each rule; imports torch and the standard library only.

    resolve_device, setup_distributed, distributed   which device, which rank, are we distributed
    broadcast_buffers, sum_over_ranks, any_rank,
    gather_objects,
    rank_zero_first, quiet_unless                     what DistributedDataParallel would do for us, and more
    to_device, stop_workers                           channels-last on CUDA; loader workers shut down now
    AMP_DTYPES, autocast                              --amp bf16 / fp16
    atomic_write, atomic_torch_save, atomic_json,
    atomic_text, atomic_csv                           a crash never leaves half a file
    fmt_time, Progress                                ETAs and "videos 40/300" lines
    available_cores                                   the CPUs this process may use
"""
import contextlib
import csv
import errno
import io
import json
import os
import shutil
import time

import torch
import torch.distributed as dist


# ---------------------------------------------------------------------------------------------
# Device and ranks
# ---------------------------------------------------------------------------------------------
def resolve_device(arg="auto", local_rank=0, prog="evaluate.py"):
    """--device auto|cpu|cuda|cuda:K -> torch.device. `auto` (and a bare `cuda`) pick this process's
    GPU under torchrun (LOCAL_RANK), else the CPU. Asking for CUDA without one is an error."""
    if arg == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(arg)
    except RuntimeError:
        raise SystemExit(f"{prog}: --device {arg!r}: expected auto, cpu, cuda or cuda:K") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit(f"{prog}: --device {arg} asked for CUDA but none is available")
        if device.index is None:
            device = torch.device(f"cuda:{local_rank}")
    return device


def distributed():
    """The one rule for "are we distributed": a process group of more than one rank exists."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def setup_distributed(device_arg, prog="evaluate.py"):
    """(rank, world, device) from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK); the process
    group when world > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    device = resolve_device(device_arg, int(os.environ.get("LOCAL_RANK", "0")), prog=prog)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world > 1:
        # CUDA tensors (gradients, buffers) go through NCCL; the few small CPU tensors (loss log,
        # stop flag, train accuracy, gathered predictions) through Gloo, so neither has to be
        # copied to the other device.
        dist.init_process_group(backend="cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo")
    return rank, world, device


def close_distributed():
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def sum_over_ranks(t):
    """`t` (a CPU tensor) summed over every rank, in place; itself when not distributed."""
    if distributed():
        dist.all_reduce(t)
    return t


def gather_objects(obj):
    """[obj of rank 0, obj of rank 1, ...] on every rank (picklable objects); [obj] alone when not
    distributed. A collective: every rank calls it."""
    if not distributed():
        return [obj]
    parts = [None] * dist.get_world_size()
    dist.all_gather_object(parts, obj)
    return parts


def any_rank(flag):
    """True on every rank when `flag` is true on some rank (a collective: every rank calls it)."""
    return bool(sum_over_ranks(torch.tensor([float(bool(flag))])) > 0)


@contextlib.contextmanager
def rank_zero_first(world, rank):
    """Rank 0 runs the block first (it may write a shared file, e.g. the synthetic set on first
    use), the other ranks after it."""
    if world > 1 and rank != 0:
        dist.barrier()
    yield
    if world > 1 and rank == 0:
        dist.barrier()


def quiet_unless(speak):
    """Swallow stdout unless `speak` (rank 0 alone prints)."""
    return contextlib.nullcontext() if speak else contextlib.redirect_stdout(io.StringIO())


def to_device(model, device):
    """The model on `device`; on CUDA its convolution weights channels-last (faster cuDNN kernels)."""
    model.to(device)
    if device.type == "cuda":
        for p in model.parameters():
            if p.dim() in (4, 5):
                p.data = p.data.contiguous(memory_format=torch.channels_last if p.dim() == 4
                                           else torch.channels_last_3d)
    return model


def stop_workers(batches):
    """Shut the worker processes of a DataLoader iterator down now, and return None.

    Why: left to garbage collection, an iterator that an exception's traceback keeps alive is only
    cleaned up at interpreter exit, where multiprocessing stops the workers with SIGTERM and joins
    them; our workers ignore SIGTERM (data.py: a batch job's SIGTERM must reach the main process
    first), so that join never returns. Here the workers are told to stop and exit at once."""
    shutdown = getattr(batches, "_shutdown_workers", None)       # torch's _MultiProcessingDataLoaderIter
    if shutdown is not None:
        shutdown()
    return None


def broadcast_buffers(model):
    """BatchNorm running statistics of rank 0 on every rank (what DDP does), so that all ranks hold
    identical models at every step boundary; nothing to do on one process."""
    if distributed():
        _broadcast_by_dtype(list(model.buffers()))


def _broadcast_by_dtype(buffers):
    """One broadcast per dtype (running means/vars in float, batch counters in int64) instead of one
    per buffer: a ResNet-50 has ~160 of them, and each collective has a fixed latency."""
    by_dtype = {}
    for b in buffers:
        by_dtype.setdefault(b.dtype, []).append(b)
    for bufs in by_dtype.values():
        flat = torch.cat([b.data.reshape(-1) for b in bufs])
        dist.broadcast(flat, src=0)
        i = 0
        for b in bufs:
            b.data.copy_(flat[i:i + b.numel()].view_as(b))
            i += b.numel()


def available_cores():
    """CPUs this process may run on (its affinity mask, e.g. a batch job's share), else all of them."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):          # not Linux
        return os.cpu_count() or 1


# ---------------------------------------------------------------------------------------------
# Mixed precision
# ---------------------------------------------------------------------------------------------
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device, dtype):
    """Mixed-precision context for `dtype` (torch.bfloat16 / torch.float16), or none for None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


# ---------------------------------------------------------------------------------------------
# Atomic writes
# ---------------------------------------------------------------------------------------------
def atomic_write(path, write_fn):
    """Write `path` through a temporary file in the same folder, then os.replace it over `path`.

    Why: a kill or a crash mid-write then never leaves a truncated file under `path`, and the
    previous version stays readable until the new one is complete. If the write fails (a full
    disk raises OSError ENOSPC, often deep inside torch.save as "unexpected pos ..."), the
    temporary file is removed, so it cannot keep the disk full, and an OSError that names the file
    is raised; the old `path` is untouched."""
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        write_fn(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        if isinstance(e, (OSError, RuntimeError)) and not isinstance(e, FileNotFoundError):
            free = shutil.disk_usage(os.path.dirname(os.path.abspath(path))).free
            raise OSError(getattr(e, "errno", None) or errno.EIO,
                          f"could not write {path} ({type(e).__name__}: {e}); {free / 2**20:.0f} MiB free "
                          f"there (disk full?). The previous {os.path.basename(path)}, if any, is untouched "
                          "and no temporary file was left behind") from e
        raise


def atomic_torch_save(obj, path):
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def atomic_json(obj, path):
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2)
    atomic_write(path, write)


def atomic_text(path, fill):
    """`fill(f)` writes a text file (csv.writer(f), f.write ...) that appears at `path` whole or not at all."""
    def write(tmp):
        with open(tmp, "w", newline="") as f:
            fill(f)
    atomic_write(path, write)


def atomic_csv(path, header, rows):
    """A CSV file (a header row, then `rows`), written atomically."""
    def fill(f):
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    atomic_text(path, fill)


# ---------------------------------------------------------------------------------------------
# Progress lines
# ---------------------------------------------------------------------------------------------
def fmt_time(s):
    """Seconds as H:MM:SS (hours may pass 24): the ETA of every progress line."""
    s = int(max(0, s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class Progress:
    """A progress line on rank 0 every `every` batches and after the last one:
    "what: videos 40/300 | 12.3 videos/s | ETA 0:00:21". Each rank sees only its shard; the counts
    are this rank's scaled to the whole set (the shards differ by at most one video)."""

    def __init__(self, what, shard, total, log, every=10):
        self.what, self.shard, self.total, self.log, self.every = what, shard, total, log, every
        self.t0, self.batches = time.time(), 0

    def __call__(self, done):
        self.batches += 1
        if self.batches % self.every and done < self.shard:
            return
        videos = min(self.total, round(done * self.total / max(1, self.shard)))
        rate = videos / max(time.time() - self.t0, 1e-9)
        eta = (self.total - videos) / rate if rate > 0 else 0.0
        self.log(f"{self.what}: videos {videos}/{self.total} | {rate:.1f} videos/s | "
                 f"ETA {fmt_time(eta)}")
