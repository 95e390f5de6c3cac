"""Joint training of dynamic-appearance learning and action recognition: Sec. 3.4-3.5, Eq. 9-13,
Algorithm 1 and the strategies of Table 5.

Two losses pull on the PWTP parameters theta_p (the "shared" parameters):
    L_c(theta_p, theta_c)  the recognition loss (cross-entropy of the backbone on DA frames),
    L_p(theta_p)           ENoPR, Eq. 7-8: how much of each clip the per-pixel subspaces miss.
The backbone and head, theta_c (the "recognition" parameters), only see L_c. Eq. 9 is the
two-objective problem min (L_c, L_p); the strategies below are different ways to turn it into
one gradient per step:

    recognition  lambda = 0: PWTP learns from L_c alone (the residual is then whatever helps the
                 classifier, with no pressure to be a projection residual at all)
    constant     L_c + lambda L_p with a fixed lambda
    scheduler    L_c + lambda(t) L_p with lambda(t) from Eq. 13 (large early, small late)
    separate     PWTP first trained on L_p alone, then frozen while the backbone learns on L_c
    mgda         Algorithm 1: the min-norm convex combination of the two gradients (Eq. 11-12),
                 a common descent direction whenever one exists, and zero only at a
                 Pareto-stationary point (Eq. 10)

Naming (EQUATIONS.md leaves the choice to us): alpha weighs g_c, the *recognition* gradient:
    shared update = alpha g_c + (1 - alpha) g_p,     with g_c = grad_{theta_p} L_c, g_p = grad_{theta_p} L_p.
We use this convex combination as written in Algorithm 1, *not* multiplied by 2, so on the shared
parameters MGDA takes steps of at most the size of the larger gradient.

Distributed training: every function here that produces gradients also averages them over the
ranks of torch.distributed (when it is initialised) *before* anything is derived from them. That
is what keeps alpha identical on every rank: alpha is a non-linear function of the gradients, so
averaging per-rank alphas would give a different (and rank-dependent) answer. train.py therefore
does not wrap the model in DistributedDataParallel: DDP averages the one gradient of one
backward pass, while MGDA needs two separate gradients of the shared parameters.
"""
import math
from typing import Iterable, List, Optional

import torch
import torch.distributed as dist


# ---------------------------------------------------------------------------------------------
# Eq. 11-12: the min-norm element of the segment between two gradients
# ---------------------------------------------------------------------------------------------
def min_norm_alpha(g_c: torch.Tensor, g_p: torch.Tensor) -> float:
    """Eq. 12: alpha* = clip_[0,1]( (g_p - g_c)^T g_p / ||g_c - g_p||^2 ), minimiser of Eq. 11.

    g_c, g_p: flattened gradients of the same parameters (any shape, same numel).

    Eq. 11 asks for the shortest vector alpha g_c + (1 - alpha) g_p on the segment between the two
    gradients. Its squared norm is a parabola in alpha with vertex at the unclipped value above;
    clipping to [0, 1] is exact because a parabola is monotone on each side of its vertex. When
    the gradients coincide the parabola is flat (every alpha is optimal) and the formula is 0/0:
    we return 0.5, the choice that treats both tasks alike.
    """
    g_c = g_c.detach().double().flatten()   # float64: the dot products of two ~1e7-long vectors
    g_p = g_p.detach().double().flatten()
    diff = g_c - g_p
    denom = diff.dot(diff)
    scale = g_c.dot(g_c) + g_p.dot(g_p)
    if denom <= 1e-12 * scale or denom == 0:
        return 0.5
    alpha = (g_p - g_c).dot(g_p) / denom
    return float(alpha.clamp(0.0, 1.0))


