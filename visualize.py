"""Pictures of dynamic appearance (Fig. 4, 6), of a training run (Fig. 3) and of the Eq. 13 schedule
(Fig. 8). Three subcommands, each writing one PNG:

    python visualize.py da --video FILE [--checkpoint RUN_DIR/best.pt] --out da.png
    python visualize.py curves --run RUN_DIR --out curves.png
    python visualize.py schedule --out schedule.png

`da` is the one to look at first. For each of S segments (T consecutive frames each, TSN's test-time
sampling) it draws one column, like the paper's Fig. 6 (DA beside the dynamic image):

    mean of the T frames   the "average of frames" the paper shows beside DA (Fig. 1, 4): what the
                           static appearance looks like, and where things moved (motion blur)
    DA                     the projection residual averaged over time (Eq. 5-6, pwtp.py)
    RGB difference         TSN's baseline (baselines.py), a fixed temporal contrast
    dynamic image          approximate rank pooling (baselines.py), another fixed contrast

The three last rows are SIGNED images (zero where nothing changes): drawn as the luminance of the
signed image with a diverging colour map (white = 0), or with `--display rgb` as RGB with 0 at
mid-grey. Where the PWTP comes from:
* with `--checkpoint`, the PWTP inside a trained model: DA as the jointly trained network sees it;
* without, a fresh PWTP fitted to this one clip by minimising ENoPR (Eq. 7-8) with Adam for
  `--fit-steps` steps: the "unsupervised" use of Sec. 1. No labels: "explain each pixel's temporal
  profile with a D-dimensional subspace, and show me what it could not explain". Any video works.

`curves` reads RUN_DIR/log.csv and metrics.json (written by train.py) and draws the two losses L_c
and L_p, the task weight (alpha of Eq. 12 or lambda of Eq. 13), validation accuracy with validation
ENoPR, and the L_c-L_p scatter coloured by step of Fig. 3: the paper's evidence that the two
objectives fall together early in training. Beside them, diagnostics that are not in the paper:
||g_c|| and ||g_p|| on PWTP, cos(g_c, g_p) (why MGDA's alpha can collapse), DA's DC gain s
(pwtp.dc_gain) and the learning rate. `schedule` draws Eq. 13 for several (a, b), like Fig. 8.

The figures' layout, colour scales, the run's file readers and the diagnostic panels are
support/plots.py.
"""
import argparse
import functools
import os
import sys

import numpy as np
import torch

import backbones
import baselines
import data
import mgda
from pwtp import PWTP
from support import plots
from support.checkpoints import load_checkpoint
from support.plots import plt, save  # noqa: F401  (matplotlib on Agg; the atomic save: experiments/ use both)


# ========== da: the clip =========================================================================
def load_clip(path, segments, frames, size):
    """Video file or frame folder -> (clip (S, T, 3, size, size) in [0, 1], starts, num_frames,
    header_frames), short side resized to `size`, centre crop.

    Sampling is TSN's test-time sparse sampling (data.sparse_indices, train=False), as the test
    protocol samples: S equal parts of the video, T consecutive frames from the middle of each.
    starts: the first frame of each segment. It counts the frames that really decode, not the
    header's count (support/plots.py says why); header_frames is the header's."""
    sample = functools.partial(data.sparse_indices, segments=segments, frames=frames, train=False)
    clip, idx, num, header = plots.read_clip(path, size, sample)     # decode, resize, centre crop
    starts = [int(i) for i in idx.reshape(segments, frames)[:, 0]]
    return clip.reshape(segments, frames, 3, size, size), starts, num, header


def normalise(x):
    """[0, 1] pixels -> ImageNet-normalised, as in training (data.normalize, which works in place:
    `da` still draws the [0, 1] clip, so it gets a copy)."""
    return data.normalize(x.clone())


