"""Joint training of DA learning and action recognition: Sec. 3.4-3.5, Eq. 9-13, Algorithm 1 and
the strategies of Table 5. Read it beside EQUATIONS.md.

Two losses pull on the PWTP parameters theta_p: L_c(theta_p, theta_c), the recognition loss, and
L_p(theta_p), ENoPR (Eq. 7-8). The backbone and head, theta_c, only see L_c. Eq. 9 is the problem
min (L_c, L_p); Table 5's strategies turn it into one gradient per step: recognition (lambda = 0),
constant (L_c + lambda L_p), scheduler (lambda(t) of Eq. 13), separate (PWTP on L_p first, then
frozen) and mgda (Algorithm 1: the min-norm convex combination of the two gradients, Eq. 11-12, a
common descent direction whenever one exists). alpha weighs g_c: the shared update is
alpha g_c + (1 - alpha) g_p, with g_c = grad_{theta_p} L_c and g_p = grad_{theta_p} L_p.

The file reads in the paper's order: Eq. 11-12 (`min_norm_alpha`), Algorithm 1 (`algorithm1`),
Eq. 13 (`scale_schedule`), then `JointTraining`, which runs a strategy once per optimiser step.
NOT in the paper, and marked where it stands: Sener & Koltun's normalisers (`normalizers`), the
bases space, and the plumbing around Algorithm 1 (micro-batch sums, rank averages, the fp16 loss
scale: support/grads.py). Why the default normaliser is not plain Eq. 12: docs/CLAIMS.md.
"""
import math

import torch

from support.grads import add_to, gradients, reduce_over_ranks   # sums over micro-batches and ranks

STRATEGIES = ("mgda", "constant", "scheduler", "separate", "recognition")
NORMALIZERS = ("none", "l2", "loss", "loss+")
SPACES = ("params", "bases")


# ---------------------------------------------------------------------------------------------
# Eq. 11-12: the min-norm element of the segment between two gradients
# ---------------------------------------------------------------------------------------------
def inner_products(us, vs) -> torch.Tensor:
    """(3,) float64 [u.u, u.v, v.v] of two gradients, each a list of tensors (theta_p "flattened",
    as Algorithm 1 treats it); products in their dtype, sums in float64."""
    dot = lambda a, b: sum(torch.sum(x.detach() * y.detach(), dtype=torch.float64) for x, y in zip(a, b))
    return torch.stack([dot(us, us), dot(us, vs), dot(vs, vs)]).reshape(3)


# Eq. 11 asks for the shortest vector alpha g_c + (1 - alpha) g_p on the segment between the two
# gradients. Its squared norm is a parabola in alpha whose vertex is Eq. 12's unclipped value;
# clipping to [0, 1] is exact because a parabola is monotone on each side of its vertex. Only inner
# products are needed, which is what lets alpha come from any space whose inner products we can sum
# (parameters, bases, several micro-batches, several ranks).
def min_norm_alpha(gcc: float, gcp: float, gpp: float) -> float:
    """Eq. 12 from gcc = g_c.g_c, gcp = g_c.g_p, gpp = g_p.g_p:
        alpha* = clip_[0,1]( (gpp - gcp) / (gcc - 2 gcp + gpp) ) = clip_[0,1]( (g_p - g_c)^T g_p / ||g_c - g_p||^2 )
    Equal gradients make the parabola flat (0/0, or below float64's digits): 0.5, both tasks
    alike. Non-finite inputs (an fp16 overflow) give NaN; the GradScaler then skips the step."""
    if not all(map(math.isfinite, (gcc, gcp, gpp))):
        return float("nan")
    denom = gcc - 2.0 * gcp + gpp                           # ||g_c - g_p||^2
    if not denom > 1e-12 * (gcc + gpp):
        return 0.5
    return min(1.0, max(0.0, (gpp - gcp) / denom))


