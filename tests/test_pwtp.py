"""PWTP (pwtp.py): the paper's parameter counts and cost, and the identities of Eq. 1-8."""
import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from pwtp import (PWTP, MLPBottleneck, dc_gain, dynamic_appearance, enopr, project, projection_loss,
                  temporal_relation_descriptor)

torch.manual_seed(0)


def n_params(m):
    return sum(p.numel() for p in m.parameters())


# Table 8 of the paper, as restored in EQUATIONS.md (T = 8, D = 1, k = 9, C' = 24).
TABLE_8 = [  # (rho, K, e, params)
    (0.25, 1, 4, 16_644), (0.25, 1, 1, 7_383), (0.25, 2, 1, 7_866), (0.25, 2, 4, 23_280),
    (1.0, 1, 4, 35_544), (0.25, 0, 4, 10_008), (0.25, 1, 2, 9_686),
]


@pytest.mark.parametrize("rho,K,e,expected", TABLE_8, ids=[f"config{i + 1}" for i in range(7)])
def test_table8_parameter_counts(rho, K, e, expected):
    assert n_params(PWTP(frames=8, proj_dim=1, expansion=e, blocks=K, bottleneck_ratio=rho)) == expected


def test_defaults_are_config7():
    assert n_params(PWTP()) == 9_686


@pytest.mark.parametrize("T,D", [(8, 0), (8, 8), (4, 5), (1, 1)])
def test_bad_proj_dim_is_a_clear_error(T, D):
    with pytest.raises(ValueError, match="T"):
        PWTP(frames=T, proj_dim=D)


def random_A(N, H, W, T, D, seed=0):
    # Random bases, seeded; shifted by a multiple of the identity so the columns are well
    # conditioned (the normal equations square the condition number).
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(N, H, W, T, D, dtype=torch.float64, generator=g)
    return A + 2.0 * torch.eye(T, D, dtype=torch.float64)


@pytest.mark.parametrize("T,D", [(4, 1), (4, 2), (8, 3), (6, 5)])
def test_projection_is_idempotent_and_residual_orthogonal(T, D):
    x = torch.randn(2, T, 3, 5, 7, dtype=torch.float64)
    A = random_A(2, 5, 7, T, D)
    x_hat, beta = project(x, A, ridge=0.0)
    assert beta.shape == (2, 5, 7, D, 3)
    # P(P x) = P x: projecting twice changes nothing.
    x_hat2, _ = project(x_hat, A, ridge=0.0)
    torch.testing.assert_close(x_hat2, x_hat, rtol=1e-9, atol=1e-9)
    # Eq. 5: the residual is orthogonal to every column of A_n, for every pixel and channel.
    residual = x - x_hat
    At_e = torch.einsum("nhwtd,ntchw->nhwdc", A, residual)
    assert At_e.abs().max() < 1e-9
    # and x_hat lies in the column space: x_hat = A beta.
    torch.testing.assert_close(torch.einsum("nhwtd,nhwdc->ntchw", A, beta), x_hat)


def test_projection_matches_explicit_projector():
    # Eq. 1 with the explicit P_n = A (A^T A)^-1 A^T, computed the slow way, for one pixel.
    T, D = 6, 2
    x = torch.randn(1, T, 3, 2, 2, dtype=torch.float64)
    A = random_A(1, 2, 2, T, D)
    x_hat, _ = project(x, A, ridge=0.0)
    a = A[0, 1, 0]                                  # (T, D)
    P = a @ torch.linalg.inv(a.T @ a) @ a.T
    torch.testing.assert_close(x_hat[0, :, :, 1, 0], P @ x[0, :, :, 1, 0])


def test_full_dimension_leaves_no_residual():
    T = 5
    x = torch.randn(2, T, 3, 4, 4, dtype=torch.float64)
    x_hat, _ = project(x, random_A(2, 4, 4, T, T), ridge=0.0)
    torch.testing.assert_close(x_hat, x, rtol=1e-8, atol=1e-8)


def test_static_clip_with_ones_column_has_zero_da_and_enopr():
    T = 6
    frame = torch.rand(2, 1, 3, 8, 8, dtype=torch.float64)
    x = frame.expand(2, T, 3, 8, 8).contiguous()    # all frames equal
    A = random_A(2, 8, 8, T, 2)
    A[..., 0] = 1.0                                  # the static direction is in every subspace
    x_hat, _ = project(x, A)
    residual = x - x_hat
    # (not exactly 0: the default ridge shrinks the projection by a relative 1e-6)
    assert dynamic_appearance(residual).abs().max() < 1e-5
    assert enopr(x, residual).abs().max() < 1e-5
    x_hat0, _ = project(x, A, ridge=0.0)              # without the ridge: zero to float64 precision
    assert dynamic_appearance(x - x_hat0).abs().max() < 1e-12


