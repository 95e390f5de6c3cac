"""Joint training of dynamic-appearance learning and action recognition: Sec. 3.4-3.5, Eq. 9-13,
Algorithm 1 and the strategies of Table 5. Read it beside EQUATIONS.md (Eq. 9-13, Algorithm 1).

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

Naming (the paper's symbols allow either): alpha weighs g_c, the *recognition* gradient:
    shared update = alpha g_c + (1 - alpha) g_p,     with g_c = grad_{theta_p} L_c, g_p = grad_{theta_p} L_p.
We use this convex combination as written in Algorithm 1, *not* multiplied by 2, so on the shared
parameters MGDA takes steps of at most the size of the larger gradient.

The file reads in the paper's order: Eq. 11-12 (`min_norm_alpha_gram`), Algorithm 1 (`algorithm1`,
the update itself, and `mgda_backward`, one mini-batch), Eq. 13 (`scale_schedule`). Then what is
NOT in the paper: Sener & Koltun's gradient normalisers and the bases space. Last, the plumbing
(`JointTraining`): gradient accumulation, the fp16 loss scale and the average over ranks WRAP
`algorithm1`; they never interleave with it.

Why plain Eq. 12 collapses here, and the two options against it (neither is in the paper; both
follow Sener & Koltun's reference code, which offers them as optional):
    Eq. 12 picks the point of the segment [g_p, g_c] closest to 0. When g_p is much shorter than
    g_c on theta_p, that point is (almost) g_p itself: alpha -> 0 and PWTP learns from L_p alone.
    Measured: alpha averaged 0.10 over training on the claims benchmark's scene-balanced set (10
    epochs at lr 0.01, TSM-R18 small, 5 seeds, 2-core CPU; `bench.py claims`, assets/claims.json),
    where ||g_c|| is ~1000x ||g_p|| on theta_p; that row stayed at chance. `normalize`
    (--mgda-normalize) divides each gradient by a per-task normaliser before Eq. 12 (alpha is still
    applied to the unnormalised gradients); `space` (--mgda-space) derives alpha from the gradients
    w.r.t. the per-pixel bases A instead of theta_p (the MGDA-UB analogue). See `normalizers` and
    `JointTraining`.
"""
import math
from typing import Iterable, List, Optional, Sequence

import torch
import torch.distributed as dist

from support.system import distributed     # the one rule for "are we running on several ranks"

STRATEGIES = ("mgda", "constant", "scheduler", "separate", "recognition")
NORMALIZERS = ("none", "l2", "loss", "loss+")
SPACES = ("params", "bases")


# ---------------------------------------------------------------------------------------------
# Eq. 11-12: the min-norm element of the segment between two gradients
# ---------------------------------------------------------------------------------------------
def min_norm_alpha_gram(gcc: float, gcp: float, gpp: float) -> float:
    """Eq. 12 from the three inner products gcc = g_c.g_c, gcp = g_c.g_p, gpp = g_p.g_p:

        alpha* = clip_[0,1]( (g_p - g_c)^T g_p / ||g_c - g_p||^2 ) = clip_[0,1]( (gpp - gcp) / (gcc - 2 gcp + gpp) )

    Eq. 11 asks for the shortest vector alpha g_c + (1 - alpha) g_p on the segment between the two
    gradients. Its squared norm is a parabola in alpha with vertex at the unclipped value above;
    clipping to [0, 1] is exact because a parabola is monotone on each side of its vertex. Only
    inner products are needed, which is what lets alpha come from any space whose inner products
    we can sum (parameters, bases, several micro-batches, several ranks).
    When the gradients coincide the parabola is flat (every alpha is optimal) and the formula is
    0/0: we return 0.5, the choice that treats both tasks alike (also when ||g_c - g_p||^2 is below
    1e-12 of ||g_c||^2 + ||g_p||^2, where float64 cancellation leaves no digit of it).
    Non-finite inputs (an fp16 overflow) give NaN: the step's gradients are then NaN too, which
    the GradScaler skips and train.py's finiteness check reports.
    """
    if not all(map(math.isfinite, (gcc, gcp, gpp))):
        return float("nan")
    denom = gcc - 2.0 * gcp + gpp                           # ||g_c - g_p||^2
    if not denom > 1e-12 * (gcc + gpp):
        return 0.5
    return min(1.0, max(0.0, (gpp - gcp) / denom))