# ---------------------------------------------------------------------------------------------
# Algorithm 1: one MGDA update of the gradients
# ---------------------------------------------------------------------------------------------
def algorithm1(theta_p, g_c, g_p, theta_c=(), g_rec=(), normalize="none", losses=(1.0, 1.0), inner=None):
    """Algorithm 1 given one step's gradients: alpha* by Eq. 12, then every .grad; returns alpha*.

    theta_p, g_c, g_p: PWTP's parameters, grad L_c and grad L_p on them; theta_c, g_rec: the backbone's.
    normalize, losses: NOT in the paper (see `normalizers`); "none" is the paper.
    inner: (g_c.g_c, g_c.g_p, g_p.g_p) from another space (the bases space, NOT in the paper);
      None: from g_c, g_p themselves, as in the paper.
    A common factor on all gradients (the fp16 loss scale) leaves alpha* unchanged."""
    if not len(theta_p) == len(g_c) == len(g_p) or len(theta_c) != len(g_rec):
        raise ValueError(f"mgda.algorithm1: one gradient per parameter expected, got {len(theta_p)} shared "
                         f"parameters, {len(g_c)} g_c, {len(g_p)} g_p, {len(theta_c)} recognition, {len(g_rec)} g_rec")
    gcc, gcp, gpp = inner_products(g_c, g_p).tolist() if inner is None else inner
    n_c, n_p = (1.0, 1.0) if normalize == "none" else normalizers(normalize, (gcc, gpp), *losses)
    alpha = min_norm_alpha(gcc / (n_c * n_c), gcp / (n_c * n_p), gpp / (n_p * n_p))     # Eq. 12
    for p, gc, gp in zip(theta_p, g_c, g_p):      # theta_p <- theta_p - lr (alpha g_c + (1 - alpha) g_p)
        p.grad = (alpha * gc + (1.0 - alpha) * gp).detach().to(p.dtype)
    for p, g in zip(theta_c, g_rec):              # theta_c <- theta_c - lr grad L_c
        p.grad = g.detach().to(p.dtype)
    return alpha


# ---------------------------------------------------------------------------------------------
# Eq. 13: the scale scheduler (Appendix D)
# ---------------------------------------------------------------------------------------------
def scale_schedule(step, total_steps, lam_max=1.0, lam_min=0.0, fraction=1.0, sharpness=1.0) -> float:
    """Eq. 13 in our own form (the paper's exact formula is not recoverable, see EQUATIONS.md):
        lambda(t) = lam_min + (lam_max - lam_min) [ 1/2 (1 + cos(pi min(1, t / (fraction t_max)))) ]^sharpness
    lambda starts at lam_max and decays to lam_min over the first `fraction` of training (the
    flag --sched-a), `sharpness` (--sched-b) > 1 dropping faster early. Appendix D's idea: weigh
    the projection task while PWTP learns what a subspace is, then let recognition take over."""
    if not 0 < fraction <= 1:
        raise ValueError(f"scale_schedule: --sched-a (the decay fraction) must be in (0, 1], got {fraction}")
    if sharpness <= 0:
        raise ValueError(f"scale_schedule: --sched-b (the sharpness) must be > 0, got {sharpness}")
    progress = min(1.0, step / max(1e-12, fraction * max(1, total_steps)))
    return lam_min + (lam_max - lam_min) * (0.5 * (1.0 + math.cos(math.pi * progress))) ** sharpness


# =============================================================================================
# NOT in the paper: Sener & Koltun's gradient normalisers, applied before Eq. 12
# =============================================================================================
#     none   n = 1        the paper's plain Eq. 12
#     l2     n = ||g||    two unit vectors: the min-norm point is always the midpoint, alpha = 0.5
#                         whatever the gradients (MGDA-l2 with two tasks is L_c + L_p at half step)
#     loss   n = L        g / L = grad log L: each task counts by its relative rate of decrease
#     loss+  n = L ||g||  direction only, the task with the larger loss gets the larger weight; for
#                         orthogonal gradients alpha = L_c^2 / (L_c^2 + L_p^2)
# Guards (ours): a zero normaliser becomes 1 (a zero gradient stays zero and Eq. 12 picks it).
def normalizers(normalize, squared_norms, loss_c, loss_p):
    """(n_c, n_p): Eq. 12 is solved for g_c / n_c, g_p / n_p; squared_norms = (g_c.g_c, g_p.g_p)."""
    if normalize not in NORMALIZERS:
        raise ValueError(f"--mgda-normalize must be one of {', '.join(NORMALIZERS)}, got {normalize!r}")
    if normalize in ("loss", "loss+") and (loss_c < 0 or loss_p < 0):
        raise ValueError(f"--mgda-normalize {normalize}: the losses must be >= 0, got L_c={loss_c}, L_p={loss_p}")
    norm_c, norm_p = (math.sqrt(g) for g in squared_norms)
    n_c = {"none": 1.0, "l2": norm_c, "loss": loss_c, "loss+": loss_c * norm_c}[normalize]
    n_p = {"none": 1.0, "l2": norm_p, "loss": loss_p, "loss+": loss_p * norm_p}[normalize]
    return (n_c if n_c != 0 else 1.0), (n_p if n_p != 0 else 1.0)


