"""mgda.py: Eq. 12 against a brute-force Eq. 11, Algorithm 1's gradients (and that training runs
mgda.algorithm1 itself), Eq. 13, the strategies, gradient normalisers, the bases space (MGDA-UB
analogue), gradient accumulation over micro-batches and ranks, the loss scale of fp16, and the
logged gradient statistics."""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import mgda
from mgda import NORMALIZERS, SPACES, STRATEGIES, JointTraining, scale_schedule
from support import grads


def alpha_of(g_c, g_p):
    """Eq. 12 for two gradient vectors."""
    return mgda.min_norm_alpha(*mgda.inner_products([g_c], [g_p]).tolist())


def normalized_alpha(inner, normalize="none", loss_c=1.0, loss_p=1.0):
    """The alpha algorithm1 computes from inner products, with a normaliser, writing no gradient."""
    gcc, gcp, gpp = inner
    n_c, n_p = mgda.normalizers(normalize, (gcc, gpp), loss_c, loss_p)
    return mgda.min_norm_alpha(gcc / (n_c * n_c), gcp / (n_c * n_p), gpp / (n_p * n_p))


def joint(model, strategy="mgda", **kw):
    return JointTraining(model.shared_parameters(), model.recognition_parameters(), strategy, **kw)


def mgda_backward(shared, recog, loss_c, loss_p):
    """Algorithm 1 for one mini-batch on explicit parameter lists; returns alpha."""
    return JointTraining(shared, recog, "mgda").backward(loss_c, loss_p, 0)["alpha"]


def brute_force_alpha(g_c, g_p, n=100_001):
    """Eq. 11 minimised over a fine grid of alpha in [0, 1]."""
    alphas = torch.linspace(0, 1, n, dtype=torch.float64)
    g_c, g_p = g_c.double(), g_p.double()
    norms = ((alphas[:, None] * g_c + (1 - alphas[:, None]) * g_p) ** 2).sum(1)
    return alphas, norms


def check_alpha(g_c, g_p):
    alpha = alpha_of(g_c, g_p)
    alphas, norms = brute_force_alpha(g_c, g_p)
    best = norms.min().item()
    # alpha is optimal for Eq. 11: its objective equals the grid minimum (up to the grid's error),
    # and it is within 1e-3 of the minimising grid point whenever the minimiser is unique.
    val = ((alpha * g_c.double() + (1 - alpha) * g_p.double()) ** 2).sum().item()
    assert val <= best + 1e-9 * (1 + best), (alpha, val, best)
    return alpha, alphas[norms.argmin()].item()


def test_random_pairs_match_brute_force():
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        d = int(torch.randint(1, 20, (1,), generator=g))
        g_c = torch.randn(d, generator=g) * float(torch.rand(1, generator=g) * 5)
        g_p = torch.randn(d, generator=g) * float(torch.rand(1, generator=g) * 5)
        alpha, grid = check_alpha(g_c, g_p)
        assert abs(alpha - grid) <= 1e-3


def test_edge_cases():
    v = torch.tensor([1.0, -2.0, 0.5])
    w = torch.tensor([2.0, 1.0, 0.0])  # orthogonal to v
    assert alpha_of(v, v) == 0.5                       # equal: flat objective, no 0/0
    a, grid = check_alpha(v, -v)                             # opposite: the midpoint is 0
    assert abs(a - 0.5) < 1e-12
    a, grid = check_alpha(v, w)                              # orthogonal: |w|^2 / (|v|^2 + |w|^2)
    assert abs(a - w.dot(w) / (v.dot(v) + w.dot(w))) < 1e-6 and abs(a - grid) <= 1e-3
    assert alpha_of(torch.zeros(3), v) == 1.0          # g_c = 0 is itself the min-norm point
    assert alpha_of(v, torch.zeros(3)) == 0.0          # g_p = 0 likewise
    a, grid = check_alpha(1000 * v, w)                       # one much longer
    assert abs(a - grid) <= 1e-3 and a < 0.01
    a, grid = check_alpha(v, 1000 * w)
    assert abs(a - grid) <= 1e-3 and a > 0.99
    a, grid = check_alpha(v, 2 * v)                          # parallel, same direction: clip to 1
    assert a == 1.0