def flatten(grads: Sequence[torch.Tensor]) -> torch.Tensor:
    """A list of gradients (one per parameter) as one vector: theta_p "flattened over all PWTP
    parameters", as Algorithm 1 treats it."""
    return torch.cat([g.reshape(-1) for g in grads]) if len(grads) else torch.zeros(0)


def gram(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """(3,) float64 [u.u, u.v, v.v] of two same-shaped tensors (products in their dtype, sums in
    float64: a bases tensor has ~1e7 entries, and a float64 copy of it would double the memory)."""
    return torch.stack([torch.sum(u * u, dtype=torch.float64), torch.sum(u * v, dtype=torch.float64),
                        torch.sum(v * v, dtype=torch.float64)])


def min_norm_alpha(g_c: torch.Tensor, g_p: torch.Tensor) -> float:
    """Eq. 12 for two gradients g_c, g_p of the same parameters (any shape, same numel)."""
    return min_norm_alpha_gram(*gram(g_c.detach().flatten(), g_p.detach().flatten()).tolist())


# ---------------------------------------------------------------------------------------------
# Algorithm 1: one MGDA update of the gradients
# ---------------------------------------------------------------------------------------------
def algorithm1(theta_p, g_c, g_p, theta_c=(), g_rec=(), normalize: str = "none",
               loss_c: float = 1.0, loss_p: float = 1.0, inner=None) -> float:
    """Algorithm 1 given the gradients of one mini-batch: alpha* by Eq. 12, then every .grad.

    theta_p: the PWTP parameters; g_c, g_p: grad L_c and grad L_p on them (lists, one per parameter).
    theta_c: the backbone + head parameters; g_rec: grad L_c on them.
    normalize: "none" (default) is the paper; "l2", "loss", "loss+" divide g_c, g_p by Sener &
      Koltun's normalisers before Eq. 12 (NOT in the paper, see `normalizers`); loss_c, loss_p are
      the loss values those need (ignored by "none" and "l2").
    inner: (g_c.g_c, g_c.g_p, g_p.g_p) when Eq. 12's inner products come from another space (the
      bases space, NOT in the paper); None (default): from g_c, g_p themselves, as in the paper.
    Sets p.grad of every parameter (an optimiser step then applies Algorithm 1's update) and
    returns alpha*. A common factor on all gradients (the fp16 loss scale) leaves alpha* unchanged.
    """
    if not len(theta_p) == len(g_c) == len(g_p) or len(theta_c) != len(g_rec):
        raise ValueError(f"mgda.algorithm1: one gradient per parameter expected, got {len(theta_p)} shared "
                         f"parameters, {len(g_c)} g_c, {len(g_p)} g_p, {len(theta_c)} recognition, {len(g_rec)} g_rec")
    if inner is None:
        inner = gram(flatten(g_c).detach(), flatten(g_p).detach()).tolist()
    gcc, gcp, gpp = inner
    n_c, n_p = normalizers(normalize, inner, loss_c, loss_p)        # (1, 1) for the paper's "none"
    alpha = min_norm_alpha_gram(gcc / (n_c * n_c), gcp / (n_c * n_p), gpp / (n_p * n_p))   # Eq. 12
    for p, gc, gp in zip(theta_p, g_c, g_p):          # theta_p <- theta_p - lr (alpha g_c + (1 - alpha) g_p)
        p.grad = (alpha * gc + (1.0 - alpha) * gp).detach().to(p.dtype)
    for p, g in zip(theta_c, g_rec):                  # theta_c <- theta_c - lr grad L_c
        p.grad = g.detach().to(p.dtype)
    return alpha


def mgda_backward(shared_params, recognition_params, loss_c: torch.Tensor, loss_p: torch.Tensor) -> float:
    """Algorithm 1 for one mini-batch on explicit parameter lists: the two backward passes, then
    `algorithm1` (the paper's plain Eq. 12). Sets .grad of every trainable parameter, returns alpha*.

    L_p depends on theta_p only, so its backward pass runs through PWTP alone; the graph is kept
    for L_c's pass, which reuses PWTP's part of it.
    """
    theta_p, theta_c = trainable(shared_params), trainable(recognition_params)
    g_p, _ = gradients(loss_p, theta_p, retain_graph=True)          # grad_{theta_p} L_p
    g, _ = gradients(loss_c, theta_p + theta_c)                     # grad L_c on theta_p and theta_c
    return algorithm1(theta_p, g[:len(theta_p)], g_p, theta_c, g[len(theta_p):])


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


# =============================================================================================
# NOT in the paper: gradient normalisation before Eq. 12 (Sener & Koltun's optional normalisers)
# =============================================================================================
def normalizers(normalize: str, inner, loss_c: float, loss_p: float):
    """(n_c, n_p): Eq. 12 is then solved for g_c / n_c and g_p / n_p.

    inner = (g_c.g_c, g_c.g_p, g_p.g_p) in the space alpha is derived in; loss_c, loss_p the
    (unscaled, batch-mean) loss values.
        none   n = 1            plain Eq. 12, the paper (the collapse described at the top of this file)
        l2     n = ||g||        both vectors have norm 1, so with two tasks the min-norm point of the
                                segment is always its midpoint: alpha = 0.5, whatever the gradients
                                (by symmetry; algebraically (1 - cos) / (2 - 2 cos)). MGDA-l2 with two
                                tasks is thus *not adaptive*: it is L_c + L_p at half the step on theta_p.
        loss   n = L            g / L = grad log L: each task counts by its *relative* rate of
                                decrease. Norms survive (||g_c||/L_c vs ||g_p||/L_p), so alpha still
                                adapts, but a small L_p (ENoPR ~0.1-0.7 vs cross-entropy ~1-5)
                                lengthens g_p's vector and moves alpha away from 0.
        loss+  n = L ||g||      vectors of norm 1/L_c and 1/L_p: direction only, then the task with the
                                LARGER loss gets the shorter vector, hence the larger weight. For
                                orthogonal gradients alpha = L_c^2 / (L_c^2 + L_p^2).
    Guards (our choice): a zero normaliser (zero gradient or zero loss) is replaced by 1, so a zero
    gradient stays zero and Eq. 12 picks it (that task is already stationary) instead of 0/0;
    a negative loss would flip its gradient, so it is an error.
    """
    if normalize not in NORMALIZERS:
        raise ValueError(f"--mgda-normalize must be one of {', '.join(NORMALIZERS)}, got {normalize!r}")
    if normalize in ("loss", "loss+") and (loss_c < 0 or loss_p < 0):
        raise ValueError(f"--mgda-normalize {normalize}: the losses must be >= 0, got L_c={loss_c}, L_p={loss_p}")
    gcc, _, gpp = inner
    n_c = {"none": 1.0, "l2": math.sqrt(gcc), "loss": loss_c, "loss+": loss_c * math.sqrt(gcc)}[normalize]
    n_p = {"none": 1.0, "l2": math.sqrt(gpp), "loss": loss_p, "loss+": loss_p * math.sqrt(gpp)}[normalize]
    return (n_c if n_c != 0 else 1.0), (n_p if n_p != 0 else 1.0)


def normalized_alpha(inner, normalize: str = "none", loss_c: float = 1.0, loss_p: float = 1.0) -> float:
    """Eq. 12 on g_c / n_c and g_p / n_p, from the inner products of g_c, g_p (see `normalizers`);
    the alpha `algorithm1` computes, without writing any gradient."""
    gcc, gcp, gpp = inner
    n_c, n_p = normalizers(normalize, inner, loss_c, loss_p)
    return min_norm_alpha_gram(gcc / (n_c * n_c), gcp / (n_c * n_p), gpp / (n_p * n_p))


# NOT in the paper either: the bases space (--mgda-space bases, the MGDA-UB analogue). Eq. 12's inner
# products are taken between h_c = dL_c/dA and h_p = dL_p/dA, the gradients w.r.t. the per-pixel
# bases A (PWTPOutput.A, (N, H, W, T, D)), the one tensor through which theta_p reaches both losses.
# The theta_p update stays alpha g_c + (1 - alpha) g_p: the alpha-mixed bases gradient backpropagated
# into theta_p IS that (chain rule, linear in the mix). JointTraining passes algorithm1 the bases'
# inner products (`inner=`) and nothing else changes.


# =============================================================================================
# Plumbing: gradients, statistics, ranks, and the strategies of Table 5 behind one interface
# =============================================================================================
def gradient_stats(inner) -> dict:
    """The log's view of the two parameter-space gradients: their norms and the cosine between
    them (NaN when one of them is zero: no angle)."""
    gcc, gcp, gpp = inner
    norms = math.sqrt(gcc) * math.sqrt(gpp)
    return {"gc_norm": math.sqrt(gcc), "gp_norm": math.sqrt(gpp),
            "cos": gcp / norms if norms > 0 else float("nan")}


def gradients(loss: torch.Tensor, params: List[torch.Tensor], retain_graph: bool = False,
              bases: Optional[torch.Tensor] = None):
    """(d loss / d params with zeros where the loss does not reach a parameter, d loss / d bases
    or None). One backward pass gives both: autograd accepts the non-leaf A beside the leaves."""
    inputs = params + ([bases] if bases is not None else [])
    if not inputs:
        return [], None
    gs = list(torch.autograd.grad(loss, inputs, retain_graph=retain_graph, allow_unused=True))
    h = gs.pop() if bases is not None else None
    if bases is not None and h is None:
        raise ValueError("mgda.py (--mgda-space bases): a loss does not depend on the bases tensor given; "
                         "pass out.pwtp.A of the same forward pass (the node every PWTP output is computed from)")
    return [torch.zeros_like(p) if g is None else g for g, p in zip(gs, params)], h


def trainable(params: Iterable[torch.Tensor]) -> List[torch.Tensor]:
    return [p for p in params if p.requires_grad]


def unflatten(flat: torch.Tensor, like: List[torch.Tensor]) -> List[torch.Tensor]:
    """`flatten`'s inverse: views of `flat` shaped like the tensors of `like`."""
    out, i = [], 0
    for p in like:
        out.append(flat[i:i + p.numel()].view_as(p))
        i += p.numel()
    return out


def average_across_ranks(grads: List[torch.Tensor]) -> List[torch.Tensor]:
    """Average a list of gradients over the ranks of torch.distributed (one all-reduce of one
    flat buffer); the identity when not running distributed."""
    if not grads or not distributed():
        return grads
    flat = flatten(grads)
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= dist.get_world_size()
    return unflatten(flat, grads)


def set_grads(params: List[torch.Tensor], grads: Optional[List[torch.Tensor]]):
    """Write .grad (overwriting: each strategy produces the step's whole gradient); None freezes."""
    for i, p in enumerate(params):
        p.grad = None if grads is None else grads[i].detach().to(p.dtype)


def _add(acc: dict, key: str, value):
    """acc[key] += value (lists of tensors elementwise), creating it on the first micro-batch."""
    if key not in acc:
        acc[key] = [v.detach() for v in value] if isinstance(value, list) else value.detach()
    elif isinstance(value, list):
        for a, v in zip(acc[key], value):
            a.add_(v.detach())
    else:
        acc[key] = acc[key] + value.detach()


GRAD_KEYS = ("g_c", "g_p", "g_rec", "g_mix")   # the accumulated gradient lists (see JointTraining._plan)


def _reduce_over_ranks(acc: dict):
    """Rank averages of everything accumulated, in two all-reduces (gradients; float64 scalars).
    Gradients and loss values are averaged: the global loss is the mean of the ranks' losses.
    The bases inner products are SUMMED and divided by world^2: the bases of different ranks' clips
    are different coordinates, and the global loss's bases gradient there is h_rank / world."""
    if not distributed():
        return
    world = dist.get_world_size()
    keys = [k for k in GRAD_KEYS if k in acc]
    avg = average_across_ranks([g for k in keys for g in acc[k]])
    for k in keys:
        acc[k], avg = avg[:len(acc[k])], avg[len(acc[k]):]
    names = [k for k in ("loss_c", "loss_p", "gram_bases") if k in acc]
    scalars = torch.cat([acc[k].reshape(-1) for k in names])
    dist.all_reduce(scalars, op=dist.ReduceOp.SUM)
    for k in names:
        n = acc[k].numel()
        acc[k], scalars = scalars[:n].reshape(acc[k].shape) / (world ** 2 if k == "gram_bases" else world), scalars[n:]


class JointTraining:
    """Picks a joint-training strategy by name and writes the step's gradients.

    jt = JointTraining("mgda", normalize="none", space="params")
    info = jt.backward(model, loss_c, loss_p, step, bases=out.pwtp.A)   # K = 1
    # or, with K micro-batches:  jt.accumulate(model, loss_c / K, loss_p / K, bases=out.pwtp.A) x K,
    #                            info = jt.step(model, step)
    optimizer.step()

    For `mgda`, step() sums the micro-batches' gradients, averages them over the ranks of
    torch.distributed and then calls `algorithm1` ONCE on the result: accumulation, rank averaging
    and the fp16 loss scale wrap Algorithm 1, they do not change it. Averaging before alpha is what
    keeps alpha identical on every rank: alpha is a non-linear function of the gradients, so
    averaging per-rank alphas would give another (rank-dependent) answer. This is also why train.py
    does not wrap the model in DistributedDataParallel: DDP averages the one gradient of one
    backward pass, while MGDA needs two separate gradients of the shared parameters.

    `model` provides shared_parameters() (PWTP) and recognition_parameters() (backbone + head).
    For a model without PWTP (RGB input, rival representations) loss_p is None and only L_c is
    used, whatever the strategy; info is then {}.

    lam:            lambda of `constant`, lambda_max of `scheduler`
    lam_min, a, b:  the floor and shape of Eq. 13 (`scheduler`)
    total_steps:    t_max of Eq. 13
    separate_steps: how many of the first steps train PWTP alone on L_p (`separate`); afterwards
                    PWTP is frozen (its .grad is None, so neither SGD nor weight decay moves it).
    normalize:      --mgda-normalize, one of NORMALIZERS (see `normalizers`); `mgda` only.
    space:          --mgda-space, where alpha's inner products are taken (`mgda` only): "params"
                    (Algorithm 1) or "bases" (see the note above `gradient_stats`); "bases" needs
                    bases=out.pwtp.A in accumulate/backward.
    stats:          True (default): every step with both losses reports ||g_c||, ||g_p|| and
                    cos(g_c, g_p) on theta_p (unnormalised, divided by the loss scale). For `mgda`
                    they are free; for the weighted strategies and `separate` they need g_c and g_p
                    separately, i.e. one more backward pass through PWTP (or, in separate's phases,
                    the pass that phase would skip). False: no stats, no extra pass.

    info (returned by step/backward): "alpha" (mgda), "lam" (constant/scheduler/recognition),
    "phase" (separate: 1 or 2), and with stats "gc_norm", "gp_norm", "cos".
    """

    def __init__(self, strategy: str = "mgda", lam: float = 1.0, total_steps: int = 1,
                 lam_min: float = 0.0, a: float = 1.0, b: float = 1.0, separate_steps: int = 0,
                 normalize: str = "none", space: str = "params", stats: bool = True):
        if strategy not in STRATEGIES:
            raise ValueError(f"--joint must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
        if strategy == "separate" and separate_steps <= 0:
            raise ValueError("joint training 'separate' needs separate_steps > 0 (steps of PWTP-only training)")
        if normalize not in NORMALIZERS:
            raise ValueError(f"--mgda-normalize must be one of {', '.join(NORMALIZERS)}, got {normalize!r}")
        if space not in SPACES:
            raise ValueError(f"--mgda-space must be one of {', '.join(SPACES)}, got {space!r}")
        self.strategy, self.lam, self.total_steps = strategy, lam, total_steps
        self.lam_min, self.a, self.b, self.separate_steps = lam_min, a, b, separate_steps
        self.normalize, self.space, self.stats = normalize, space, bool(stats)
        self._acc = None                     # what the micro-batches of the current step summed

    def pwtp_frozen(self, step: int) -> bool:
        """`separate`'s phase 2: PWTP is fixed, its BatchNorm statistics included (eval mode), so the
        backbone trains on exactly the DA it is tested on. Left in train mode, the frozen PWTP's
        BatchNorm would keep drifting with each batch."""
        return self.strategy == "separate" and step >= self.separate_steps

    def lam_at(self, step: int) -> float:
        """lambda of the weighted strategies at this step (Eq. 9 scalarised; Eq. 13 for scheduler)."""
        if self.strategy == "scheduler":
            return scale_schedule(step, self.total_steps, self.lam, self.lam_min, self.a, self.b)
        return self.lam if self.strategy == "constant" else 0.0

    def backward(self, model, loss_c: torch.Tensor, loss_p: Optional[torch.Tensor], step: int,
                 bases: Optional[torch.Tensor] = None, scale: float = 1.0) -> dict:
        """One mini-batch, one step: accumulate + step with K = 1. Sets every .grad, returns info."""
        self.accumulate(model, loss_c, loss_p, bases=bases, scale=scale, step=step)
        return self.step(model, step)

    # --- what each micro-batch computes ------------------------------------------------------
    def accumulate(self, model, loss_c: torch.Tensor, loss_p: Optional[torch.Tensor],
                   bases: Optional[torch.Tensor] = None, scale: float = 1.0, step: Optional[int] = None):
        """Add one micro-batch's gradients (losses already divided by K; graphs are freed).

        bases: out.pwtp.A of this micro-batch (needed for mgda with space="bases", else ignored).
        scale: the common factor s both losses were multiplied by (fp16 GradScaler, scaler.get_scale()).
               The gradients stay scaled (the scaler unscales .grad later); logged norms are divided
               by s and the `loss` normalisers use L = loss / s. alpha does not depend on s.
        step:  optional; when given (backward() gives it), `separate` computes only its phase's
               gradient and, with stats=False, `scheduler` needs a single backward pass (lambda
               known). step() must then be called with the same step.
        """
        shared, recog = trainable(model.shared_parameters()), trainable(model.recognition_parameters())
        has_p = loss_p is not None and bool(shared)
        acc = self._start(has_p, float(scale), step)
        use_bases = has_p and self.strategy == "mgda" and self.space == "bases"
        if use_bases and (bases is None or not bases.requires_grad):
            raise ValueError("--mgda-space bases needs the per-pixel bases of a forward pass run with gradients: "
                             "pass bases=out.pwtp.A to JointTraining.accumulate/backward"
                             + ("" if bases is None else " (the tensor given does not require grad)"))
        # Loss values for the `loss` normalisers: sums of loss / K over the micro-batches = means.
        _add(acc, "loss_c", loss_c.detach().double() / acc["scale"])
        if has_p:
            _add(acc, "loss_p", loss_p.detach().double() / acc["scale"])
        need = self._plan(has_p, step)
        if "mix" in need:
            # L = L_c + lambda L_p (Eq. 9 scalarised). L_p does not reach theta_c, so one backward of
            # the sum gives grad L_c on theta_c and grad L_c + lambda grad L_p on theta_p.
            acc["lam"] = lam = self.lam_at(step) if has_p else 0.0
            _add(acc, "g_mix", gradients(loss_c if lam == 0 else loss_c + lam * loss_p, shared + recog)[0])
            return
        h_p = h_c = None
        if "p" in need:
            # L_p = ENoPR depends on theta_p only: this backward runs through PWTP alone (cheap), and
            # the graph is kept for the L_c backward, which reuses PWTP's part of it.
            g_p, h_p = gradients(loss_p, shared, retain_graph="c" in need or "rec" in need,
                                 bases=bases if use_bases else None)
            _add(acc, "g_p", g_p)
        if "c" in need or "rec" in need:
            targets = (shared if "c" in need else []) + (recog if "rec" in need else [])
            g, h_c = gradients(loss_c, targets, bases=bases if use_bases else None)
            if "c" in need:
                _add(acc, "g_c", g[:len(shared)])
            if "rec" in need:
                _add(acc, "g_rec", g[len(shared) if "c" in need else 0:])
        if use_bases:
            # The bases of different clips are different coordinates: inner products add up.
            _add(acc, "gram_bases", gram(h_c, h_p))                 # (3,) h_c.h_c, h_c.h_p, h_p.h_p

    def _plan(self, has_p: bool, step: Optional[int]) -> set:
        """The gradients this micro-batch must produce: "c" = grad L_c on theta_p, "p" = grad L_p on
        theta_p, "rec" = grad L_c on theta_c, "mix" = grad (L_c + lambda L_p) on both (one pass)."""
        if not has_p:
            return {"mix"}                                      # lambda = 0: plain recognition
        if self.strategy == "mgda" or self.stats:
            return {"c", "p", "rec"}
        if self.strategy == "separate":
            if step is None:                                    # phase unknown: what either needs
                return {"p", "rec"}
            return {"p"} if step < self.separate_steps else {"rec"}
        if self.strategy == "scheduler" and step is None:       # lambda unknown until step()
            return {"c", "p", "rec"}
        return {"mix"}

    def _start(self, has_p: bool, scale: float, step: Optional[int]) -> dict:
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"mgda.py: the loss scale must be a finite number > 0, got {scale}")
        if self._acc is None:
            self._acc = {"has_p": has_p, "scale": scale, "step": step}
        acc = self._acc
        if (acc["has_p"], acc["scale"], acc["step"]) != (has_p, scale, step):
            raise ValueError("mgda.py: the micro-batches of one step must agree on loss_p being given, "
                             f"the loss scale and step; got {(has_p, scale, step)} after "
                             f"{(acc['has_p'], acc['scale'], acc['step'])} (call step() between steps)")
        return acc

    # --- the step --------------------------------------------------------------------------
    def step(self, model, step: int) -> dict:
        """Average what was accumulated over ranks, then write every .grad: for `mgda` by ONE call
        of `algorithm1` on the summed, rank-averaged gradients. Returns info."""
        shared, recog = trainable(model.shared_parameters()), trainable(model.recognition_parameters())
        acc, self._acc = self._acc, None
        if acc is None:
            raise RuntimeError("mgda.py: JointTraining.step() without accumulate() since the last step")
        if acc["step"] is not None and acc["step"] != step:
            raise ValueError(f"mgda.py: accumulate() was given step={acc['step']} but step() step={step}")
        _reduce_over_ranks(acc)                                      # before alpha: same on every rank
        if "g_mix" in acc:
            set_grads(shared + recog, acc["g_mix"])
            return {"lam": acc["lam"]} if acc["has_p"] else {}
        info = {}
        if self.stats and "g_c" in acc and "g_p" in acc:             # logged unscaled (divided by s^2)
            s = acc["scale"]
            info.update(gradient_stats((gram(flatten(acc["g_c"]), flatten(acc["g_p"])) / (s * s)).tolist()))
        if self.strategy == "mgda":                                  # Algorithm 1, once per step
            inner = acc["gram_bases"].tolist() if self.space == "bases" else None
            info["alpha"] = algorithm1(shared, acc["g_c"], acc["g_p"], recog, acc["g_rec"], self.normalize,
                                       acc["loss_c"].item(), acc["loss_p"].item(), inner=inner)
        elif self.strategy == "separate":
            # Phase 1 fits PWTP to its own task, phase 2 trains the backbone on frozen DA.
            info["phase"] = phase = 1 if step < self.separate_steps else 2
            set_grads(shared, acc["g_p"] if phase == 1 else None)
            set_grads(recog, None if phase == 1 else acc["g_rec"])
        else:
            info["lam"] = lam = self.lam_at(step)                    # L_c + lambda L_p, Eq. 9 / 13
            set_grads(shared, [gc + lam * gp for gc, gp in zip(acc["g_c"], acc["g_p"])])
            set_grads(recog, acc["g_rec"])
        return info