# ---------------------------------------------------------------------------------------------
# Eq. 13: the scale scheduler (Appendix D)
# ---------------------------------------------------------------------------------------------
def scale_schedule(step: int, total_steps: int, lam_max: float = 1.0, lam_min: float = 0.0,
                   a: float = 1.0, b: float = 1.0) -> float:
    """Eq. 13 (our own form -- the paper's exact formula is not recoverable, see EQUATIONS.md):

        lambda(t) = lam_min + (lam_max - lam_min) * [ 1/2 (1 + cos(pi * min(1, t / (a * t_max)))) ]^b

    Like cosine annealing, lambda starts at lam_max and decays to the floor lam_min. `a` in (0, 1]
    is the fraction of training over which it decays (then it stays at lam_min), `b` > 0 the
    sharpness (b > 1 drops faster early, b < 1 holds lam_max longer). The idea of Appendix D:
    weigh the projection task heavily while PWTP learns what a subspace is, then let recognition
    take over.
    """
    if not 0 < a <= 1:
        raise ValueError(f"scale_schedule: a must be in (0, 1], got {a}")
    if b <= 0:
        raise ValueError(f"scale_schedule: b must be > 0, got {b}")
    progress = min(1.0, step / max(1e-12, a * max(1, total_steps)))
    return lam_min + (lam_max - lam_min) * (0.5 * (1.0 + math.cos(math.pi * progress))) ** b


# ---------------------------------------------------------------------------------------------
# Gradient plumbing shared by every strategy
# ---------------------------------------------------------------------------------------------
def _grads(loss: torch.Tensor, params: List[torch.Tensor], retain_graph: bool = False):
    """d loss / d params as a list of tensors, zeros for parameters the loss does not reach."""
    if not params:
        return []
    gs = torch.autograd.grad(loss, params, retain_graph=retain_graph, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for g, p in zip(gs, params)]


def _flat(grads: List[torch.Tensor]) -> torch.Tensor:
    return torch.cat([g.reshape(-1) for g in grads]) if grads else torch.zeros(0)


def _unflat(flat: torch.Tensor, like: List[torch.Tensor]) -> List[torch.Tensor]:
    out, i = [], 0
    for p in like:
        out.append(flat[i:i + p.numel()].view_as(p))
        i += p.numel()
    return out


def average_across_ranks(grads: List[torch.Tensor]) -> List[torch.Tensor]:
    """Average a list of gradients over the ranks of torch.distributed (one all-reduce of one
    flat buffer); the identity when not running distributed."""
    if not grads or not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return grads
    flat = _flat(grads)
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= dist.get_world_size()
    return _unflat(flat, grads)


def _set_grads(params: List[torch.Tensor], grads: Optional[List[torch.Tensor]]):
    """Write .grad (overwriting: each strategy produces the step's whole gradient); None freezes."""
    for i, p in enumerate(params):
        p.grad = None if grads is None else grads[i].detach().to(p.dtype)


def _trainable(params: Iterable[torch.Tensor]) -> List[torch.Tensor]:
    return [p for p in params if p.requires_grad]


# ---------------------------------------------------------------------------------------------
# Algorithm 1: one MGDA step
# ---------------------------------------------------------------------------------------------
def mgda_backward(shared_params, recognition_params, loss_c: torch.Tensor, loss_p: torch.Tensor) -> float:
    """Algorithm 1 for one mini-batch: sets .grad of every parameter and returns alpha*.

    shared_params:      theta_p, the PWTP parameters (reached by both losses)
    recognition_params: theta_c, backbone + head (reached by L_c only)
    loss_c, loss_p:     the two losses of this mini-batch, graphs still alive.

    After this call an optimiser step applies
        theta_p <- theta_p - lr * (alpha* g_c + (1 - alpha*) g_p)     (Alg. 1, Eq. 12 for alpha*)
        theta_c <- theta_c - lr * grad_{theta_c} L_c
    """
    shared, recog = _trainable(shared_params), _trainable(recognition_params)
    # g_p first: L_p = ENoPR depends on theta_p only, so this backward runs through PWTP alone
    # (cheap), and the graph is kept for the L_c backward, which reuses PWTP's part of it.
    g_p = _grads(loss_p, shared, retain_graph=True)
    g_c_all = _grads(loss_c, shared + recog)
    # Average over ranks before alpha is derived from them: same alpha everywhere.
    g_p = average_across_ranks(g_p)
    g_c_all = average_across_ranks(g_c_all)
    g_c, g_rec = g_c_all[:len(shared)], g_c_all[len(shared):]
    alpha = min_norm_alpha(_flat(g_c), _flat(g_p))                      # Eq. 12
    _set_grads(shared, [alpha * gc + (1.0 - alpha) * gp for gc, gp in zip(g_c, g_p)])
    _set_grads(recog, g_rec)
    return alpha


