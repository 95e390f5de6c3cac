"""mgda.py: Eq. 12 against a brute-force Eq. 11, Algorithm 1's gradients, Eq. 13, the strategies."""
import math

import pytest
import torch
import torch.nn as nn

from mgda import JointTraining, min_norm_alpha, mgda_backward, scale_schedule


def brute_force_alpha(g_c, g_p, n=100_001):
    """Eq. 11 minimised over a fine grid of alpha in [0, 1]."""
    alphas = torch.linspace(0, 1, n, dtype=torch.float64)
    g_c, g_p = g_c.double(), g_p.double()
    norms = ((alphas[:, None] * g_c + (1 - alphas[:, None]) * g_p) ** 2).sum(1)
    return alphas, norms


def check_alpha(g_c, g_p):
    alpha = min_norm_alpha(g_c, g_p)
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
    assert min_norm_alpha(v, v) == 0.5                       # equal: flat objective, no 0/0
    a, grid = check_alpha(v, -v)                             # opposite: the midpoint is 0
    assert abs(a - 0.5) < 1e-12
    a, grid = check_alpha(v, w)                              # orthogonal: |w|^2 / (|v|^2 + |w|^2)
    assert abs(a - w.dot(w) / (v.dot(v) + w.dot(w))) < 1e-6 and abs(a - grid) <= 1e-3
    assert min_norm_alpha(torch.zeros(3), v) == 1.0          # g_c = 0 is itself the min-norm point
    assert min_norm_alpha(v, torch.zeros(3)) == 0.0          # g_p = 0 likewise
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
        z = torch.tanh(self.shared(x))
        loss_c = nn.functional.cross_entropy(self.head(z), y)
        loss_p = ((z - x[:, :3]) ** 2).mean()        # depends on theta_p only, like ENoPR
        return loss_c, loss_p


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
    expected_alpha = min_norm_alpha(flat(g_c), flat(g_p))
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
    alpha = min_norm_alpha(g_c, g_p)
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
        scale_schedule(0, 10, a=0.0)


@pytest.mark.parametrize("strategy", ["mgda", "constant", "scheduler", "separate", "recognition"])
def test_strategies_write_the_right_gradients(strategy):
    torch.manual_seed(1)
    m = TwoTask()
    x, y = torch.randn(8, 4), torch.randint(0, 2, (8,))
    shared, recog = m.shared_parameters(), m.recognition_parameters()
    jt = JointTraining(strategy, lam=0.7, total_steps=10, separate_steps=3)
    for step in (0, 5):
        loss_c, loss_p = m.losses(x, y)
        g_c = torch.autograd.grad(loss_c, shared + recog, retain_graph=True)
        g_p = torch.autograd.grad(loss_p, shared, retain_graph=True)
        info = jt.backward(m, loss_c, loss_p, step)
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
        JointTraining("adaptive")