# =============================================================================================
# The strategies of Table 5, run once per optimiser step
# =============================================================================================
class JointTraining:
    """Writes each step's gradients by one strategy of Table 5.
        jt = JointTraining(model.shared_parameters(), model.recognition_parameters(), "mgda")
        for each of K micro-batches:  jt.accumulate(loss_c / K, loss_p / K, step, bases=out.pwtp.A)
        info = jt.step(step)          # every .grad written; then optimizer.step()

    Micro-batches only add up gradients; `step` averages the sums over ranks and then, for mgda,
    calls `algorithm1` ONCE: accumulation, ranks and the fp16 loss scale wrap Algorithm 1, and alpha
    is the same on every rank. (DistributedDataParallel averages the one gradient of one backward
    pass; MGDA needs g_c and g_p apart, which is why train.py does without it.)

    lam: lambda of constant, lambda_max of scheduler (Eq. 13 with lam_min, fraction, sharpness);
    separate_steps: steps of PWTP alone on L_p, after which it is frozen; normalize, space: NOT in
    the paper. Without PWTP (RGB, the rival inputs) loss_p is None and only L_c is used.
    step() returns loss_c, loss_p (rank means), alpha / lam / phase, and for a logged step
    (stats=True) ||g_c||, ||g_p|| and cos(g_c, g_p) on theta_p.
    """

    def __init__(self, theta_p, theta_c, strategy="mgda", lam=1.0, total_steps=1, lam_min=0.0, fraction=1.0,
                 sharpness=1.0, separate_steps=0, normalize="none", space="params"):
        for value, choices, flag in ((strategy, STRATEGIES, "--joint"), (normalize, NORMALIZERS, "--mgda-normalize"),
                                     (space, SPACES, "--mgda-space")):
            if value not in choices:
                raise ValueError(f"{flag} must be one of {', '.join(choices)}, got {value!r}")
        if strategy == "separate" and separate_steps <= 0:
            raise ValueError("joint training 'separate' needs separate_steps > 0 (steps of PWTP-only training)")
        self.theta_p = [p for p in theta_p if p.requires_grad]      # PWTP
        self.theta_c = [p for p in theta_c if p.requires_grad]      # backbone + head (frozen BNs left out)
        self.strategy, self.lam, self.total_steps = strategy, lam, total_steps
        self.lam_min, self.fraction, self.sharpness = lam_min, fraction, sharpness
        self.separate_steps, self.normalize, self.space = separate_steps, normalize, space
        self.sums = {}                   # what this step's micro-batches added up

    def lam_at(self, step):
        """lambda of the weighted strategies (Eq. 9 scalarised; Eq. 13 for scheduler)."""
        if self.strategy == "scheduler":
            return scale_schedule(step, self.total_steps, self.lam, self.lam_min, self.fraction, self.sharpness)
        return self.lam if self.strategy == "constant" else 0.0

    def pwtp_frozen(self, step):
        """separate's phase 2: PWTP fixed, BatchNorm statistics too (eval mode): the backbone
        trains on exactly the DA it is tested on."""
        return self.strategy == "separate" and step >= self.separate_steps

    def needs(self, has_p, step, stats):
        """What a micro-batch computes: "c"/"p" = grad L_c/L_p on theta_p, "rec" = grad L_c on
        theta_c, "mix" = grad (L_c + lambda L_p) on both. stats adds what the logged norms need;
        the applied gradients are computed alike either way, so logging never changes training."""
        if not has_p:
            return {"mix"}
        if self.strategy == "mgda":
            return {"c", "p", "rec"}
        if self.strategy == "separate":
            return ({"p"} if step < self.separate_steps else {"rec"}) | ({"c", "p"} if stats else set())
        return {"mix", "p"} if stats else {"mix"}

    def accumulate(self, loss_c, loss_p, step, bases=None, scale=1.0, stats=False):
        """Add one micro-batch's gradients (losses divided by K). bases: out.pwtp.A (--mgda-space
        bases); scale: the fp16 loss scale both losses carry (the GradScaler unscales .grad)."""
        has_p = loss_p is not None and bool(self.theta_p)
        use_bases = has_p and self.strategy == "mgda" and self.space == "bases"
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"mgda.py: the loss scale must be a finite number > 0, got {scale}")
        if use_bases and (bases is None or not bases.requires_grad):
            raise ValueError("--mgda-space bases needs the per-pixel bases of a forward pass run with gradients: "
                             "pass bases=out.pwtp.A to JointTraining.accumulate")
        if self.sums.setdefault("meta", (has_p, scale, step, stats)) != (has_p, scale, step, stats):
            raise ValueError("mgda.py: the micro-batches of one step must agree on loss_p being given, the loss "
                             f"scale, the step and stats; got {(has_p, scale, step, stats)} after {self.sums['meta']}")
        add_to(self.sums, "loss_c", loss_c.detach().double() / scale)
        if has_p:
            add_to(self.sums, "loss_p", loss_p.detach().double() / scale)
        need, h = self.needs(has_p, step, stats), bases if use_bases else None
        if "p" in need:                # L_p reaches theta_p only: a backward through PWTP alone
            g_p, h_p = gradients(loss_p, self.theta_p, retain_graph=True, bases=h)
            add_to(self.sums, "g_p", g_p)
        if "mix" in need:              # L_p does not reach theta_c: one pass of the sum gives both
            lam = self.lam_at(step) if has_p else 0.0
            add_to(self.sums, "g_mix", gradients(loss_c if lam == 0 else loss_c + lam * loss_p,
                                                 self.theta_p + self.theta_c)[0])
            return
        targets = (self.theta_p if "c" in need else []) + (self.theta_c if "rec" in need else [])
        g, h_c = gradients(loss_c, targets, bases=h)
        if "c" in need:
            add_to(self.sums, "g_c", g[:len(self.theta_p)])
        if "rec" in need:
            add_to(self.sums, "g_rec", g[len(targets) - len(self.theta_c):])
        if use_bases:                  # different clips' bases are different coordinates: sums add
            add_to(self.sums, "inner_bases", inner_products([h_c], [h_p]))

    def step(self, step):
        """Average the sums over ranks, then write every .grad: for mgda by ONE call of algorithm1."""
        sums, self.sums = self.sums, {}
        if not sums:
            raise RuntimeError("mgda.py: JointTraining.step() without accumulate() since the last step")
        has_p, scale, accumulated_step, stats = sums.pop("meta")
        if accumulated_step != step:
            raise ValueError(f"mgda.py: accumulate() was given step={accumulated_step} but step() step={step}")
        reduce_over_ranks(sums)                              # before alpha: the same on every rank
        info = {"loss_c": sums["loss_c"].item(), "loss_p": sums["loss_p"].item() if has_p else None}
        if stats and has_p:                                  # logged unscaled (divided by s^2)
            g_c = sums.get("g_c") or [m - self.lam_at(step) * p for m, p in zip(sums["g_mix"], sums["g_p"])]
            gcc, gcp, gpp = (inner_products(g_c, sums["g_p"]) / (scale * scale)).tolist()
            info.update(gc_norm=math.sqrt(gcc), gp_norm=math.sqrt(gpp),
                        cos=gcp / math.sqrt(gcc * gpp) if gcc * gpp > 0 else float("nan"))
        if has_p and self.strategy == "mgda":               # Algorithm 1, once per step
            inner = sums["inner_bases"].tolist() if self.space == "bases" else None
            info["alpha"] = algorithm1(self.theta_p, sums["g_c"], sums["g_p"], self.theta_c, sums["g_rec"],
                                       self.normalize, (info["loss_c"], info["loss_p"]), inner=inner)
        elif has_p and self.strategy == "separate":        # PWTP on its own task, then the backbone on fixed DA
            info["phase"] = phase = 1 if step < self.separate_steps else 2
            set_grads(self.theta_p, sums["g_p"] if phase == 1 else None)
            set_grads(self.theta_c, None if phase == 1 else sums["g_rec"])
        else:                                              # L_c + lambda L_p, Eq. 9 / 13
            info.update({"lam": self.lam_at(step)} if has_p else {})
            set_grads(self.theta_p + self.theta_c, sums["g_mix"])
        return info

    def backward(self, loss_c, loss_p, step, bases=None, scale=1.0, stats=False):    # K = 1
        self.accumulate(loss_c, loss_p, step, bases=bases, scale=scale, stats=stats)
        return self.step(step)


def set_grads(params, grads):
    """Write .grad (each strategy gives the step's whole gradient); None leaves the parameters frozen."""
    for i, p in enumerate(params):
        p.grad = None if grads is None else grads[i].detach().to(p.dtype)
