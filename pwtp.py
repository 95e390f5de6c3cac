"""Pixel-Wise Temporal Projection (PWTP): the paper's Sec. 3.1-3.2 and 3.4, Eq. 1-8.

Read this file beside Sec. 3 of the paper and EQUATIONS.md (every equation by its number, with
the function that implements it). The whole idea in three sentences:

  * Every pixel position n of a segment of T frames has a *temporal profile* x_n: a T x C matrix
    (row t = the colour of that pixel in frame t).
  * PWTP predicts, for every pixel, a small subspace A_n (T x D, D < T) of "what this pixel would
    look like if nothing moved" and projects x_n onto it (Eq. 1). The subspace is input-specific:
    it is computed from how the neighbourhood of n changes over time (Eq. 2-4).
  * What the subspace cannot explain, the projection residual e_n = x_n - x_hat_n (Eq. 5), is the
    *dynamic appearance*; averaged over the T frames it is one picture per segment (Eq. 6).
    The relative size of the residual, ENoPR (Eq. 7-8), is PWTP's own training loss L_p.

The file reads in the order the data flows, one section per equation:
    Eq. 2 (Phi, local aggregation) -> Eq. 3 (relation descriptor) -> Eq. 4 (MLP -> A_n)
    -> Eq. 1 (projection) -> Eq. 5 (residual) -> Eq. 6 (DA) -> Eq. 7-8 (ENoPR, L_p)
and ends with the module `PWTP`, whose forward runs them in that order.

Shapes used throughout (the paper's letters):
    N  = batch x segments       (PWTP runs on every segment independently)
    T  = frames per segment      D = dimension of the subspace (proj_dim), 1 <= D < T
    C  = image channels (3)      H, W = image size
    C' = conv channels (24)      H', W' = size after the strided conv (H/8, W/8 by default)
    L  = T(T-1)/2 frame pairs

Public API: `PWTP`, `PWTPOutput`, and the equation functions `local_aggregation` (Eq. 2),
`temporal_relation_descriptor` (Eq. 3), `upsample_bases` (Eq. 4), `project` (Eq. 1, with its
pieces `normal_equations` and `reconstruction`), `projection_residual` (Eq. 5), `dynamic_appearance`
(Eq. 6), `enopr` (Eq. 7) and `projection_loss` (Eq. 8, the L_p that training minimises); and
`dc_gain`, DA's static leak s, which is not in the paper but follows from Eq. 1, 5 and 6.
"""
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F


class PWTPOutput(NamedTuple):
    """Every intermediate of the paper, so a student can look at each one."""
    da: torch.Tensor        # (N, C, H, W)      dynamic appearance, Eq. 6
    x_hat: torch.Tensor     # (N, T, C, H, W)   projection of the clip on its subspaces, Eq. 1
    residual: torch.Tensor  # (N, T, C, H, W)   projection residual e = x - x_hat, Eq. 5
    A: torch.Tensor         # (N, H, W, T, D)   per-pixel subspace bases, Eq. 4; >= float32. Every
                            # other field is computed from this very tensor, so autograd.grad(loss, A) works
    enopr: torch.Tensor     # (N,)              ||E|| / ||X|| per segment, Eq. 7