# ========== da: where the PWTP comes from ========================================================
def fit_pwtp(x, steps, lr=3e-3, proj_dim=1, seed=0, log_every=50):
    """Fit a fresh PWTP to one clip by minimising ENoPR alone (Eq. 7-8): the unsupervised use.

    x: (S, T, C, H, W) normalised segments of ONE video. Returns (pwtp in eval mode, ENoPR history).
    Nothing but the clip is needed: PWTP learns, for every pixel, the D-dimensional temporal
    subspace that explains its profile best. The static part of the scene is explained perfectly
    (the all-ones direction), what moves is not, and that unexplained residual is DA.
    """
    torch.manual_seed(seed)
    pwtp = PWTP(frames=x.shape[1], proj_dim=proj_dim, in_channels=x.shape[2])
    opt = torch.optim.Adam(pwtp.parameters(), lr=lr)
    history = []
    pwtp.train()
    for step in range(steps):
        loss = pwtp(x).enopr.mean()  # L_p, Eq. 8: the mean ENoPR of the S segments
        if not torch.isfinite(loss):
            raise FloatingPointError(f"visualize.py da: ENoPR became {loss.item()} at fit step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        history.append(loss.item())
        if log_every and (step % log_every == 0 or step == steps - 1):
            print(f"fit step {step:4d}  ENoPR {loss.item():.4f}", file=sys.stderr)
    # Eval mode: the MLP's BatchNorm uses the running statistics it gathered on this very clip.
    return pwtp.eval(), history


def pwtp_from_checkpoint(path, ckpt=None):
    """Rebuild the trained model from train.py's checkpoint dict and return (model.pwtp, model)."""
    if ckpt is None:
        ckpt = load_checkpoint(path, "visualize.py da")
    model = backbones.model_from_checkpoint(ckpt).eval()
    if getattr(model, "input", None) != "da" or getattr(model, "pwtp", None) is None:
        raise ValueError(f"visualize.py da: --checkpoint {path!r} is a model with input="
                         f"{getattr(model, 'input', '?')!r}; it has no PWTP, so there is no DA to show")
    return model.pwtp, model


# ========== da: the representations and the figure ===============================================
def representations(pwtp, x):
    """x: (S, T, C, H, W) normalised -> DA and its two fixed rivals, (S, C, H, W) each, and the
    per-segment ENoPR (S,). PWTP adapts its subspace to every pixel of every clip (Eq. 2-4); RGB
    difference and dynamic image apply the same temporal weights everywhere."""
    with torch.no_grad():
        out = pwtp(x)
        return {
            "da": out.da,                               # (S, C, H, W), Eq. 6
            "rgbdiff": baselines.rgb_difference(x),     # (S, C, H, W)
            "dynimg": baselines.dynamic_image(x),       # (S, C, H, W)
            "enopr": out.enopr,                         # (S,), Eq. 7
        }


def plot_da(clip01, reps, starts, display="diverging", title="", dpi=100):
    """The `da` figure. clip01: (S, T, 3, H, W) in [0, 1]; reps: from `representations`. One
    column per segment; the DA row says each segment's ENoPR, how much of the clip is left
    unexplained."""
    S, T = clip01.shape[:2]
    rows = [("mean of the T frames\n(RGB)", clip01.mean(1), False),           # (S, 3, H, W) in [0, 1]
            ("dynamic appearance\n(PWTP residual, Eq. 6)", reps["da"], True),
            ("RGB difference\n(TSN, mean of diffs)", reps["rgbdiff"], True),
            ("dynamic image\n(approx. rank pooling)", reps["dynimg"], True)]
    heads = [f"segment {s + 1}\nframes {starts[s]}-{starts[s] + T - 1}" for s in range(S)]
    feet = {1: [f"ENoPR {e:.3f}" for e in reps["enopr"].tolist()]}
    return plots.image_rows(rows, heads, feet, display=display, title=title, dpi=dpi)   # layout, colour bars


def draw_da(x, pwtp, starts, out, title="", display="diverging", dpi=100):
    """The one path that draws a DA picture (`da` here, evaluate.py --video --da-png): the clip's four
    rows through `pwtp`, plotted and saved. x: (S, T, 3, H, W) ImageNet-normalised, as the model
    sees it, or uint8 pixels (a dataset item), normalised here as the model does; the mean row shows it
    back in [0, 1]. Returns the representations."""
    x = data.normalize(x) if x.dtype == torch.uint8 else x
    mean = torch.tensor(data.IMAGENET_MEAN).view(1, 1, 3, 1, 1)
    std = torch.tensor(data.IMAGENET_STD).view(1, 1, 3, 1, 1)
    reps = representations(pwtp, x)
    save(plot_da((x * std + mean).clamp(0, 1), reps, starts, display=display, title=title, dpi=dpi), out, dpi)
    return reps


def cmd_da(args):
    ckpt = load_checkpoint(args.checkpoint, "visualize.py da") if args.checkpoint else None
    plots.check_da_flags(args, ckpt)                   # bad values named; --size from the checkpoint
    T = args.frames
    if ckpt:
        pwtp, model = pwtp_from_checkpoint(args.checkpoint, ckpt)
        T = plots.check_frames(args, model.frames)     # the trained PWTP fixes T
    clip01, starts, num_frames, header = load_clip(args.video, args.segments, T, args.size)  # (S, T, 3, h, w)
    x = normalise(clip01)
    if ckpt:
        source = f"PWTP from {args.checkpoint}"
    else:
        torch.manual_seed(args.seed)
        pwtp, hist = fit_pwtp(x, args.fit_steps, lr=args.lr, proj_dim=args.proj_dim, seed=args.seed)
        source = (f"fresh PWTP (D={args.proj_dim}) fitted to this clip by ENoPR, {args.fit_steps} Adam steps"
                  + (f", ENoPR {hist[0]:.3f} -> {hist[-1]:.3f}" if hist else ""))
    title = (f"{os.path.basename(args.video)}: {args.segments} segments x {T} frames "
             f"of {plots.frame_count_text(num_frames, header)}, {args.size}x{args.size}; {source}")
    reps = draw_da(x, pwtp, starts, args.out, title=title, display=args.display, dpi=args.dpi)
    print(f"wrote {args.out}  (mean ENoPR {reps['enopr'].mean().item():.4f})")


# ========== curves: a training run and the Fig. 3 relation =======================================
def panel_accuracy(ax, metrics):
    """Validation accuracy per epoch, with the validation ENoPR on a second axis: whether lower L_p
    comes with higher accuracy, the relation Fig. 3 rests on."""
    if not metrics:
        plots.empty(ax, "no metrics.json yet\n(written after each epoch)")
        ax.set(title="validation accuracy", xlabel="epoch", ylabel="accuracy")
        return
    epochs = np.array([m.get("epoch", i) for i, m in enumerate(metrics)], dtype=float)
    acc_max = 0.0
    for key, name, c in (("val_top1", "top-1", "C0"), ("val_top5", "top-5", "C1"),
                         ("val_mean_class_acc", "mean class acc.", "C2")):
        y = plots.epoch_values(metrics, key)
        if np.isfinite(y).any():
            ax.plot(epochs, y, marker="o", color=c, label=name)
            acc_max = max(acc_max, float(np.nanmax(y)))
    enopr = plots.epoch_values(metrics, "val_enopr")
    if np.isfinite(enopr).any():
        plots.twin_axis(ax, epochs, enopr, "val ENoPR", "C3")       # one legend for both axes
    elif ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="best")
    # train.py may log accuracy as a fraction or in percent: label whichever the numbers are.
    ax.set(title="validation accuracy", xlabel="epoch", ylabel=f"accuracy ({'%' if acc_max > 1.0 else 'fraction'})")


