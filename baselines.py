"""The rival one-frame motion representations of Table 6: RGB difference and the dynamic image.

Dynamic appearance (DA, `pwtp.py`) turns the T consecutive frames of a segment into ONE frame of the
same size and channel count. Table 6 of the paper compares it with two older ways of doing exactly
that, fed to the same backbone:

* RGB difference (TSN, Wang et al. 2016): differences of consecutive frames. Cheap, signed, and
  zero wherever nothing changes.
* The dynamic image (Bilen et al. 2018): approximate rank pooling, a fixed weighted sum of the
  frames whose weights increase with time, so the result "points" from the early frames to the late
  ones. Its weights sum to zero, so a static clip also gives zero.

Both are *fixed* linear maps over time, the same for every pixel of every video. DA is the learned,
pixel-wise, input-adaptive version: by Eq. 6 DA_n = sum_t w_{n,t} x_n^t with w_n = (1/T)(I - P_n) 1,
where the projector P_n is predicted from the clip itself (see EQUATIONS.md, Eq. 6). Looking at the
three side by side (`python visualize.py da`) is the quickest way to see what "adaptive" buys.

Shapes follow the rest of the repo: a batch of segments is x (N, T, C, H, W), N = batch * segments,
and each function returns one frame per segment, (N, C, H, W). The backbones' DA model imports this
file lazily for `--input rgbdiff` and `--input dynimg`.
"""
import torch


def _check_clip(x, name):
    # A clear error beats a cryptic broadcasting failure three calls later.
    if not torch.is_tensor(x) or x.dim() != 5:
        shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
        raise ValueError(f"baselines.{name}: expected a tensor of shape (N, T, C, H, W), got {shape}")
    if x.shape[1] < 2:
        raise ValueError(f"baselines.{name}: needs at least T=2 frames per segment to see any motion, "
                         f"got T={x.shape[1]} (shape {tuple(x.shape)})")
    if not x.is_floating_point():
        raise ValueError(f"baselines.{name}: expected a floating-point clip, got dtype {x.dtype} "
                         "(convert decoded uint8 frames with .float() first)")


def rgb_difference(x):
    """TSN's RGB difference, reduced to one frame: the mean of the T-1 consecutive differences.

        d_t  = x_{t+1} - x_t,                      t = 1 .. T-1
        RGBD = (1 / (T-1)) * sum_{t=1}^{T-1} d_t    # (N, C, H, W)

    x: (N, T, C, H, W) -> (N, C, H, W).

    The choice, and what it costs. TSN stacks the T-1 difference frames along the channel axis
    (3(T-1) channels) and widens the first convolution to match. Our backbones take the 3-channel
    frame every representation in this repo produces (that is the point of Table 6: the same
    backbone, the same input size), so the differences have to be pooled over time. We AVERAGE them
    (not sum) so the value range stays that of a single difference, whatever T is.

    Note that a sum of signed consecutive differences telescopes: the mean above equals
    (x_T - x_1) / (T-1) exactly. So this baseline sees where things were at the first frame and
    where they are at the last, and nothing in between -- as a fixed linear map over time its weights
    are (-1, 0, ..., 0, +1)/(T-1). Like the dynamic image (and DA at a static pixel) the weights sum
    to 0, so anything static cancels. We still compute it as the mean of the differences, not as the
    endpoint difference, so the code reads like the definition; the cost is negligible.
    """
    _check_clip(x, "rgb_difference")
    d = x[:, 1:] - x[:, :-1]  # (N, T-1, C, H, W): d_t = x_{t+1} - x_t
    return d.mean(dim=1)  # (N, C, H, W)


def rank_pool_weights(T, dtype=torch.float32, device=None):
    """Approximate rank pooling weights (Bilen et al. 2018) for T frames, i and j 1-based:

        w_i = sum_{j=i}^{T} (2j - T - 1) / j,          i = 1 .. T      # (T,)

    Why this form: rank pooling fits a linear function whose scores increase over time
    (<d, x_1> < <d, x_2> < ...) and keeps its parameters d as the video descriptor. Bilen et al.
    approximate the fit by ONE gradient step from d = 0, which turns out to be a fixed weighted sum
    of the frames with the weights above. The same weights in a closed form with harmonic numbers
    H_k = sum_{m<=k} 1/m are w_i = 2(T - i + 1) - (T + 1)(H_T - H_{i-1}) (the tests check the
    function against that form).

    Properties worth knowing:
    * sum_i w_i = sum_j (2j - T - 1) = 0, so a static clip pools to zero (like RGB difference).
    * the first frames get negative weights, the later ones positive weights (not monotonically:
      for T = 6, w = (-5.15, -0.15, 1.35, 1.68, 1.43, 0.83)); the big negative w_1 balances them.
    * the magnitude grows with T (sum_i i * w_i = (T^3 - T) / 12), so a dynamic image has a much
      larger range than a frame; the backbone's first BatchNorm absorbs the scale when it is
      trained, and `visualize.py` rescales it for display.

    Computed in float64 and cast, because the terms of the sum cancel heavily.
    """
    if int(T) != T or T < 1:
        raise ValueError(f"baselines.rank_pool_weights: T must be a positive integer, got {T!r}")
    T = int(T)
    j = torch.arange(1, T + 1, dtype=torch.float64)  # (T,) = 1 .. T
    terms = (2 * j - T - 1) / j  # (T,): term_j = (2j - T - 1) / j
    # w_i = sum_{j >= i} term_j: a reversed cumulative sum (suffix sums).
    w = torch.flip(torch.cumsum(torch.flip(terms, [0]), 0), [0])  # (T,)
    return w.to(dtype=dtype, device=device)


def dynamic_image(x):
    """The dynamic image of each segment by approximate rank pooling (Bilen et al. 2018):

        DI = sum_{i=1}^{T} w_i x_i,     w = rank_pool_weights(T)        # (N, C, H, W)

    x: (N, T, C, H, W) -> (N, C, H, W).

    Bilen et al. pool raw frames (and, in some variants, their square roots or a running average);
    we pool whatever the caller passes -- in training that is the ImageNet-normalised clip, the same
    input every other representation sees, so Table 6 stays a like-for-like comparison. Since the
    weights sum to zero, the per-channel normalisation offset (the mean) cancels anyway; only the
    per-channel scale (1/std) remains, and it is linear.
    """
    _check_clip(x, "dynamic_image")
    w = rank_pool_weights(x.shape[1], dtype=x.dtype, device=x.device)  # (T,)
    # Contract the time axis: (N, T, C, H, W) x (T,) -> (N, C, H, W).
    return torch.einsum("ntchw,t->nchw", x, w)