# ---------------------------------------------------------------------------------------------
# The strategies of Table 5 behind one small interface
# ---------------------------------------------------------------------------------------------
STRATEGIES = ("mgda", "constant", "scheduler", "separate", "recognition")


class JointTraining:
    """Picks a joint-training strategy by name; `backward` is called once per mini-batch.

    jt = JointTraining("mgda")
    info = jt.backward(model, loss_c, loss_p, step)   # sets every .grad, returns {"alpha": ...}
    optimizer.step()

    `model` provides shared_parameters() (PWTP) and recognition_parameters() (backbone + head).
    For a model without PWTP (RGB input, rival representations) loss_p is None and only L_c is
    used, whatever the strategy. Gradients are averaged over ranks here, for every strategy.

    lam:            lambda of `constant`, lambda_max of `scheduler`
    lam_min, a, b:  the floor and shape of Eq. 13 (`scheduler`)
    total_steps:    t_max of Eq. 13
    separate_steps: how many of the first steps train PWTP alone on L_p (`separate`); afterwards
                    PWTP is frozen (its .grad is None, so neither SGD nor weight decay moves it).
    """

    def __init__(self, strategy: str = "mgda", lam: float = 1.0, total_steps: int = 1,
                 lam_min: float = 0.0, a: float = 1.0, b: float = 1.0, separate_steps: int = 0):
        if strategy not in STRATEGIES:
            raise ValueError(f"--joint must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
        if strategy == "separate" and separate_steps <= 0:
            raise ValueError("joint training 'separate' needs separate_steps > 0 (steps of PWTP-only training)")
        self.strategy, self.lam, self.total_steps = strategy, lam, total_steps
        self.lam_min, self.a, self.b, self.separate_steps = lam_min, a, b, separate_steps

    def _weighted(self, shared, recog, loss_c, loss_p, lam):
        # L = L_c + lambda L_p (Eq. 9 scalarised). L_p does not reach theta_c, so one backward of
        # the sum gives grad L_c on theta_c and grad L_c + lambda grad L_p on theta_p.
        loss = loss_c if lam == 0 else loss_c + lam * loss_p
        g = average_across_ranks(_grads(loss, shared + recog))
        _set_grads(shared + recog, g)

    def backward(self, model, loss_c: torch.Tensor, loss_p: Optional[torch.Tensor], step: int) -> dict:
        shared = _trainable(model.shared_parameters())
        recog = _trainable(model.recognition_parameters())
        if loss_p is None or not shared:               # no PWTP in this model: plain recognition
            self._weighted(shared, recog, loss_c, None, 0.0)
            return {}
        if self.strategy == "mgda":
            return {"alpha": mgda_backward(shared, recog, loss_c, loss_p)}
        if self.strategy == "constant":
            self._weighted(shared, recog, loss_c, loss_p, self.lam)
            return {"lam": self.lam}
        if self.strategy == "scheduler":
            lam = scale_schedule(step, self.total_steps, self.lam, self.lam_min, self.a, self.b)
            self._weighted(shared, recog, loss_c, loss_p, lam)
            return {"lam": lam}
        if self.strategy == "recognition":
            self._weighted(shared, recog, loss_c, loss_p, 0.0)
            return {"lam": 0.0}
        # separate: phase 1 fits PWTP to its own task, phase 2 trains the backbone on frozen DA.
        if step < self.separate_steps:
            _set_grads(shared, average_across_ranks(_grads(loss_p, shared)))
            _set_grads(recog, None)
            return {"phase": 1}
        _set_grads(recog, average_across_ranks(_grads(loss_c, recog)))
        _set_grads(shared, None)
        return {"phase": 2}