def test_da_is_a_weighted_sum_whose_weights_sum_to_residual_of_ones():
    # The comment of dynamic_appearance(): DA_n = sum_t w_t x_t with w = (1/T)(I - P) 1,
    # and sum_t w_t = (1/T) ||(I - P) 1||^2.
    T = 6
    x = torch.randn(1, T, 1, 1, 1, dtype=torch.float64)
    A = random_A(1, 1, 1, T, 2)
    x_hat, _ = project(x, A, ridge=0.0)
    da = dynamic_appearance(x - x_hat).item()
    a = A[0, 0, 0]
    P = a @ torch.linalg.inv(a.T @ a) @ a.T
    w = (torch.eye(T, dtype=torch.float64) - P) @ torch.ones(T, dtype=torch.float64) / T
    assert abs(da - (w @ x.flatten()).item()) < 1e-10
    assert abs(w.sum().item() - T * (w @ w).item()) < 1e-10


def test_relation_descriptor_pairs_in_ascending_order():
    T, Cp = 4, 3
    u = torch.randn(2, T, Cp, 3, 5)
    r = temporal_relation_descriptor(u)
    assert r.shape == (2, 3, 5, T * (T - 1) // 2)
    pairs = [(i, j) for i in range(T) for j in range(i + 1, T)]
    for k, (i, j) in enumerate(pairs):
        torch.testing.assert_close(r[..., k], (u[:, i] * u[:, j]).sum(1))


@pytest.mark.parametrize("T,D,H,W", [(8, 1, 32, 32), (4, 2, 30, 45), (6, 3, 17, 9), (3, 1, 8, 8)])
def test_output_shapes(T, D, H, W):
    m = PWTP(frames=T, proj_dim=D)
    out = m(torch.randn(3, T, 3, H, W))
    assert out.da.shape == (3, 3, H, W)
    assert out.x_hat.shape == out.residual.shape == (3, T, 3, H, W)
    assert out.A.shape == (3, H, W, T, D)
    assert out.enopr.shape == (3,)
    assert ((out.enopr >= 0) & (out.enopr <= 1.0001)).all()   # a projection never grows the clip


def test_every_parameter_gets_finite_gradients_from_both_losses():
    m = PWTP(frames=4, proj_dim=1)
    x = torch.randn(4, 4, 3, 24, 24)
    out = m(x)
    # L_p (Eq. 8) and a stand-in recognition loss L_c computed from DA by a tiny classifier.
    loss_p = out.enopr.mean()
    head = torch.nn.Linear(3, 5)
    loss_c = F.cross_entropy(head(out.da.mean((2, 3))), torch.tensor([0, 1, 2, 3]))
    params = list(m.parameters())
    for loss in (loss_c, loss_p):
        grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        for (name, _), g in zip(m.named_parameters(), grads):
            assert g is not None, f"{name} gets no gradient"
            assert torch.isfinite(g).all(), name
            assert g.abs().sum() > 0, f"{name} gets a zero gradient"


def test_black_clip_and_rank_deficient_A_stay_finite():
    m = PWTP(frames=4)
    x = torch.zeros(2, 4, 3, 16, 16, requires_grad=True)
    out = m(x)
    assert torch.isfinite(out.enopr).all() and (out.enopr < 1e-6).all()
    out.enopr.mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)
    # Two identical columns: A^T A is singular; the ridge keeps the projection finite.
    A = torch.randn(1, 4, 4, 5, 1).repeat(1, 1, 1, 1, 2)
    x2 = torch.randn(1, 5, 3, 4, 4)
    x_hat, beta = project(x2, A)
    assert torch.isfinite(x_hat).all() and torch.isfinite(beta).all()
    # ... and it still equals the projection on the single column (same column space).
    x_hat1, _ = project(x2, A[..., :1])
    torch.testing.assert_close(x_hat, x_hat1, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_inputs(dtype):
    m = PWTP(frames=4).to(dtype)
    x = torch.randn(2, 4, 3, 16, 16).to(dtype)
    out = m(x)
    assert out.da.dtype == dtype
    assert torch.isfinite(out.da.float()).all() and torch.isfinite(out.enopr).all()
    # Close to the float32 result of the same weights.
    ref = PWTP(frames=4)
    ref.load_state_dict({k: v.float() for k, v in m.state_dict().items()})
    torch.testing.assert_close(out.enopr, ref(x.float()).enopr, rtol=0.05, atol=0.02)


def test_cost_matches_the_paper():
    # Table 6's setting: T = 6, S = 8 segments, 224 x 224. Paper: 0.23 G multiply-adds.
    m = PWTP(frames=6)
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        m(torch.randn(8, 6, 3, 224, 224))
    macs = fc.get_total_flops() / 2        # the counter counts a multiply-add as 2 FLOPs
    assert 0.2e9 <= macs <= 0.3e9, macs


def test_minimising_enopr_learns_the_static_direction():
    # The unsupervised use of Sec. 1: PWTP trained on L_p alone on clips that are a static image
    # plus a small moving part should explain most of the clip (low ENoPR).
    torch.manual_seed(0)
    m = PWTP(frames=4, stride=4)
    bg = torch.rand(4, 1, 3, 16, 16)
    x = bg.repeat(1, 4, 1, 1, 1)
    for t in range(4):
        x[:, t, :, 4:8, 2 + 2 * t:6 + 2 * t] += 1.0     # a square moving right
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    first = m(x).enopr.mean().item()
    for _ in range(60):
        loss = m(x).enopr.mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    last = m(x).enopr.mean().item()
    assert last < 0.4 * first, (first, last)


@pytest.mark.parametrize("D", [1, 2])
def test_forward_da_and_enopr_equal_the_definitions(D):
    # PWTP.forward computes Eq. 6 and 7 from per-pixel sums (for speed); they must equal the
    # definitional dynamic_appearance(residual) and enopr(x, residual), values and gradients.
    torch.manual_seed(0)
    m = PWTP(frames=5, proj_dim=D).double()
    x = torch.randn(3, 5, 3, 20, 12, dtype=torch.float64)
    out = m(x)
    torch.testing.assert_close(out.da, dynamic_appearance(out.residual))
    torch.testing.assert_close(out.enopr, enopr(x, out.residual))
    torch.testing.assert_close(out.residual, x - out.x_hat)
    x_hat, _ = project(x, out.A)
    torch.testing.assert_close(out.x_hat, x_hat)
    params = list(m.parameters())
    fast = torch.autograd.grad(out.da.sum() + out.enopr.sum(), params, retain_graph=True)
    slow = torch.autograd.grad(dynamic_appearance(out.residual).sum() + enopr(x, out.residual).sum(), params)
    for f, s in zip(fast, slow):
        torch.testing.assert_close(f, s, rtol=1e-6, atol=1e-9)


def test_A_is_the_graph_node_every_output_goes_through():
    # mgda.py differentiates the losses with respect to the per-pixel bases, autograd.grad(L, out.A):
    # A must be the tensor through which da, x_hat, residual and enopr reach theta_p.
    torch.manual_seed(0)
    m = PWTP(frames=4, proj_dim=2).double()
    x = torch.randn(2, 4, 3, 16, 16, dtype=torch.float64)
    out = m(x)
    for name, loss in [("enopr", out.enopr.mean()), ("da", out.da.sum()), ("x_hat", out.x_hat.square().sum()),
                       ("residual", out.residual.square().sum())]:
        (gA,) = torch.autograd.grad(loss, out.A, retain_graph=True)
        assert gA.shape == out.A.shape
        assert gA.abs().sum() > 0, f"{name} does not depend on out.A"
    # Chain rule: dL/dtheta_p == (dA/dtheta_p)^T dL/dA, i.e. nothing reaches theta_p around A.
    loss = out.enopr.mean() + 0.1 * out.da.square().sum()
    params = list(m.parameters())
    (gA,) = torch.autograd.grad(loss, out.A, retain_graph=True)
    direct = torch.autograd.grad(loss, params, retain_graph=True)
    through_A = torch.autograd.grad(out.A, params, grad_outputs=gA)
    for (name, _), d, t in zip(m.named_parameters(), direct, through_A):
        torch.testing.assert_close(d, t, rtol=1e-9, atol=1e-12, msg=name)
    assert out.A.dtype == torch.float64


def test_A_is_in_the_working_dtype_for_half_inputs():
    m = PWTP(frames=4).to(torch.bfloat16)
    out = m(torch.randn(2, 4, 3, 16, 16).to(torch.bfloat16))
    assert out.A.dtype == torch.float32            # the solve's dtype: the tensor actually used
    (gA,) = torch.autograd.grad(out.enopr.mean(), out.A)
    assert gA.abs().sum() > 0


def test_projection_loss_is_the_float32_batch_mean():
    # Eq. 8: L_p is the plain mean of the per-segment ENoPR, reduced in (at least) float32.
    e = torch.tensor([0.1, 0.5, 0.3], dtype=torch.bfloat16)
    L = projection_loss(e)
    assert L.dtype == torch.float32 and L.dim() == 0
    assert abs(L.item() - e.float().mean().item()) < 1e-7
    assert projection_loss(e.double()).dtype == torch.float64
    m = PWTP(frames=4)
    out = m(torch.randn(3, 4, 3, 16, 16))
    torch.testing.assert_close(projection_loss(out.enopr), out.enopr.mean())
    with pytest.raises(ValueError, match="per-segment"):
        projection_loss(torch.ones(2, 3))


# ---------------------------------------------------------------------------------------------
# DA's DC gain s (dc_gain): not in the paper, derived from Eq. 1, 5 and 6
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("D", [1, 2])
def test_dc_gain_equals_its_projector_forms(D):
    # s = (1/T)||(I - P)1||^2 = T||w||^2, w = (1/T)(I - P)1, with P = A (A^T A)^-1 A^T formed explicitly.
    T, H, W = 6, 3, 4
    A = random_A(2, H, W, T, D, seed=D)
    s = dc_gain(A, ridge=0.0, per_pixel=True)
    assert s.shape == (2, H, W)
    one, I = torch.ones(T, dtype=torch.float64), torch.eye(T, dtype=torch.float64)
    for n in range(2):
        for h in range(H):
            for w_ in range(W):
                a = A[n, h, w_]                                   # (T, D)
                P = a @ torch.linalg.inv(a.T @ a) @ a.T
                r = (I - P) @ one
                w = r / T
                assert abs(s[n, h, w_].item() - (r @ r).item() / T) < 1e-12
                assert abs(s[n, h, w_].item() - T * (w @ w).item()) < 1e-12
                assert 0.0 <= s[n, h, w_].item() <= 1.0
    torch.testing.assert_close(dc_gain(A, ridge=0.0), s.flatten(1).mean(1))   # the default: mean per segment


@pytest.mark.parametrize("D", [1, 2])
def test_dc_gain_is_zero_when_the_constant_profile_is_in_the_subspace(D):
    A = random_A(2, 4, 4, 6, D)
    A[..., 0] = 3.0                                              # 1 (scaled) is a column of every A_n
    assert dc_gain(A, ridge=0.0).abs().max() < 1e-12
    assert dc_gain(A).abs().max() < 1e-5                         # the default ridge leaks a relative ~1e-6
    if D == 2:                                                   # 1 in span(A) without being a column
        B = random_A(2, 4, 4, 6, 2, seed=5)
        B[..., 1] = B[..., 0] + 2.0
        assert dc_gain(B, ridge=0.0).abs().max() < 1e-10


@pytest.mark.parametrize("D", [1, 2])
def test_da_of_a_static_clip_is_the_dc_gain_times_its_colour(D):
    # PWTP.forward on a clip whose frames are all equal: DA_n = s_n * colour_n at every pixel, with
    # s_n from the very bases (out.A) that forward predicted for this clip.
    torch.manual_seed(D)
    m = PWTP(frames=5, proj_dim=D).double()
    frame = torch.rand(3, 1, 3, 16, 24, dtype=torch.float64)
    out = m(frame.expand(3, 5, 3, 16, 24))
    s = dc_gain(out.A, per_pixel=True)                           # (N, H, W), forward's ridge
    torch.testing.assert_close(out.da, s[:, None] * frame[:, 0], rtol=1e-9, atol=1e-12)
    assert s.mean() > 0.05                                       # an untrained PWTP does leak


def test_mlp_bottleneck_keeps_the_state_dict_names():
    m = PWTP(frames=4, blocks=2)
    assert all(isinstance(b, MLPBottleneck) for b in m.blocks)
    assert {k for k in m.state_dict() if k.startswith("blocks.")} == {
        f"blocks.{i}.{layer}.{p}" for i in range(2) for layer, ps in
        (("bn", ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")),
         ("down", ("weight", "bias")), ("up", ("weight", "bias"))) for p in ps}