def plot_curves(log, metrics, title="", dpi=100):
    """Nine panels: L_c, L_p, DA's DC gain (top); the task weight, the gradient norms, cos(g_c, g_p)
    with alpha (middle); the learning rate, validation accuracy, the L_c-L_p scatter of Fig. 3."""
    fig, axes = plt.subplots(3, 3, figsize=plots.CURVES_SIZE, dpi=dpi)
    step = log["step"]
    (ax_lc, ax_lp, ax_dc), (ax_weight, ax_grad, ax_cos), (ax_lr, ax_acc, ax_fig3) = axes
    plots.panel_series(ax_lc, step, log["loss_c"], "L_c (cross-entropy)", "C0", "recognition loss L_c", "no L_c logged")
    plots.panel_series(ax_lp, step, log["loss_p"], "L_p", "C1", "projection loss L_p (ENoPR, Eq. 7-8)",
                       "no L_p logged\n(input without PWTP)")
    plots.panel_weight(ax_weight, step, log)            # alpha of Eq. 12 or lambda of Eq. 13
    panel_accuracy(ax_acc, metrics)
    # Fig. 3: L_c against L_p at every logged step, coloured by step. A positive correlation (points
    # from the top right to the bottom left) means the two objectives fall together: L_p can help
    # recognition as an auxiliary task.
    ok = np.isfinite(log["loss_c"]) & np.isfinite(log["loss_p"])
    if ok.any():
        sc = ax_fig3.scatter(log["loss_p"][ok], log["loss_c"][ok], c=step[ok], cmap="viridis", s=10)
        fig.colorbar(sc, ax=ax_fig3).set_label("step")
    else:
        plots.empty(ax_fig3, "needs both L_c and L_p\n(a run with PWTP)")
    ax_fig3.set(title="L_c vs L_p over training (Fig. 3)", xlabel="L_p (ENoPR)", ylabel="L_c")
    # Not the paper: why and how fast PWTP moves (support/plots.py).
    plots.panel_dc_gain(ax_dc, step, log, metrics)
    plots.panel_gradient_norms(ax_grad, step, log)
    plots.panel_cos_alpha(ax_cos, step, log)
    plots.panel_series(ax_lr, step, log["lr"], "lr", "C4", "learning rate", "no learning rate logged", smooth=False)
    for ax in axes.flat:
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=12)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    return fig


