"""Properties of the Table 6 rival representations (baselines.py), checked against forms derived by
hand rather than against the code itself."""

import pytest
import torch

import baselines


def harmonic(k):
    # H_k = sum_{m=1}^k 1/m, H_0 = 0.
    return sum(1.0 / m for m in range(1, k + 1))


@pytest.mark.parametrize("T", [1, 2, 3, 6, 8, 16])
def test_rank_pool_weights_match_harmonic_closed_form(T):
    # Bilen et al.'s form: w_i = 2(T - i + 1) - (T + 1)(H_T - H_{i-1}).
    expected = torch.tensor([2 * (T - i + 1) - (T + 1) * (harmonic(T) - harmonic(i - 1))
                             for i in range(1, T + 1)], dtype=torch.float64)
    w = baselines.rank_pool_weights(T, dtype=torch.float64)
    assert w.shape == (T,)
    torch.testing.assert_close(w, expected, rtol=0, atol=1e-12)


def test_rank_pool_weights_known_values():
    # T = 2 by hand: j=1 term (2-3)/1 = -1, j=2 term (4-3)/2 = 1/2 -> w = (-1/2, 1/2).
    torch.testing.assert_close(baselines.rank_pool_weights(2, dtype=torch.float64),
                               torch.tensor([-0.5, 0.5], dtype=torch.float64))


@pytest.mark.parametrize("T", [2, 4, 6, 8, 16, 32])
def test_rank_pool_weights_sum_to_zero(T):
    # sum_i w_i = sum_j (2j - T - 1) = T(T+1) - T(T+1) = 0.
    assert abs(baselines.rank_pool_weights(T, dtype=torch.float64).sum().item()) < 1e-9


@pytest.mark.parametrize("T", [2, 4, 6, 8, 16])
def test_dynamic_image_of_linear_ramp_equals_closed_form(T):
    # Frames x_t = t * c. Swapping the sums,
    #   DI = sum_i i w_i c = sum_j (2j-T-1)/j * (sum_{i<=j} i) c = sum_j (2j-T-1)(j+1)/2 c
    #      = T(T+1)(T-1)/12 * c = (T^3 - T)/12 * c.
    g = torch.Generator().manual_seed(T)
    c = torch.randn(3, 5, 7, generator=g, dtype=torch.float64)  # (C, H, W)
    t = torch.arange(1, T + 1, dtype=torch.float64).view(1, T, 1, 1, 1)
    x = t * c  # (1, T, C, H, W)
    x = torch.cat([x, -2 * x], dim=0)  # (2, T, C, H, W): a second clip to check the batch axis
    di = baselines.dynamic_image(x)
    assert di.shape == (2, 3, 5, 7)
    coef = (T ** 3 - T) / 12.0
    torch.testing.assert_close(di[0], coef * c, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(di[1], -2 * coef * c, rtol=1e-10, atol=1e-10)


def test_dynamic_image_of_static_clip_is_zero():
    c = torch.rand(2, 1, 3, 8, 8)
    x = c.expand(2, 6, 3, 8, 8).contiguous()
    assert baselines.dynamic_image(x).abs().max().item() < 1e-5


def test_rgb_difference_of_static_clip_is_zero():
    c = torch.rand(4, 1, 3, 9, 11)
    x = c.expand(4, 8, 3, 9, 11).contiguous()  # (N, T, C, H, W), every frame the same
    d = baselines.rgb_difference(x)
    assert d.shape == (4, 3, 9, 11)
    assert d.abs().max().item() == 0.0


def test_rgb_difference_of_ramp_is_the_step_and_telescopes():
    # x_t = t * c: every consecutive difference is c, so their mean is c; the mean of the
    # differences also equals the endpoint difference (x_T - x_1) / (T - 1).
    T = 6
    c = torch.randn(3, 4, 4, dtype=torch.float64)
    x = (torch.arange(1, T + 1, dtype=torch.float64).view(1, T, 1, 1, 1) * c)
    torch.testing.assert_close(baselines.rgb_difference(x)[0], c)
    y = torch.randn(3, T, 3, 4, 4, dtype=torch.float64)
    torch.testing.assert_close(baselines.rgb_difference(y), (y[:, -1] - y[:, 0]) / (T - 1))


def test_shapes_and_dtype_follow_input():
    x = torch.randn(5, 8, 3, 16, 12)
    for f in (baselines.rgb_difference, baselines.dynamic_image):
        out = f(x)
        assert out.shape == (5, 3, 16, 12) and out.dtype == torch.float32
    x = x.double()
    assert baselines.dynamic_image(x).dtype == torch.float64


def test_gradients_flow():
    # Used as model inputs inside DAModel: they must be differentiable, plain torch ops.
    x = torch.randn(2, 4, 3, 5, 5, requires_grad=True)
    (baselines.dynamic_image(x).sum() + baselines.rgb_difference(x).sum()).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("bad", [torch.zeros(3, 3, 8, 8), torch.zeros(2, 1, 3, 4, 4),
                                 torch.zeros(2, 4, 3, 4, 4, dtype=torch.uint8)])
def test_bad_input_gives_clear_error(bad):
    for f in (baselines.rgb_difference, baselines.dynamic_image):
        with pytest.raises(ValueError, match="baselines"):
            f(bad)
    with pytest.raises(ValueError, match="rank_pool_weights"):
        baselines.rank_pool_weights(0)