class TwoTask(nn.Module):
    """A tiny stand-in of the DA model: shared theta_p feeds both losses, theta_c only L_c."""

    def __init__(self):
        super().__init__()
        self.shared = nn.Linear(4, 3)
        self.head = nn.Linear(3, 2)

    def shared_parameters(self):
        return list(self.shared.parameters())

    def recognition_parameters(self):
        return list(self.head.parameters())

    def losses(self, x, y):
        return self.losses_and_bases(x, y)[:2]

    def losses_and_bases(self, x, y):
        # z plays the part of the bases A: the one tensor through which theta_p reaches both losses.
        z = torch.tanh(self.shared(x))
        loss_c = nn.functional.cross_entropy(self.head(z), y)
        loss_p = ((z - x[:, :3]) ** 2).mean()        # depends on theta_p only, like ENoPR
        return loss_c, loss_p, z


def test_algorithm1_writes_the_convex_combination():
    torch.manual_seed(0)
    m = TwoTask()
    x, y = torch.randn(8, 4), torch.randint(0, 2, (8,))
    loss_c, loss_p = m.losses(x, y)
    shared, recog = m.shared_parameters(), m.recognition_parameters()
    g_c = torch.autograd.grad(loss_c, shared, retain_graph=True)
    g_p = torch.autograd.grad(loss_p, shared, retain_graph=True)
    g_rec = torch.autograd.grad(loss_c, recog, retain_graph=True)
    flat = lambda gs: torch.cat([g.flatten() for g in gs])
    expected_alpha = alpha_of(flat(g_c), flat(g_p))
    alpha = mgda_backward(shared, recog, loss_c, loss_p)
    assert alpha == expected_alpha and 0 < alpha < 1
    for p, gc, gp in zip(shared, g_c, g_p):
        torch.testing.assert_close(p.grad, alpha * gc + (1 - alpha) * gp, rtol=0, atol=1e-7)
    for p, g in zip(recog, g_rec):
        torch.testing.assert_close(p.grad, g, rtol=0, atol=0)


def test_mgda_reaches_a_pareto_stationary_point():
    # Two convex quadratics with different minimisers on the shared parameters; theta_c only in L_c.
    a, b, c = torch.tensor([1.0, 2.0, -1.0]), torch.tensor([-2.0, 0.5, 3.0]), torch.tensor([0.3, -0.7])
    theta_p = torch.zeros(3, requires_grad=True)
    theta_c = torch.zeros(2, requires_grad=True)
    opt = torch.optim.SGD([theta_p, theta_c], lr=0.1)
    for _ in range(500):
        loss_c = ((theta_p - a) ** 2).sum() + ((theta_c - c) ** 2).sum()
        loss_p = 2 * ((theta_p - b) ** 2).sum()
        opt.zero_grad()
        mgda_backward([theta_p], [theta_c], loss_c, loss_p)
        opt.step()
    with torch.no_grad():
        g_c, g_p = 2 * (theta_p - a), 4 * (theta_p - b)
    alpha = alpha_of(g_c, g_p)
    assert (alpha * g_c + (1 - alpha) * g_p).norm() < 1e-4       # Eq. 10
    torch.testing.assert_close(theta_c.detach(), c, atol=1e-4, rtol=0)
    # A Pareto point of these two lies on the segment between their minimisers a and b.
    t = ((theta_p.detach() - a) @ (b - a)) / ((b - a) @ (b - a))
    assert 0 <= t <= 1
    torch.testing.assert_close(theta_p.detach(), a + t * (b - a), atol=1e-3, rtol=0)


