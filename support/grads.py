"""Gradient plumbing for mgda.JointTraining, none of it in the paper: the two gradients of one
backward pass kept apart, their sums over micro-batches, and their average over the ranks of
torch.distributed. mgda.py calls each in one line; Algorithm 1 never sees any of it.
"""
import torch
import torch.distributed as dist

from support.system import distributed


def gradients(loss, params, retain_graph=False, bases=None):
    """(d loss / d params, zeros where the loss does not reach a parameter; d loss / d bases or
    None). One backward pass gives both: autograd accepts the non-leaf bases beside the leaves."""
    inputs = list(params) + ([bases] if bases is not None else [])
    if not inputs:
        return [], None
    gs = list(torch.autograd.grad(loss, inputs, retain_graph=retain_graph, allow_unused=True))
    h = gs.pop() if bases is not None else None
    if bases is not None and h is None:
        raise ValueError("mgda.py (--mgda-space bases): a loss does not depend on the bases tensor given; "
                         "pass out.pwtp.A of the same forward pass (the node every PWTP output is computed from)")
    return [torch.zeros_like(p) if g is None else g for g, p in zip(gs, params)], h


def add_to(sums: dict, key: str, value):
    """sums[key] += value (a tensor, or a list of tensors elementwise), created on first use."""
    if key not in sums:
        sums[key] = [v.detach() for v in value] if isinstance(value, list) else value.detach()
    elif isinstance(value, list):
        for s, v in zip(sums[key], value):
            s.add_(v.detach())
    else:
        sums[key] = sums[key] + value.detach()


def reduce_over_ranks(sums: dict):
    """Rank averages of every tensor and tensor list in `sums`; nothing to do on one process."""
    if distributed():
        _all_reduce_means(sums)


def _all_reduce_means(sums, summed=("inner_bases",)):
    """Two all-reduces (one flat buffer of gradients, one of float64 scalars), then / world. Keys in
    `summed` are divided by world^2 instead: inner products of different ranks' bases are sums over
    different coordinates, and the global loss's bases gradient there is h_rank / world."""
    world = dist.get_world_size()
    lists = [k for k, v in sums.items() if isinstance(v, list)]
    scalars = [k for k, v in sums.items() if torch.is_tensor(v)]
    for keys, parts in ((lists, [g for k in lists for g in sums[k]]), (scalars, [sums[k].double() for k in scalars])):
        if not parts:
            continue
        flat = torch.cat([t.reshape(-1) for t in parts])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        for k in keys:
            like = sums[k] if isinstance(sums[k], list) else [sums[k]]
            out = []
            for t in like:
                out.append((flat[:t.numel()].view_as(t) / (world ** 2 if k in summed else world)).to(t.dtype))
                flat = flat[t.numel():]
            sums[k] = out if isinstance(sums[k], list) else out[0]