# ---------------------------------------------------------------------------------------------
# Eq. 2: local spatial aggregation, U = Phi(X)
# ---------------------------------------------------------------------------------------------
# Why aggregate a neighbourhood first: a single pixel's colour over time cannot tell "an edge
# moved across me" from "the light changed"; a k x k neighbourhood can. Why one conv for every
# frame (no temporal kernel): the frames must be described alike, so that Eq. 3's frame-pair
# similarities compare like with like. The stride makes Eq. 3-4 cheap (the subspace varies slowly
# across space); Eq. 4 upsamples back to every pixel.
def local_aggregation(phi: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """Eq. 2: U = Phi(X), the same 2D conv (PWTP.phi: k x k, stride s, C' channels) on every frame.
    x: (N, T, C, H, W) -> u: (N, T, C', H', W'), H' = ceil(H / s) with padding k // 2."""
    N, T = x.shape[:2]
    u = phi(x.flatten(0, 1))                        # (N*T, C', H', W')   every frame alike
    return u.unflatten(0, (N, T))                   # (N, T, C', H', W')


# ---------------------------------------------------------------------------------------------
# Eq. 3: the temporal relation descriptor
# ---------------------------------------------------------------------------------------------
# Why dot products between *frames* (not between channels): the descriptor should say how the
# neighbourhood of m evolves in time -- which frames look alike and which differ -- and nothing
# about what the neighbourhood looks like. A static pixel gives a Gram matrix of equal entries, a
# pixel crossed by a moving edge gives a block pattern; the MLP of Eq. 4 reads that pattern and
# chooses the subspace. The diagonal (the frames' own energies) and the lower triangle (a copy of
# the upper one) carry no extra temporal relation, so they are dropped.
def temporal_relation_descriptor(u: torch.Tensor) -> torch.Tensor:
    """Eq. 3: r_m = [<u_m^i, u_m^j>]_{1 <= i < j <= T}, every pair of frames of position m.
    u: (N, T, C', H', W') (Eq. 2) -> r: (N, H', W', L), L = T(T-1)/2 pairs in ascending (i, j)."""
    N, T, Cp, Hp, Wp = u.shape
    u = u.permute(0, 3, 4, 1, 2)                    # (N, H', W', T, C')  one T x C' matrix per position
    gram = u @ u.transpose(-1, -2)                  # (N, H', W', T, T)   all frame-pair similarities at once
    i, j = torch.triu_indices(T, T, offset=1, device=u.device)  # the L pairs i < j, row-major = ascending (i, j)
    return gram[..., i, j]                          # (N, H', W', L)     one gather picks every pair


# ---------------------------------------------------------------------------------------------
# Eq. 4: an MLP turns each relation descriptor into T*D numbers, upsampled to one A_n per pixel
# ---------------------------------------------------------------------------------------------
# The MLP (Appendix C) is FC(L -> w), GELU, K `MLPBottleneck`s, FC(w -> T*D); its layers are built
# in PWTP.__init__ (they are parameters) and run in PWTP.subspaces, each position m on its own.

class MLPBottleneck(nn.Module):
    """One residual bottleneck block of Eq. 4's MLP (Appendix C): z <- z + FC_up(GELU(FC_down(BN(z)))).

    Not ResNet's bottleneck (backbones.Bottleneck): this one acts on the (M, w) feature vectors of
    the relation descriptors, one per position, with fully connected layers."""

    def __init__(self, width: int, ratio: float):
        super().__init__()
        hidden = int(ratio * width)                  # floor(rho * w)
        self.bn = nn.BatchNorm1d(width)              # BatchNorm, not LayerNorm (Appendix C)
        self.down = nn.Linear(width, hidden)
        self.up = nn.Linear(hidden, width)

    def forward(self, z):                            # z: (M, w), M = every position of every segment
        return z + self.up(F.gelu(self.down(self.bn(z))))


# Bilinear upsampling of the T*D maps gives neighbouring pixels smoothly varying subspaces, as the
# paper says; the subspace is thus decided at the conv's resolution.
def upsample_bases(maps: torch.Tensor, T: int, D: int, size) -> torch.Tensor:
    """Eq. 4, last step: maps (N, H', W', T*D), the MLP's output per position -> a (N, T, D, H, W),
    one T x D basis per pixel stored channels first (see Eq. 1's layout note): A_n = a[..., h, w]."""
    N, Hp, Wp, _ = maps.shape
    a = maps.permute(0, 3, 1, 2)                     # (N, T*D, H', W')   T*D maps
    if (Hp, Wp) != tuple(size):
        a = F.interpolate(a, size=tuple(size), mode="bilinear", align_corners=False)   # (N, T*D, H, W)
    return a.reshape(N, T, D, *size)                 # (N, T, D, H, W)    row t, column d of every A_n


# ---------------------------------------------------------------------------------------------
# Eq. 1: projection of every pixel's temporal profile onto its own subspace
# ---------------------------------------------------------------------------------------------
# Layout. The paper writes one small T x D matrix A_n per pixel. Stored that way, (N, H, W, T, D),
# the contractions over t become hundreds of thousands of tiny matrix products, which is slow on
# every device. Inside this file the bases live "channels first", a: (N, T, D, H, W), next to the
# clip x: (N, T, C, H, W), so every contraction over t is a broadcast multiply and a sum over
# dim 1: plain elementwise work over whole images. The public `A` (PWTPOutput.A) is the
# paper's layout, and PWTP.forward derives its working `a` from it (a permuted view).

#
# The inverse of Eq. 1 is never formed: beta solves the D x D *normal equations* (A^T A) beta = A^T x.
# A small ridge `ridge * mean(diag(A^T A)) * I` keeps the solve finite when the MLP happens to
# produce nearly dependent columns (the paper only asks that they be independent; nothing forces
# it). Relative to the scale of A, it shrinks a well-conditioned projection by ~1e-6 only, about
# float32's precision anyway.
def normal_equations(x: torch.Tensor, a: torch.Tensor, ridge: float = 1e-6):
    """Eq. 1's pieces per pixel: x (N, T, C, H, W), a (N, T, D, H, W), both >= float32 ->
    AtA (N, D, D, H, W) (no ridge), Atx (N, D, C, H, W), beta = (A^T A)^{-1} A^T x (N, D, C, H, W)."""
    D = a.shape[2]
    AtA = (a.unsqueeze(3) * a.unsqueeze(2)).sum(1)              # (N, D, D, H, W)   sum_t a_td a_te
    Atx = (a.unsqueeze(3) * x.unsqueeze(2)).sum(1)              # (N, D, C, H, W)   sum_t a_td x_tc
    scale = AtA.diagonal(dim1=1, dim2=2).mean(-1)               # (N, H, W)
    eye = torch.eye(D, device=a.device, dtype=a.dtype)[None, :, :, None, None]
    M = AtA + (ridge * scale + 1e-12)[:, None, None] * eye     # ridge-regularised, (N, D, D, H, W)
    if D == 1:                                                  # the paper's default: a division
        beta = Atx / M                                          # (N, 1, C, H, W)
    else:                                                       # M is SPD (the ridge): Cholesky
        L = torch.linalg.cholesky(M.permute(0, 3, 4, 1, 2))    # (N, H, W, D, D)
        beta = torch.cholesky_solve(Atx.permute(0, 3, 4, 1, 2), L).permute(0, 3, 4, 1, 2)  # (N, D, C, H, W)
    return AtA, Atx, beta


def reconstruction(a: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """Eq. 1: x_hat = A beta per pixel; a (N, T, D, H, W), beta (N, D, C, H, W) -> (N, T, C, H, W)."""
    return (a.unsqueeze(3) * beta.unsqueeze(1)).sum(2)


def project(x: torch.Tensor, A: torch.Tensor, ridge: float = 1e-6):
    """Eq. 1: beta_n = (A_n^T A_n)^{-1} A_n^T x_n,  x_hat_n = A_n beta_n = P_n x_n, for every pixel n.

    x: (N, T, C, H, W) the clip;  A: (N, H, W, T, D) one T x D basis per pixel, any D <= T.
    returns x_hat: (N, T, C, H, W) and beta: (N, H, W, D, C) (the mapping coefficients).

    Runs in at least float32, also for float16/bfloat16 inputs: the D x D system has squared
    entries, which overflow or lose every digit in half precision. See `normal_equations`.
    """
    work = torch.promote_types(torch.promote_types(x.dtype, A.dtype), torch.float32)
    a = A.to(work).permute(0, 3, 4, 1, 2)                       # (N, T, D, H, W)
    _, _, beta = normal_equations(x.to(work), a, ridge)
    x_hat = reconstruction(a, beta)                                    # (N, T, C, H, W)
    return x_hat.to(x.dtype), beta.permute(0, 3, 4, 1, 2).to(x.dtype)


# ---------------------------------------------------------------------------------------------
# Eq. 5: the projection residual
# ---------------------------------------------------------------------------------------------
# What the pixel's subspace cannot explain. Being (I - P_n) x_n it is orthogonal to every column of
# A_n (a test checks it): whatever A_n calls "static" is removed exactly, the rest is kept.
def projection_residual(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """Eq. 5: e_n = x_n - x_hat_n = (I_T - P_n) x_n, for every pixel.  (N, T, C, H, W) both."""
    return x - x_hat


# ---------------------------------------------------------------------------------------------
# Eq. 6: dynamic appearance
# ---------------------------------------------------------------------------------------------
def dynamic_appearance(residual: torch.Tensor) -> torch.Tensor:
    """Eq. 6: DA_n = (1/T) sum_t e_n^t -- one picture per segment.

    residual: (N, T, C, H, W) -> (N, C, H, W).

    Why averaging a residual is not trivially zero: e_n = (I - P_n) x_n, so DA_n = sum_t w_{n,t}
    x_n^t with w_n = (1/T)(I - P_n) 1. Those weights sum to (1/T)||(I - P_n) 1||^2 >= 0, which is
    0 exactly when the constant (static) direction 1 lies in the subspace of A_n. So DA is a
    per-pixel, input-adaptive temporal contrast of the frames -- a cousin of the dynamic image
    (whose weights also sum to 0; see baselines.py): static pixels vanish, changing pixels keep
    their moving appearance.

    PWTP.forward does NOT call this function: it computes the same DA from per-pixel sums,
    mean_t x_t - (mean_t a_t) beta, without the full residual (see the line marked "Eq. 6" in
    PWTP.forward). This is the definition; tests/test_pwtp.py checks that both agree, in value
    and in gradient.
    """
    return residual.mean(dim=1)


# ---------------------------------------------------------------------------------------------
# Eq. 7-8: ENoPR per segment and its batch mean L_p
# ---------------------------------------------------------------------------------------------
def enopr(x: torch.Tensor, residual: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Eq. 7: ENoPR = ||E||_2 / ||X||_2 per segment, norms over time, channels and space.

    x, residual: (N, T, C, H, W) -> (N,). The batch loss of Eq. 8 is `projection_loss` (the mean).

    Relative, not absolute: a bright, busy clip should not weigh more than a dark one, and the
    value reads as a fraction (0 = the subspace explains the clip, 1 = it explains nothing; the
    paper reports 0.08-0.72). `eps` keeps an all-black clip (||X|| = 0, hence E = 0) at 0 instead
    of 0/0, with a finite gradient.

    PWTP.forward does NOT call this function: it computes the same ENoPR from per-pixel sums,
    ||x - A beta||^2 = x.x - 2 beta.(A^T x) + beta.(A^T A) beta (see the line marked "Eq. 7" in
    PWTP.forward). This is the definition; tests/test_pwtp.py checks that both agree, in value
    and in gradient.
    """
    work = torch.promote_types(x.dtype, torch.float32)          # norms of half tensors overflow
    e = residual.to(work).flatten(1)                            # (N, T*C*H*W)
    X = x.to(work).flatten(1)
    return torch.linalg.vector_norm(e, dim=1) / torch.linalg.vector_norm(X, dim=1).clamp_min(eps)


# A plain mean over segments (not over videos): each segment is one projected clip of Eq. 7. Reduced
# in float32 (float64 stays float64) so that a half-precision run does not sum in half.
def projection_loss(enopr: torch.Tensor) -> torch.Tensor:
    """Eq. 8: L_p = (1/B) sum_b ||E_b|| / ||X_b||; enopr (B,) per segment (PWTPOutput.enopr) -> scalar."""
    if enopr.dim() != 1:
        raise ValueError(f"projection_loss: expected per-segment ENoPR of shape (B,), got {tuple(enopr.shape)}")
    return enopr.to(torch.promote_types(enopr.dtype, torch.float32)).mean()


# ---------------------------------------------------------------------------------------------
# DA's static leak: the DC gain s (not an equation of the paper; it follows from Eq. 1, 5 and 6)
# ---------------------------------------------------------------------------------------------
def dc_gain(A: torch.Tensor, ridge: float = 1e-6, per_pixel: bool = False) -> torch.Tensor:
    """The DC gain s of DA's per-pixel filter: the fraction of a pixel's *static* colour DA keeps.

    A: (N, H, W, T, D) per-pixel bases (PWTPOutput.A) -> (N,), the mean of s_n over the pixels of
    each segment; per_pixel=True: (N, H, W), s_n itself. `ridge` as in `normal_equations`, so
    s_n is exactly the gain PWTP.forward applies.

    Derivation (not an equation of the paper; it follows from Eq. 1, 5 and 6). Eq. 5-6 make DA a
    fixed linear filter of each pixel's T frames:
        DA_n = (1/T) 1^T (I - P_n) x_n = w_n^T x_n,   w_n = (1/T) (I - P_n) 1,   P_n = A_n (A_n^T A_n)^-1 A_n^T.
    A pixel whose colour c never changes has x_n = 1 c^T, so DA_n = (w_n^T 1) c = s_n c. Because
    I - P_n is a symmetric, idempotent projection,
        s_n = w_n^T 1 = (1/T) 1^T (I - P_n) 1 = (1/T) ||(I - P_n) 1||^2 = T ||w_n||^2   in [0, 1],
    and, through the normal equations of Eq. 1 (how it is computed here),
        s_n = 1 - (1/T) (A_n^T 1)^T (A_n^T A_n)^-1 (A_n^T 1).
    What DA can remove: the static colour exactly when the constant profile 1 lies in span(A_n)
    (then s_n = 0). What it cannot: otherwise a fraction s_n of the static colour passes into DA.
    Random isotropic bases give E[s_n] = 1 - D/T: an untrained PWTP's DA is close to the mean frame.
    The response to motion scales with ||w_n|| instead: a zero-mean change m (1^T m = 0) passes as
    w_n^T m <= ||w_n|| ||m|| (Cauchy-Schwarz). So the static leak *relative* to the motion response
    is s_n / ||w_n|| = T ||w_n|| = sqrt(T s_n): only a subspace that holds the constant direction
    (what L_p pulls towards) makes DA blind to the scene.
    What s is not: a measure of the scene in DA. s = T ||w_n||^2 is also DA's total filter energy,
    so s = 0 both when DA removes the still scene and when it removes everything, and textured
    background that moves (camera jitter) passes through w_n like any motion.
    """
    T = A.shape[3]
    work = torch.promote_types(A.dtype, torch.float32)
    a = A.to(work).permute(0, 3, 4, 1, 2)                       # (N, T, D, H, W)
    ones = torch.ones(a.shape[0], T, 1, *a.shape[3:], dtype=work, device=A.device)   # (N, T, 1, H, W)
    _, At1, beta = normal_equations(ones, a, ridge)             # (N, D, 1, H, W) each: A^T 1 and its solve
    s = 1.0 - (At1 * beta).sum((1, 2)) / T                      # (N, H, W)   1 - (1/T) 1^T P 1
    return s if per_pixel else s.flatten(1).mean(1)             # (N, H, W) or (N,)


# ---------------------------------------------------------------------------------------------
# The module: Eq. 2 -> 3 -> 4 -> 1 -> 5 -> 6 -> 7, in this order
# ---------------------------------------------------------------------------------------------
class PWTP(nn.Module):
    """Pixel-Wise Temporal Projection (Sec. 3.1-3.2): T frames in, one dynamic-appearance frame out.

    Defaults are the paper's (Sec. 4, Table 8 config #7): T = 8, D = 1, a 9 x 9 conv with stride 8
    and 24 channels, an MLP of expansion 2 with one bottleneck block of ratio 1/4: 9,686 parameters.
    """

    def __init__(self, frames=8, proj_dim=1, kernel_size=9, stride=8, channels=24, expansion=2,
                 bottleneck_ratio=0.25, blocks=1, in_channels=3):
        super().__init__()
        if frames < 2:
            raise ValueError(f"PWTP: frames (T) must be >= 2 to have a temporal relation, got {frames}")
        if not 1 <= proj_dim < frames:
            raise ValueError(f"PWTP: proj_dim (D) must satisfy 1 <= D < T = {frames}, got D = {proj_dim}; "
                             "D = T would explain every clip perfectly and leave no residual")
        self.frames, self.proj_dim = frames, proj_dim
        # Eq. 2: Phi, a per-frame 2D conv that aggregates a k x k neighbourhood (see local_aggregation).
        self.phi = nn.Conv2d(in_channels, channels, kernel_size, stride=stride,
                             padding=kernel_size // 2, bias=True)
        L = frames * (frames - 1) // 2               # number of frame pairs in Eq. 3
        width = int(expansion * L)                   # w = e * L
        # Eq. 4 / Appendix C: FC(L -> w), GELU, K bottlenecks, FC(w -> T*D). The last layer keeps
        # PyTorch's random init: a zero init would give A = 0, i.e. no subspace at all.
        self.fc_in = nn.Linear(L, width)
        self.blocks = nn.Sequential(*[MLPBottleneck(width, bottleneck_ratio) for _ in range(blocks)])
        self.fc_out = nn.Linear(width, frames * proj_dim)

    def subspaces(self, x: torch.Tensor) -> torch.Tensor:
        """Eq. 2-4: x (N, T, C, H, W) -> a (N, T, D, H, W), one T x D basis per pixel, stored
        channels first (see `normal_equations`); A of the paper is a.permute(0, 3, 4, 1, 2)."""
        N, T, C, H, W = x.shape
        u = local_aggregation(self.phi, x)           # (N, T, C', H', W')  Eq. 2
        r = temporal_relation_descriptor(u)          # (N, H', W', L)      Eq. 3
        Hp, Wp = r.shape[1:3]
        z = F.gelu(self.fc_in(r.flatten(0, 2)))      # (N*H'*W', w)        Eq. 4: the MLP sees each position alone
        z = self.blocks(z)
        maps = self.fc_out(z).view(N, Hp, Wp, T * self.proj_dim)       # (N, H', W', T*D)
        return upsample_bases(maps, T, self.proj_dim, (H, W))          # (N, T, D, H, W)   Eq. 4

    # Eq. 6 and 7 are computed from per-pixel sums: dynamic_appearance(residual) and
    # enopr(x, residual), the definitions above, are NOT called. The two lines so marked give the
    # same numbers and gradients (tests/test_pwtp.py checks it), but the losses then reach the
    # parameters through (N, D, C, H, W)-sized tensors only: the backward pass never touches a full
    # (N, T, C, H, W) tensor except to form A^T x, which keeps PWTP a small part of the step.
    # A is the paper's (N, H, W, T, D) tensor and the one node through which every output reaches
    # theta_p (the working view `a` is derived from it), so autograd.grad(loss, out.A) is dL/dA,
    # as mgda.py's bases space needs. It is cast first, so it is the tensor actually used.
    def forward(self, x: torch.Tensor) -> PWTPOutput:
        """x: (N, T, C, H, W) segments (N = batch x segments) -> PWTPOutput (see its fields)."""
        if x.dim() != 5 or x.shape[1] != self.frames:
            raise ValueError(f"PWTP expects segments of shape (N, T={self.frames}, C, H, W), got {tuple(x.shape)}")
        work = torch.promote_types(x.dtype, torch.float32)
        xw = x.to(work)                              # the solve in >= float32 (see project)
        A = self.subspaces(x).to(work).permute(0, 3, 4, 1, 2)   # (N, H, W, T, D)   Eq. 2-4
        a = A.permute(0, 3, 4, 1, 2)                 # (N, T, D, H, W)     a view of A, same storage
        AtA, Atx, beta = normal_equations(xw, a)     # (N, D, D/C, H, W)   Eq. 1
        x_hat = reconstruction(a, beta)                     # (N, T, C, H, W)     Eq. 1
        residual = projection_residual(xw, x_hat)    # (N, T, C, H, W)     Eq. 5

        # Eq. 6 and 7 from per-pixel sums (why: above this method)
        #   Eq. 6: mean_t e_t = mean_t x_t - (mean_t a_t) beta
        da = xw.mean(1) - (a.mean(1).unsqueeze(2) * beta).sum(1)                   # (N, C, H, W)
        #   Eq. 7: ||x - A beta||^2 = x.x - 2 beta.(A^T x) + beta.(A^T A) beta, per pixel
        xx = (xw * xw).sum((1, 2))                                                  # (N, H, W)
        AtA_beta = (AtA.unsqueeze(3) * beta.unsqueeze(1)).sum(2)                    # (N, D, C, H, W)
        e2 = (xx - (beta * (2 * Atx - AtA_beta)).sum((1, 2))).clamp_min(0)          # (N, H, W)
        enopr_ = e2.sum((1, 2)).clamp_min(1e-30).sqrt() / xx.sum((1, 2)).sqrt().clamp_min(1e-6)  # (N,)
        # (Eq. 8, the batch mean, is projection_loss(out.enopr), applied by the training loop.)
        return PWTPOutput(da=da.to(x.dtype), x_hat=x_hat.to(x.dtype), residual=residual.to(x.dtype),
                          A=A,                                      # (N, H, W, T, D), in the graph
                          enopr=enopr_)


if __name__ == "__main__":
    # A quick look: parameter count and cost of the default module, and DA of a random clip.
    from torch.utils.flop_counter import FlopCounterMode

    m = PWTP(frames=6)
    x = torch.randn(8, 6, 3, 224, 224)               # S = 8 segments of T = 6 frames, 224 x 224
    with FlopCounterMode(display=False) as fc:
        out = m(x)
    print(f"PWTP(T=6): {sum(p.numel() for p in m.parameters()):,} parameters, "
          f"{fc.get_total_flops() / 2 / 1e9:.3f} G multiply-adds for S=8 x 224^2 (paper: 0.23 G)")
    print("shapes:", {k: tuple(v.shape) for k, v in out._asdict().items()})