def test_scale_schedule_endpoints_and_shape():
    assert scale_schedule(0, 100, 2.0, 0.1, 1.0, 1.0) == pytest.approx(2.0)
    assert scale_schedule(100, 100, 2.0, 0.1, 1.0, 1.0) == pytest.approx(0.1)
    assert scale_schedule(50, 100, 2.0, 0.1, 1.0, 1.0) == pytest.approx(0.1 + 1.9 * 0.5)
    # a = 0.5: reaches the floor halfway and stays there.
    assert scale_schedule(50, 100, 1.0, 0.0, 0.5, 1.0) == pytest.approx(0.0, abs=1e-12)
    assert scale_schedule(90, 100, 1.0, 0.0, 0.5, 1.0) == 0.0
    # b > 1 decays faster than b = 1; monotone non-increasing.
    assert scale_schedule(20, 100, 1, 0, 1, 3) < scale_schedule(20, 100, 1, 0, 1, 1)
    vals = [scale_schedule(t, 100, 1, 0, 0.7, 2) for t in range(101)]
    assert all(x >= y for x, y in zip(vals, vals[1:]))
    assert scale_schedule(30, 100, 1, 0, 1, 2) == pytest.approx((0.5 * (1 + math.cos(math.pi * 0.3))) ** 2)
    with pytest.raises(ValueError):
        scale_schedule(0, 10, fraction=0.0)


@pytest.mark.parametrize("strategy", ["mgda", "constant", "scheduler", "separate", "recognition"])
def test_strategies_write_the_right_gradients(strategy):
    torch.manual_seed(1)
    m = TwoTask()
    x, y = torch.randn(8, 4), torch.randint(0, 2, (8,))
    shared, recog = m.shared_parameters(), m.recognition_parameters()
    jt = joint(m, strategy, lam=0.7, total_steps=10, separate_steps=3)
    for step in (0, 5):
        loss_c, loss_p = m.losses(x, y)
        g_c = torch.autograd.grad(loss_c, shared + recog, retain_graph=True)
        g_p = torch.autograd.grad(loss_p, shared, retain_graph=True)
        info = jt.backward(loss_c, loss_p, step)
        if strategy in ("constant", "scheduler", "recognition"):
            lam = {"constant": 0.7, "recognition": 0.0}.get(strategy, scale_schedule(step, 10, 0.7, 0.0))
            assert info["lam"] == pytest.approx(lam)
            for p, gc, gp in zip(shared, g_c, g_p):
                torch.testing.assert_close(p.grad, gc + lam * gp)
        elif strategy == "separate" and step < 3:
            for p, gp in zip(shared, g_p):
                torch.testing.assert_close(p.grad, gp)
            assert all(p.grad is None for p in recog)          # backbone waits for phase 2
        elif strategy == "separate":
            assert all(p.grad is None for p in shared)         # PWTP frozen in phase 2
        else:
            assert 0.0 <= info["alpha"] <= 1.0
        if not (strategy == "separate" and step < 3):
            for p, g in zip(recog, g_c[len(shared):]):
                torch.testing.assert_close(p.grad, g)


def test_unknown_strategy_is_a_clear_error():
    with pytest.raises(ValueError, match="--joint"):
        JointTraining([], [], "adaptive")


def test_bad_flags_are_clear_errors():
    with pytest.raises(ValueError, match="--mgda-normalize"):
        JointTraining([], [], "mgda", normalize="l1")
    with pytest.raises(ValueError, match="--mgda-space"):
        JointTraining([], [], "mgda", space="features")
    assert NORMALIZERS == ("none", "l2", "loss", "loss+") and SPACES == ("params", "bases")
    assert STRATEGIES == ("mgda", "constant", "scheduler", "separate", "recognition")
    m = TwoTask()
    x, y = torch.randn(8, 4), torch.randint(0, 2, (8,))
    loss_c, loss_p = m.losses(x, y)
    with pytest.raises(ValueError, match="--mgda-space bases"):                 # no bases given
        joint(m, "mgda", space="bases").backward(loss_c, loss_p, 0)
    loss_c, loss_p = m.losses(x, y)
    stray = torch.randn(8, 3, requires_grad=True)                               # not in the graph
    with pytest.raises(ValueError, match="does not depend on the bases"):
        joint(m, "mgda", space="bases").backward(loss_c, loss_p, 0, bases=stray)
    loss_c, loss_p = m.losses(x, y)
    with pytest.raises(ValueError, match="--mgda-normalize loss"):              # a negative loss flips g
        joint(m, "mgda", normalize="loss").backward(loss_c, loss_p - 10.0, 0)
    with pytest.raises(RuntimeError, match="without accumulate"):
        joint(m, "mgda").step(0)