def cmd_curves(args):
    if not os.path.isdir(args.run):
        raise SystemExit(f"visualize.py curves: --run {args.run!r} is not a directory")
    log = plots.read_log(os.path.join(args.run, "log.csv"))
    metrics = plots.read_metrics(os.path.join(args.run, "metrics.json"))
    fig = plot_curves(log, metrics, title=f"training run {os.path.abspath(args.run)}", dpi=args.dpi)
    save(fig, args.out, args.dpi)
    print(f"wrote {args.out}  ({len(log['step'])} log rows, {len(metrics or [])} epochs)")


# ========== schedule: Eq. 13 =====================================================================
DEFAULT_AB = ("1,1", "1,2", "1,0.5", "0.5,1", "0.5,4", "0.8,0.25")


def plot_schedule(steps, lam_max, lam_min, ab, dpi=100):
    """lambda(t) of Eq. 13 (mgda.scale_schedule) over t_max = `steps` for every (a, b) in ab: a is
    the fraction of training over which lambda decays, b how sharply."""
    fig, ax = plt.subplots(figsize=plots.SCHEDULE_SIZE, dpi=dpi)
    t = np.arange(steps + 1)
    for a, b in ab:
        lam = [mgda.scale_schedule(int(s), steps, lam_max, lam_min, a, b) for s in t]
        ax.plot(t, lam, lw=2, label=f"a = {a:g}, b = {b:g}")
    ax.axhline(lam_min, color="0.5", ls=":", lw=1)
    ax.set_title("Eq. 13 scale schedule (ours, see EQUATIONS.md; like the paper's Fig. 8)\n"
                 r"$\lambda(t) = \lambda_{min} + (\lambda_{max} - \lambda_{min})\,"
                 r"\left[\frac{1}{2}\left(1 + \cos\left(\pi \min\left(1, \frac{t}{a\,t_{max}}\right)"
                 r"\right)\right)\right]^{b}$", fontsize=10)
    ax.set(xlabel=f"training step t (t_max = {steps})",
           ylabel=r"$\lambda(t)$  (weight of $L_p$ in $L_c + \lambda L_p$)")
    ax.legend(title="a: fraction of training to decay over\nb: sharpness", fontsize=8, title_fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def cmd_schedule(args):
    if args.steps < 1:
        raise SystemExit("visualize.py schedule: --steps must be >= 1")
    fig = plot_schedule(args.steps, args.lam_max, args.lam_min, plots.parse_pairs(args.ab), dpi=args.dpi)
    save(fig, args.out, args.dpi)
    print(f"wrote {args.out}")


# ========== Command line =========================================================================
def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    d = sub.add_parser("da", help="mean frame / DA / RGB difference / dynamic image per segment",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    d.add_argument("--video", required=True, help="any video file PyAV can decode")
    d.add_argument("--checkpoint", default=None,
                   help="train.py checkpoint (RUN_DIR/best.pt); without it a fresh PWTP is fitted to the clip")
    d.add_argument("--segments", type=int, default=4, help="S: segments (columns)")
    d.add_argument("--frames", type=int, default=None,
                   help="T: consecutive frames per segment (default 8; a checkpoint fixes it)")
    d.add_argument("--size", type=int, default=None,
                   help="short side resize, then centre crop size^2 (default: the checkpoint's crop_size, else 112)")
    d.add_argument("--fit-steps", type=int, default=200, help="Adam steps minimising ENoPR (no checkpoint)")
    d.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate of the fit")
    d.add_argument("--proj-dim", type=int, default=1, help="D of the fitted PWTP")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--display", choices=("diverging", "rgb"), default="diverging",
                   help="signed images as luminance with a diverging map, or as grey-centred RGB")

    c = sub.add_parser("curves", help="L_c, L_p, alpha/lambda, LR, accuracy and the Fig. 3 scatter",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    c.add_argument("--run", required=True, help="RUN_DIR with log.csv (and metrics.json)")

    s = sub.add_parser("schedule", help="Eq. 13 for several (a, b), like Fig. 8",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    s.add_argument("--steps", type=int, default=1000, help="t_max: total training steps")
    s.add_argument("--lam-max", type=float, default=1.0)
    s.add_argument("--lam-min", type=float, default=0.0)
    s.add_argument("--ab", nargs="+", default=list(DEFAULT_AB), help="(a, b) pairs as a,b")
    for cmd, q in (("da", d), ("curves", c), ("schedule", s)):
        q.add_argument("--dpi", type=int, default=100)
        q.add_argument("--out", default=f"{cmd}.png")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.cmd == "da":
        args.frames_given = args.frames is not None
        if args.frames is None:
            args.frames = 8
    {"da": cmd_da, "curves": cmd_curves, "schedule": cmd_schedule}[args.cmd](args)


if __name__ == "__main__":
    try:
        main()
    except (FileNotFoundError, ValueError) as e:  # bad input: one clear line, not a traceback
        raise SystemExit(f"error: {e}")