# ---------------------------------------------------------------------------------------------
# Gradient normalisers
# ---------------------------------------------------------------------------------------------
def normaliser(name, g, loss):
    """The definition, written out independently of mgda.py."""
    return {"none": 1.0, "l2": g.norm().item(), "loss": loss, "loss+": loss * g.norm().item()}[name]


def gram_of(g_c, g_p):
    g_c, g_p = g_c.double().flatten(), g_p.double().flatten()
    return [g_c.dot(g_c).item(), g_c.dot(g_p).item(), g_p.dot(g_p).item()]


@pytest.mark.parametrize("normalize", ["none", "l2", "loss", "loss+"])
def test_normalised_alpha_matches_brute_force(normalize):
    g = torch.Generator().manual_seed(3)
    for _ in range(30):
        d = int(torch.randint(2, 12, (1,), generator=g))
        g_c = torch.randn(d, generator=g, dtype=torch.float64) * 10 ** float(torch.rand(1, generator=g) * 4 - 2)
        g_p = torch.randn(d, generator=g, dtype=torch.float64) * 10 ** float(torch.rand(1, generator=g) * 4 - 2)
        L_c, L_p = float(torch.rand(1, generator=g) * 5 + 0.01), float(torch.rand(1, generator=g) + 0.01)
        alpha = normalized_alpha(gram_of(g_c, g_p), normalize, L_c, L_p)
        u, v = g_c / normaliser(normalize, g_c, L_c), g_p / normaliser(normalize, g_p, L_p)
        a, grid = check_alpha(u, v)                          # Eq. 11 on the normalised vectors
        assert abs(alpha - a) < 1e-9 and abs(alpha - grid) <= 1e-3


def test_l2_gives_one_half_and_guards_zero():
    g = torch.Generator().manual_seed(4)
    for _ in range(20):
        g_c = torch.randn(50, generator=g) * 1e3             # norms 1e5..1e6 apart, any angle
        g_p = torch.randn(50, generator=g) * 1e-3
        assert normalized_alpha(gram_of(g_c, g_p), "l2") == pytest.approx(0.5, abs=1e-9)
        assert normalized_alpha(gram_of(g_c, -g_c * 1e-4), "l2") == pytest.approx(0.5, abs=1e-9)
    # A zero gradient is not normalised (no 0/0): it stays the min-norm point.
    v = torch.randn(5, generator=g)
    assert normalized_alpha(gram_of(torch.zeros(5), v), "l2") == 1.0
    assert normalized_alpha(gram_of(v, torch.zeros(5)), "loss+", 1.0, 0.5) == 0.0
    assert normalized_alpha(gram_of(v, 2 * v), "loss", 0.0, 0.0) == 1.0     # zero losses: not divided
    # Through JointTraining: with l2 the update on theta_p is the plain average of g_c and g_p.
    torch.manual_seed(0)
    m = TwoTask()
    x, y = torch.randn(8, 4), torch.randint(0, 2, (8,))
    loss_c, loss_p = m.losses(x, y)
    g_c = torch.autograd.grad(loss_c, m.shared_parameters(), retain_graph=True)
    g_p = torch.autograd.grad(1e-3 * loss_p, m.shared_parameters(), retain_graph=True)
    info = joint(m, "mgda", normalize="l2").backward(loss_c, 1e-3 * loss_p, 0)
    assert info["alpha"] == pytest.approx(0.5, abs=1e-9)
    for p, gc, gp in zip(m.shared_parameters(), g_c, g_p):
        torch.testing.assert_close(p.grad, 0.5 * gc + 0.5 * gp)


@pytest.mark.parametrize("normalize", ["none", "l2", "loss", "loss+"])
def test_alpha_applies_to_the_unnormalised_gradients(normalize):
    torch.manual_seed(2)
    m = TwoTask()
    x, y = torch.randn(8, 4), torch.randint(0, 2, (8,))
    loss_c, loss_p = m.losses(x, y)
    loss_p = 0.01 * loss_p                                  # the imbalance of motion data
    shared = m.shared_parameters()
    flat = lambda gs: torch.cat([g.flatten() for g in gs])
    g_c = torch.autograd.grad(loss_c, shared, retain_graph=True)
    g_p = torch.autograd.grad(loss_p, shared, retain_graph=True)
    u = flat(g_c) / normaliser(normalize, flat(g_c), loss_c.item())
    v = flat(g_p) / normaliser(normalize, flat(g_p), loss_p.item())
    info = joint(m, "mgda", normalize=normalize).backward(loss_c, loss_p, 0)
    assert info["alpha"] == pytest.approx(alpha_of(u, v), abs=1e-6)   # u, v rounded to float32 here
    for p, gc, gp in zip(shared, g_c, g_p):
        torch.testing.assert_close(p.grad, info["alpha"] * gc + (1 - info["alpha"]) * gp)


# ---------------------------------------------------------------------------------------------
# The bases space (MGDA-UB analogue) on a real PWTP + backbone
# ---------------------------------------------------------------------------------------------
def tiny_model():
    import backbones
    torch.manual_seed(0)
    model = backbones.build_model("tsm", 3, segments=2, frames=4, depth=18, small=True, crop_size=32,
                                  dropout=0.0)
    return model.eval()          # BatchNorm on running statistics: clips do not interact


def tiny_batch(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 8, 3, 32, 32, generator=g), torch.randint(0, 3, (n,), generator=g)


def real_losses(model, clip, labels):
    out = model(clip)
    return F.cross_entropy(out.logits, labels), out.pwtp.enopr.mean(), out.pwtp.A


@pytest.mark.parametrize("normalize", ["none", "loss+"])
def test_bases_space_update_is_the_backpropagated_mix(normalize):
    model = tiny_model()
    clip, labels = tiny_batch(2)
    loss_c, loss_p, A = real_losses(model, clip, labels)
    shared, recog = model.shared_parameters(), model.recognition_parameters()
    # Explicit: gradients w.r.t. the bases and w.r.t. the parameters, graph kept for the mix.
    h_c, h_p = (torch.autograd.grad(l, A, retain_graph=True)[0] for l in (loss_c, loss_p))
    g_c = torch.autograd.grad(loss_c, shared, retain_graph=True)
    g_p = torch.autograd.grad(loss_p, shared, retain_graph=True)
    g_rec = torch.autograd.grad(loss_c, recog, retain_graph=True)
    n_c = normaliser(normalize, h_c, loss_c.item())
    n_p = normaliser(normalize, h_p, loss_p.item())
    expected = alpha_of(h_c / n_c, h_p / n_p)          # Eq. 12 on the bases gradients
    via_A = torch.autograd.grad(A, shared, grad_outputs=expected * h_c + (1 - expected) * h_p,
                                retain_graph=True)           # the mix backpropagated from A
    info = joint(model, "mgda", space="bases", normalize=normalize).backward(loss_c, loss_p, 0, bases=A)
    assert info["alpha"] == pytest.approx(expected, abs=1e-6)
    assert info["alpha"] != pytest.approx(normalized_alpha(gram_of(torch.cat([g.flatten() for g in g_c]),
                                                                   torch.cat([g.flatten() for g in g_p])),
                                                           normalize, loss_c.item(), loss_p.item()), abs=1e-3)
    alpha = info["alpha"]
    for p, gc, gp, ga in zip(shared, g_c, g_p, via_A):
        torch.testing.assert_close(p.grad, alpha * gc + (1 - alpha) * gp, rtol=1e-4, atol=1e-8)
        torch.testing.assert_close(p.grad, ga, rtol=1e-3, atol=1e-7)
    for p, g in zip(recog, g_rec):                           # the backbone keeps grad L_c unscaled
        torch.testing.assert_close(p.grad, g)


# ---------------------------------------------------------------------------------------------
# Gradient accumulation: K micro-batches of B == one batch of K*B
# ---------------------------------------------------------------------------------------------
def grads_of(model):
    return [None if p.grad is None else p.grad.clone() for p in model.parameters()]


def assert_same_grads(a, b, rtol, atol):
    for ga, gb in zip(a, b):
        assert (ga is None) == (gb is None)
        if ga is not None:
            torch.testing.assert_close(ga, gb, rtol=rtol, atol=atol)


@pytest.mark.parametrize("strategy,space,normalize", [("mgda", "params", "none"), ("mgda", "bases", "loss"),
                                                      ("mgda", "params", "loss+"), ("constant", "params", "none")])
def test_micro_batches_equal_one_batch_real_model(strategy, space, normalize):
    model = tiny_model()
    clip, labels = tiny_batch(4, seed=1)
    kw = dict(lam=0.5, space=space, normalize=normalize)
    loss_c, loss_p, A = real_losses(model, clip, labels)
    whole = joint(model, strategy, **kw).backward(loss_c, loss_p, 0, bases=A)
    g_whole = grads_of(model)
    model.zero_grad(set_to_none=True)
    jt, K = joint(model, strategy, **kw), 2
    for k in range(K):
        loss_c, loss_p, A = real_losses(model, clip[2 * k:2 * k + 2], labels[2 * k:2 * k + 2])
        jt.accumulate(loss_c / K, loss_p / K, 0, bases=A)
    parts = jt.step(0)
    assert set(parts) == set(whole)
    for key in whole:
        assert parts[key] == pytest.approx(whole[key], rel=1e-4, abs=1e-7), key
    assert_same_grads(g_whole, grads_of(model), rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("strategy", ["mgda", "constant", "scheduler", "separate", "recognition"])
@pytest.mark.parametrize("stats", [True, False])
def test_micro_batches_equal_one_batch_every_strategy(strategy, stats):
    torch.manual_seed(5)
    m = TwoTask()
    x, y = torch.randn(8, 4), torch.randint(0, 2, (8,))
    for step in (0, 5):                                      # separate: phase 1, then phase 2
        kw = dict(lam=0.7, total_steps=10, separate_steps=3, normalize="loss")
        m.zero_grad(set_to_none=True)
        whole = joint(m, strategy, **kw).backward(*m.losses(x, y), step, stats=stats)
        g_whole = grads_of(m)
        m.zero_grad(set_to_none=True)
        jt = joint(m, strategy, **kw)
        for k in range(4):
            loss_c, loss_p = m.losses(x[2 * k:2 * k + 2], y[2 * k:2 * k + 2])
            jt.accumulate(loss_c / 4, loss_p / 4, step, stats=stats)
        parts = jt.step(step)
        assert set(parts) == set(whole)
        for key in whole:
            assert parts[key] == pytest.approx(whole[key], rel=1e-5, abs=1e-8), key
        assert_same_grads(g_whole, grads_of(m), rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="step"):            # a step other than the accumulated one
        jt = joint(m, strategy, **kw)
        jt.accumulate(*m.losses(x, y), 2)
        jt.step(3)


def _ranks_worker(rank, world, path, configs):
    import torch.distributed as dist
    dist.init_process_group("gloo", init_method=f"file://{path}/rendezvous", rank=rank, world_size=world)
    torch.manual_seed(7)
    m = TwoTask()                                           # identical weights on every rank
    torch.manual_seed(8)
    x, y = torch.randn(8, 4), torch.randint(0, 2, (8,))
    out = {}
    for strategy, space, normalize in configs:
        jt = joint(m, strategy, lam=0.3, space=space, normalize=normalize)
        for k in range(2):                                  # this rank's 4 clips as 2 micro-batches of 2
            i = 4 * rank + 2 * k
            loss_c, loss_p, z = m.losses_and_bases(x[i:i + 2], y[i:i + 2])
            jt.accumulate(loss_c / 2, loss_p / 2, 0, bases=z)
        out[(strategy, space, normalize)] = (jt.step(0), grads_of(m))
    torch.save(out, f"{path}/rank{rank}.pt")
    dist.destroy_process_group()


def test_ranks_and_micro_batches_equal_one_batch(tmp_path):
    # 2 gloo ranks x 2 micro-batches x 2 clips == one process, one batch of 8.
    import torch.multiprocessing as mp
    configs = [("mgda", "params", "loss"), ("mgda", "bases", "none"), ("mgda", "bases", "loss+"),
               ("constant", "params", "none")]
    mp.spawn(_ranks_worker, args=(2, str(tmp_path), configs), nprocs=2, join=True)
    results = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    torch.manual_seed(7)
    m = TwoTask()
    torch.manual_seed(8)
    x, y = torch.randn(8, 4), torch.randint(0, 2, (8,))
    for cfg in configs:
        strategy, space, normalize = cfg
        loss_c, loss_p, z = m.losses_and_bases(x, y)
        info = joint(m, strategy, lam=0.3, space=space, normalize=normalize).backward(loss_c, loss_p, 0, bases=z)
        for info_r, grads_r in (r[cfg] for r in results):
            assert set(info_r) == set(info)
            for key in info:
                assert info_r[key] == pytest.approx(info[key], rel=1e-5, abs=1e-8), (cfg, key)
            assert_same_grads(grads_r, grads_of(m), rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------------------------------------
# fp16 loss scale and the logged statistics
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("normalize", ["none", "l2", "loss", "loss+"])
@pytest.mark.parametrize("space", ["params", "bases"])
def test_a_common_loss_scale_leaves_alpha_unchanged(normalize, space):
    torch.manual_seed(6)
    m = TwoTask()
    x, y = torch.randn(8, 4), torch.randint(0, 2, (8,))
    jt = joint(m, "mgda", normalize=normalize, space=space)
    loss_c, loss_p, z = m.losses_and_bases(x, y)
    ref = jt.backward(loss_c, 0.05 * loss_p, 0, bases=z, stats=True)
    g_ref = grads_of(m)
    for s in (2.0 ** 16, 3.7):
        loss_c, loss_p, z = m.losses_and_bases(x, y)
        info = jt.backward(s * loss_c, s * (0.05 * loss_p), 0, bases=z, scale=s, stats=True)
        if s == 2.0 ** 16:       # GradScaler's factors are powers of two: every float scales exactly,
            assert info["alpha"] == ref["alpha"]                 # alpha is bit-identical
        # Any other factor changes the float32 rounding of the gradients, not alpha's value.
        assert info["alpha"] == pytest.approx(ref["alpha"], rel=1e-5, abs=1e-7)
        for key in ("gc_norm", "gp_norm", "cos"):             # logged unscaled
            assert info[key] == pytest.approx(ref[key], rel=1e-12 if s == 2.0 ** 16 else 1e-4), (s, key)
        for g, gr in zip(grads_of(m), g_ref):                 # .grad stays scaled: the scaler unscales it
            torch.testing.assert_close(g / s, gr, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("strategy", ["mgda", "constant", "scheduler", "separate", "recognition"])
def test_stats_are_logged_and_correct(strategy):
    torch.manual_seed(9)
    m = TwoTask()
    x, y = torch.randn(8, 4), torch.randint(0, 2, (8,))
    shared = m.shared_parameters()
    flat = lambda gs: torch.cat([g.flatten() for g in gs])
    # Two different losses: norms and cosine against explicit autograd.
    loss_c, loss_p = m.losses(x, y)
    g_c = flat(torch.autograd.grad(loss_c, shared, retain_graph=True))
    g_p = flat(torch.autograd.grad(loss_p, shared, retain_graph=True))
    info = joint(m, strategy, separate_steps=2).backward(loss_c, loss_p, 0, stats=True)
    assert info["gc_norm"] == pytest.approx(g_c.norm().item(), rel=1e-5)
    assert info["gp_norm"] == pytest.approx(g_p.norm().item(), rel=1e-5)
    assert info["cos"] == pytest.approx((g_c @ g_p / (g_c.norm() * g_p.norm())).item(), rel=1e-4, abs=1e-6)
    # The same function as both losses (up to a factor 3): cos = 1, norms in ratio 3.
    z = torch.tanh(m.shared(x))
    f = (z ** 2).mean() + nn.functional.cross_entropy(m.head(z), y)
    info = joint(m, strategy, separate_steps=2).backward(f, 3 * f, 0, stats=True)
    assert info["cos"] == pytest.approx(1.0, abs=1e-6)
    assert info["gp_norm"] == pytest.approx(3 * info["gc_norm"], rel=1e-6)
    # stats=False (a step that is not logged): no stats keys, and bit for bit the same gradients.
    loss_c, loss_p = m.losses(x, y)
    joint(m, strategy, separate_steps=2).backward(loss_c, loss_p, 0, stats=True)
    g_on = grads_of(m)
    loss_c, loss_p = m.losses(x, y)
    info = joint(m, strategy, separate_steps=2).backward(loss_c, loss_p, 0)
    assert not {"gc_norm", "gp_norm", "cos"} & set(info)
    assert_same_grads(g_on, grads_of(m), rtol=0, atol=0)         # logging never changes training
    # No PWTP (loss_p None): plain recognition, nothing but L_c to log.
    loss_c, _ = m.losses(x, y)
    info = joint(m, strategy, separate_steps=2).backward(loss_c, None, 0, stats=True)
    assert info == {"loss_c": pytest.approx(loss_c.item()), "loss_p": None}


# ---------------------------------------------------------------------------------------------
# Training runs exactly Algorithm 1: accumulation, loss scale and ranks wrap mgda.algorithm1
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("normalize", ["none", "loss+"])
def test_training_path_writes_what_a_direct_algorithm1_call_writes(normalize):
    model = tiny_model()
    clip, labels = tiny_batch(4, seed=3)
    shared, recog = model.shared_parameters(), model.recognition_parameters()
    K, s = 2, 3.0 * 2.0 ** 10            # two micro-batches, an fp16-style loss scale

    def micro_losses(k):                 # the scaled, 1/K-weighted losses train.py passes on
        loss_c, loss_p, _ = real_losses(model, clip[2 * k:2 * k + 2], labels[2 * k:2 * k + 2])
        return s * loss_c / K, s * loss_p / K

    # Direct: sum the micro-batches' gradients by hand, then call Algorithm 1 once.
    g_c, g_p, g_rec, L_c, L_p = None, None, None, 0.0, 0.0
    for k in range(K):
        loss_c, loss_p = micro_losses(k)
        gp, _ = grads.gradients(loss_p, shared, retain_graph=True)
        g, _ = grads.gradients(loss_c, shared + recog)
        add = lambda acc, new: [x.detach() for x in new] if acc is None else [a + b for a, b in zip(acc, new)]
        g_c, g_p, g_rec = add(g_c, g[:len(shared)]), add(g_p, gp), add(g_rec, g[len(shared):])
        L_c, L_p = L_c + loss_c.detach().double() / s, L_p + loss_p.detach().double() / s
    alpha = mgda.algorithm1(shared, g_c, g_p, recog, g_rec, normalize, (L_c.item(), L_p.item()))
    direct = grads_of(model)
    assert 0.0 < alpha < 1.0
    # The training path: accumulate K micro-batches under the loss scale, then step.
    model.zero_grad(set_to_none=True)
    jt = joint(model, "mgda", normalize=normalize)
    for k in range(K):
        jt.accumulate(*micro_losses(k), 0, scale=s)
    info = jt.step(0)
    assert info["alpha"] == alpha                                  # bit for bit
    for a, b in zip(direct, grads_of(model)):
        assert torch.equal(a, b)


@pytest.mark.parametrize("space", ["params", "bases"])
def test_joint_training_calls_algorithm1_once_per_step(monkeypatch, space):
    calls = []
    real = mgda.algorithm1

    def spy(*args, **kwargs):
        calls.append(kwargs.get("inner"))
        return real(*args, **kwargs)

    monkeypatch.setattr(mgda, "algorithm1", spy)
    model = tiny_model()
    clip, labels = tiny_batch(4, seed=4)
    jt = joint(model, "mgda", space=space)
    for k in range(2):
        loss_c, loss_p, A = real_losses(model, clip[2 * k:2 * k + 2], labels[2 * k:2 * k + 2])
        jt.accumulate(loss_c / 2, loss_p / 2, 0, bases=A)
        assert calls == []                                        # nothing decided per micro-batch
    info = jt.step(0)
    assert len(calls) == 1 and (calls[0] is None) == (space == "params")   # bases: its inner products
    loss_c, loss_p, _ = real_losses(model, clip, labels)
    alpha = mgda_backward(model.shared_parameters(), model.recognition_parameters(), loss_c, loss_p)
    assert len(calls) == 2 and 0.0 <= alpha <= 1.0 and 0.0 <= info["alpha"] <= 1.0


def test_algorithm1_checks_its_lists():
    p = [torch.zeros(3, requires_grad=True)]
    with pytest.raises(ValueError, match="one gradient per parameter"):
        mgda.algorithm1(p, [torch.ones(3)], [])
