"""Pictures of dynamic appearance, of a training run, and of the Eq. 13 scale schedule.

Three subcommands, each writing one PNG:

    python visualize.py da --video FILE [--checkpoint RUN_DIR/best.pt] --out da.png
    python visualize.py curves --run RUN_DIR --out curves.png
    python visualize.py schedule --out schedule.png

`da` is the one to look at first. For each of S segments (T consecutive frames each, TSN's test-time
sampling) it draws one column:

    mean of the T frames   the "average of frames" the paper shows beside DA (Fig. 1, 4): what the
                           static appearance looks like, and where things moved (motion blur)
    DA                     the projection residual averaged over time (Eq. 5-6, pwtp.py)
    RGB difference         TSN's baseline (baselines.py), a fixed temporal contrast
    dynamic image          approximate rank pooling (baselines.py), another fixed contrast

The three last rows are SIGNED images (they are zero where nothing changes), so they are drawn either
as the luminance of the signed image with a diverging colour map (white = 0, one colour bar per row,
symmetric range shared by the segments of that row), or, with `--display rgb`, as RGB with 0 mapped
to mid-grey and the row's range stretched to the display range. Each row title says which.

Where the PWTP comes from:
* with `--checkpoint`, the PWTP inside a trained model (train.py's checkpoint dict: "model",
  "model_config"), i.e. DA as the jointly trained network sees it;
* without, a fresh PWTP is fitted to this one clip by minimising ENoPR (Eq. 7-8) with Adam for
  `--fit-steps` steps. That is the "unsupervised" use of Sec. 1: no labels, just "explain each
  pixel's temporal profile with a D-dimensional subspace, and show me what it could not explain".
  It works on any video out of the box.

`curves` reads RUN_DIR/log.csv (its columns from its own header) and RUN_DIR/metrics.json (written
by train.py) and draws L_c, L_p, alpha or lambda, ||g_c|| and ||g_p|| on the PWTP parameters (log
scale), cos(g_c, g_p) beside alpha (the numbers that show whether and why MGDA's alpha collapses),
DA's DC gain s (how much static scene leaks into DA, pwtp.dc_gain), the learning rate and
validation accuracy over training, plus the L_c-L_p scatter coloured by step of Fig. 3 (the paper's
evidence that the two objectives are positively correlated early in training). `schedule` draws
Eq. 13 for several (a, b), like Fig. 8.

`da` samples from the frames that really decode (data.decodable_frames), not from the container
header's count, and its title states that count (and the header's, where they differ).

Figures have a fixed size in inches and are saved without tight cropping, so their pixel size is
predictable (the tests check it); `--dpi` scales them.
"""
import argparse
import csv
import json
import math
import os
import sys
import textwrap

import matplotlib

matplotlib.use("Agg")  # files only, no display: works on headless training machines
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

# data.py, the training loader, decodes, samples and normalises for `da`: a checkpoint's PWTP must see
# clips exactly as it saw them in training. (It imports PyAV; that costs `curves`/`schedule` ~40 ms of
# import time and nothing else: they never decode.)
import backbones  # noqa: E402  (a checkpoint rebuilt as the network it describes)
import data  # noqa: E402
# A checkpoint is read and checked the way evaluate.py reads it (one loader for both).
from support.checkpoints import load_checkpoint  # noqa: E402
from support.system import atomic_write  # noqa: E402  (a reader never sees half a PNG)

# Rec. 601 luma weights: the "luminance" of a signed RGB image is this weighted channel sum.
LUMA = (0.299, 0.587, 0.114)

# Layout of the `da` figure, in inches (pixels = inches * dpi): one PANEL square per image,
# a colour-bar column on the right, a band at the top for the title.
DA_PANEL, DA_CBAR, DA_TITLE, DA_LABEL = 2.0, 1.25, 1.0, 0.5
DA_ROWS = 4
CURVES_SIZE = (17.0, 13.5)
SCHEDULE_SIZE = (8.0, 5.0)


def da_figsize(segments):
    """(width, height) in inches of the `da` figure for S segments: S panels + label + colour bars."""
    return (DA_LABEL + DA_PANEL * segments + DA_CBAR, DA_TITLE + DA_PANEL * DA_ROWS)


def figure_pixels(figsize, dpi):
    """(height, width) in pixels of a saved figure: what imread returns as shape[:2]."""
    return int(round(figsize[1] * dpi)), int(round(figsize[0] * dpi))


# ---------------------------------------------------------------------------------------------
# Video -> clip
# ---------------------------------------------------------------------------------------------
def resize_short_side(img, size):
    """(H, W, 3) uint8 -> (H', W', 3) uint8 with min(H', W') = size (bilinear, antialiased).

    Kept here rather than data.crop_resize on data.eval_crop_boxes' centre square: on non-square
    videos that crops before resizing, which puts the crop a fraction of a pixel elsewhere."""
    H, W = img.shape[:2]
    scale = size / min(H, W)
    h, w = max(size, round(H * scale)), max(size, round(W * scale))
    x = img.permute(2, 0, 1)[None].float()  # (1, 3, H, W)
    x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=scale < 1)
    return x[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8)  # (h, w, 3)


def load_clip(path, segments, frames, size):
    """Video file or frame folder -> (clip, starts, num_frames, header_frames), decoded and sampled by
    data.py.

    clip: float (S, T, 3, size, size) in [0, 1] (short side resized to `size`, centre crop),
    starts: first frame index of each segment, num_frames: how many frames really decode
    (data.decodable_frames), header_frames: what the container header claims (data.count_frames).
    Sampling is TSN's test-time sparse sampling (data.sparse_indices(train=False)) over the DECODABLE
    count: a truncated download keeps its full header, and sampling from that would ask for frames
    that do not exist. The full decode that counts them costs as much as playing the video once,
    paid once per figure. data.read_frames then decodes only the S*T frames (seeking in long videos).
    Any failure is an error naming --video and the file: visualising one video, there is nothing
    sensible to skip to.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"visualize.py da: --video {path!r} does not exist")
    try:
        header = data.count_frames(path)
        F_ = data.decodable_frames(path)
        if F_ == 0:
            raise ValueError("no frame decodes")
        idx = data.sparse_indices(F_, segments, frames, train=False)  # (S*T,)
        raw = data.read_frames(path, idx, F_)  # (S*T, H, W, 3) uint8
    except Exception as e:  # PyAV errors have many classes; name the flag and the file
        raise ValueError(f"visualize.py da: cannot decode --video {path!r}: {e}") from e
    starts = [int(i) for i in idx.reshape(segments, frames)[:, 0]]
    clip = torch.stack([resize_short_side(torch.from_numpy(np.ascontiguousarray(f)), size)
                        for f in raw])  # (S*T, H', W', 3)
    H, W = clip.shape[1:3]
    top, left = (H - size) // 2, (W - size) // 2
    clip = clip[:, top:top + size, left:left + size]  # centre crop (S*T, size, size, 3)
    clip = clip.permute(0, 3, 1, 2).float().div(255)  # (S*T, 3, size, size) in [0, 1]
    return clip.reshape(segments, frames, 3, size, size), starts, F_, header


def frame_count_text(num_frames, header_frames):
    """What the `da` title says about the video's length: the decodable count, and the header's
    when it differs (a truncated file or a header that over-counts)."""
    if header_frames == num_frames:
        return f"{num_frames} frames"
    return f"{num_frames} frames decode (the header says {header_frames}; sampled from {num_frames})"


def normalise(x):
    """[0, 1] pixels, channel axis -3 -> ImageNet-normalised, as in training (data.normalize).

    data.normalize works in place; `da` still draws the [0, 1] clip, so it gets a copy."""
    return data.normalize(x.clone())


# ---------------------------------------------------------------------------------------------
# Where the PWTP comes from
# ---------------------------------------------------------------------------------------------
def fit_pwtp(x, steps, lr=3e-3, proj_dim=1, seed=0, log_every=50):
    """Fit a fresh PWTP to one clip by minimising ENoPR alone (Eq. 7-8): the unsupervised use.

    x: (S, T, C, H, W) normalised segments of ONE video. Returns (pwtp in eval mode, enopr history).
    Nothing but the clip is needed: PWTP learns, for every pixel, the D-dimensional temporal
    subspace that explains its profile best. The static part of the scene is explained perfectly
    (the all-ones direction), what moves is not, and that unexplained residual is DA.
    """
    from pwtp import PWTP

    torch.manual_seed(seed)
    pwtp = PWTP(frames=x.shape[1], proj_dim=proj_dim, in_channels=x.shape[2])
    opt = torch.optim.Adam(pwtp.parameters(), lr=lr)
    history = []
    pwtp.train()
    for step in range(steps):
        loss = pwtp(x).enopr.mean()  # L_p, Eq. 8
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


# ---------------------------------------------------------------------------------------------
# da
# ---------------------------------------------------------------------------------------------
def representations(pwtp, x):
    """x: (S, T, C, H, W) normalised -> dict of (S, C, H, W) tensors and the per-segment ENoPR."""
    import baselines

    with torch.no_grad():
        out = pwtp(x)
        return {
            "da": out.da,  # (S, C, H, W), Eq. 6
            "rgbdiff": baselines.rgb_difference(x),  # (S, C, H, W)
            "dynimg": baselines.dynamic_image(x),  # (S, C, H, W)
            "enopr": out.enopr,  # (S,)
        }


def _luminance(img):
    """(S, 3, H, W) signed -> (S, H, W): Rec. 601 weighted channel sum (still signed)."""
    w = torch.tensor(LUMA, dtype=img.dtype).view(1, 3, 1, 1)
    return (img * w).sum(1)


def _row_range(v):
    """Symmetric display range of a signed row: the 99.5th percentile of |v|, so a handful of
    extreme pixels do not wash everything else out; never 0 (a static clip is all zeros)."""
    r = float(np.percentile(np.abs(v), 99.5))
    return r if r > 0 else 1.0


def _row_colorbar(fig, r, S, im, vmax, display):
    """One colour bar for signed row r, right of its S panels, labelled with how the row is drawn."""
    W_in, H_in = da_figsize(S)
    cax = fig.add_axes([(DA_LABEL + S * DA_PANEL + 0.1) / W_in, (DA_PANEL * (DA_ROWS - 1 - r) + 0.15) / H_in,
                        0.15 / W_in, (DA_PANEL - 0.55) / H_in])
    if display == "diverging":
        cb = fig.colorbar(im, cax=cax)
        cb.set_label("signed luminance\n(normalised input units)", fontsize=7)
    else:
        # The RGB rows still get a scale: grey ramp from -vmax to +vmax.
        sm = matplotlib.cm.ScalarMappable(norm=matplotlib.colors.Normalize(-vmax, vmax), cmap="gray")
        cb = fig.colorbar(sm, cax=cax)
        cb.set_label("per-channel value\n(grey = 0)", fontsize=7)
    cb.ax.tick_params(labelsize=7)


def plot_da(clip01, reps, starts, display="diverging", title="", dpi=100):
    """Draw the `da` figure. clip01: (S, T, 3, H, W) in [0, 1]; reps: from `representations`."""
    S, T = clip01.shape[:2]
    fig = plt.figure(figsize=da_figsize(S), dpi=dpi)
    W_in, H_in = da_figsize(S)
    # Explicit axes positions (fractions of the figure) so nothing depends on tight_layout.
    def ax_at(row, col):
        left = (DA_LABEL + col * DA_PANEL + 0.05) / W_in
        bottom = (DA_PANEL * (DA_ROWS - 1 - row) + 0.05) / H_in
        return fig.add_axes([left, bottom, (DA_PANEL - 0.1) / W_in, (DA_PANEL - 0.35) / H_in])

    rows = [
        ("mean", "mean of the T frames\n(RGB)"),
        ("da", "dynamic appearance\n(PWTP residual, Eq. 6)"),
        ("rgbdiff", "RGB difference\n(TSN, mean of diffs)"),
        ("dynimg", "dynamic image\n(approx. rank pooling)"),
    ]
    how = ("luminance, diverging map, white = 0" if display == "diverging"
           else "RGB, 0 = grey, ±p99.5 stretched to display range")
    for r, (key, label) in enumerate(rows):
        if key == "mean":
            imgs = clip01.mean(1).permute(0, 2, 3, 1).clamp(0, 1).numpy()  # (S, H, W, 3)
            vmax = None
        elif display == "diverging":
            imgs = _luminance(reps[key]).numpy()  # (S, H, W) signed
            vmax = _row_range(imgs)
        else:
            v = reps[key].permute(0, 2, 3, 1).numpy()  # (S, H, W, 3) signed
            vmax = _row_range(v)
            imgs = np.clip(0.5 + 0.5 * v / vmax, 0, 1)
        im = None
        for s in range(S):
            ax = ax_at(r, s)
            if key != "mean" and display == "diverging":
                im = ax.imshow(imgs[s], cmap="RdBu_r", vmin=-vmax, vmax=vmax, interpolation="nearest")
            else:
                ax.imshow(imgs[s], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"segment {s + 1}\nframes {starts[s]}-{starts[s] + T - 1}", fontsize=9)
            if key == "da":
                ax.set_xlabel(f"ENoPR {reps['enopr'][s].item():.3f}", fontsize=8)
            if s == 0:
                ax.set_ylabel(label, fontsize=9)
        if key != "mean":
            _row_colorbar(fig, r, S, im, vmax, display)
    # Wrap the title to the figure width (~13 characters per inch at 10 pt) so it is never cut off.
    text = textwrap.fill(title, width=max(40, int(W_in * 13))) + f"\nsigned rows: {how}"
    fig.suptitle(text, fontsize=10, y=1 - 0.05 / H_in, va="top")
    return fig


def draw_da(x, pwtp, starts, out, title="", display="diverging", dpi=100):
    """The one path that draws a DA picture (`da` here, evaluate.py --video --da-png): the clip's four
    rows through `pwtp`, plotted and saved. x: (S, T, 3, H, W) ImageNet-normalised, as the model
    sees it; the mean row shows it back in [0, 1]. Returns the representations."""
    mean = torch.tensor(data.IMAGENET_MEAN).view(1, 1, 3, 1, 1)
    std = torch.tensor(data.IMAGENET_STD).view(1, 1, 3, 1, 1)
    reps = representations(pwtp, x)
    save(plot_da((x * std + mean).clamp(0, 1), reps, starts, display=display, title=title, dpi=dpi), out, dpi)
    return reps


def png_names(out, paths):
    """`out` for one video; else out's stem + "_" + each video's file stem (+ "_2", ... on repeats)."""
    if len(paths) == 1:
        return [out]
    stem, ext = os.path.splitext(out)
    names, used = [], set()
    for path in paths:
        name = base = f"{stem}_{os.path.splitext(os.path.basename(path))[0]}"
        n = 1
        while name in used:
            n += 1
            name = f"{base}_{n}"
        used.add(name)
        names.append(name + (ext or ".png"))
    return names


def cmd_da(args):
    ckpt = load_checkpoint(args.checkpoint, "visualize.py da") if args.checkpoint else None
    if args.size is None:
        # PWTP is convolutional and runs at any size, but its subspaces were learned at the
        # training crop: show DA at that scale unless told otherwise.
        args.size = int(ckpt["model_config"].get("crop_size", 112)) if ckpt else 112
    if args.segments < 1 or args.frames < 2 or args.size < 16:
        raise SystemExit("visualize.py da: need --segments >= 1, --frames >= 2 and --size >= 16")
    if args.fit_steps < 0:
        raise SystemExit("visualize.py da: --fit-steps must be >= 0")
    if args.checkpoint:
        pwtp, model = pwtp_from_checkpoint(args.checkpoint, ckpt)
        T = model.frames
        if args.frames_given and args.frames != T:
            raise SystemExit(f"visualize.py da: --frames {args.frames} but the checkpoint's PWTP was "
                             f"trained on T = {T} frames per segment; leave --frames out")
    else:
        T = args.frames
    clip01, starts, num_frames, header = load_clip(args.video, args.segments, T, args.size)  # (S, T, 3, h, w)
    x = normalise(clip01)  # (S, T, 3, h, w)
    if args.checkpoint:
        source = f"PWTP from {args.checkpoint}"
    else:
        torch.manual_seed(args.seed)
        pwtp, hist = fit_pwtp(x, args.fit_steps, lr=args.lr, proj_dim=args.proj_dim, seed=args.seed)
        source = (f"fresh PWTP (D={args.proj_dim}) fitted to this clip by ENoPR, {args.fit_steps} Adam steps"
                  + (f", ENoPR {hist[0]:.3f} -> {hist[-1]:.3f}" if hist else ""))
    title = (f"{os.path.basename(args.video)}: {args.segments} segments x {T} frames "
             f"of {frame_count_text(num_frames, header)}, {args.size}x{args.size}; {source}")
    reps = draw_da(x, pwtp, starts, args.out, title=title, display=args.display, dpi=args.dpi)
    print(f"wrote {args.out}  (mean ENoPR {reps['enopr'].mean().item():.4f})")


# ---------------------------------------------------------------------------------------------
# curves
# ---------------------------------------------------------------------------------------------
# The columns the panels draw. A log that lacks some of them (an older train.py) draws them as NaN.
PLOTTED = ("step", "loss_c", "loss_p", "dc_gain", "alpha", "lam", "phase", "gc_norm", "gp_norm", "cos", "lr")


def read_log(path):
    """log.csv -> dict column -> float array (NaN for empty cells), for every column its header
    names and every PLOTTED one. Missing file, or no step / loss_c column: a clear error."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"visualize.py curves: {path} not found (expected train.py's log.csv in --run)")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        header = list(reader.fieldnames or [])
        missing = [c for c in ("step", "loss_c") if c not in header]
        if missing:
            raise ValueError(f"visualize.py curves: {path} lacks column(s) {missing}; expected train.py's log.csv, "
                             f"whose header starts with step,epoch,loss_c,...")
        rows = list(reader)

    def num(v):
        try:
            return float(v) if v not in (None, "") else math.nan
        except ValueError:
            return math.nan

    return {c: np.array([num(r.get(c)) for r in rows], dtype=float) for c in dict.fromkeys(header + list(PLOTTED))}


def read_metrics(path):
    """metrics.json -> list of per-epoch dicts, or None if it is not there yet (an early run)."""
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            entries = json.load(f)  # not `data`: that name is the data.py module here
    except ValueError as e:        # a truncated or hand-edited file
        raise ValueError(f"visualize.py curves: {path} is not valid JSON ({e}); train.py rewrites it "
                         "at the next epoch end, or delete it to draw the log alone") from None
    if not isinstance(entries, list):
        raise ValueError(f"visualize.py curves: {path} should hold a list of per-epoch dicts")
    return entries


def _empty(ax, msg):
    ax.text(0.5, 0.5, msg, ha="center", va="center", transform=ax.transAxes, fontsize=10, color="0.4")


def _plot_series(ax, step, y, label, color, smooth=True):
    ok = np.isfinite(y)
    if ok.sum() == 0:
        return False
    ax.plot(step[ok], y[ok], color=color, lw=0.8 if smooth else 1.5,
            alpha=0.5 if (smooth and ok.sum() > 50) else 1.0,
            marker="." if ok.sum() <= 50 else None, label=label)
    if smooth and ok.sum() > 50:  # a running mean over ~1/25 of the run makes the trend readable
        k = max(2, ok.sum() // 25)
        smooth = np.convolve(y[ok], np.ones(k) / k, mode="valid")
        ax.plot(step[ok][k - 1:], smooth, color=color, lw=2, label=f"{label} (running mean {k})")
    return True


def _panel_weight(ax, step, log):
    """alpha (MGDA, Eq. 12) and lambda (constant / Eq. 13 schedule) share a panel: a run logs one."""
    has_a = _plot_series(ax, step, log["alpha"], "alpha (MGDA, Eq. 12)", "C2")
    has_l = _plot_series(ax, step, log["lam"], "lambda (L_c + lambda L_p)", "C3")
    if not (has_a or has_l):
        _empty(ax, "no alpha / lambda logged\n(strategy without one)")
    else:
        ax.legend(fontsize=8)
    ax.set(title="task weight: " + " & ".join(n for n, h in (("alpha", has_a), ("lambda", has_l)) if h)
           if (has_a or has_l) else "task weight", xlabel="step", ylabel="weight")


def _panel_gradient_norms(ax, step, log):
    """||g_c|| and ||g_p|| on the PWTP parameters (mgda.gradient_stats), log scale: they differ by
    orders of magnitude, and their ratio is what decides Eq. 12 (the shorter gradient wins)."""
    ok = [_plot_series(ax, step, log[k], name, c) for k, name, c in
          (("gc_norm", "||g_c|| (recognition)", "C0"), ("gp_norm", "||g_p|| (ENoPR)", "C1"))]
    positive = np.concatenate([log[k][np.isfinite(log[k]) & (log[k] > 0)] for k in ("gc_norm", "gp_norm")])
    if not any(ok):
        _empty(ax, "no gradient norms logged\n(no PWTP, or a log older than gc_norm/gp_norm)")
    else:
        if positive.size:                 # a log axis needs something above 0 to show
            ax.set_yscale("log")
        ax.legend(fontsize=8)
    ax.set(title="gradients on theta_p: ||g_c||, ||g_p|| (log scale)", xlabel="step", ylabel="norm")


def _panel_cos_alpha(ax, step, log):
    """cos(g_c, g_p) beside alpha. Eq. 12 gives alpha > 0 only when g_p.g_p > g_c.g_p, i.e. when
    cos < ||g_p|| / ||g_c||: with ||g_p|| << ||g_c|| only (near-)orthogonal or opposed gradients give
    recognition any weight on theta_p; otherwise alpha = 0, MGDA's collapse."""
    has_c = _plot_series(ax, step, log["cos"], "cos(g_c, g_p)", "C5")
    has_a = _plot_series(ax, step, log["alpha"], "alpha (MGDA, Eq. 12)", "C2")
    if not (has_c or has_a):
        _empty(ax, "no cos / alpha logged\n(no PWTP, or a strategy without them)")
    else:
        ax.axhline(0, color="0.5", lw=0.8, ls=":")
        ax.set_ylim(-1.05, 1.05)
        ax.legend(fontsize=8)
    ax.set(title="cos(g_c, g_p) and alpha", xlabel="step", ylabel="cosine / weight")


def _panel_accuracy(ax, metrics):
    """Validation accuracy per epoch, and the validation ENoPR on a second y axis."""
    if not metrics:
        _empty(ax, "no metrics.json yet\n(written after each epoch)")
        ax.set(title="validation accuracy", xlabel="epoch", ylabel="accuracy")
        return
    ep = np.array([m.get("epoch", i) for i, m in enumerate(metrics)], dtype=float)
    acc_max = 0.0
    for key, name, c in (("val_top1", "top-1", "C0"), ("val_top5", "top-5", "C1"),
                         ("val_mean_class_acc", "mean class acc.", "C2")):
        y = np.array([m.get(key) if m.get(key) is not None else np.nan for m in metrics], dtype=float)
        if np.isfinite(y).any():
            ax.plot(ep, y, marker="o", color=c, label=name)
            acc_max = max(acc_max, float(np.nanmax(y)))
    en = np.array([m.get("val_enopr") if m.get("val_enopr") is not None else np.nan
                   for m in metrics], dtype=float)
    handles = ax.get_legend_handles_labels()
    if np.isfinite(en).any():
        tw = ax.twinx()
        tw.plot(ep, en, marker="s", ls="--", color="C3", label="val ENoPR")
        tw.set_ylabel("val ENoPR (dashed)", color="C3")
        tw.tick_params(axis="y", colors="C3")
        h2 = tw.get_legend_handles_labels()     # one legend for both y axes
        tw.legend(handles[0] + h2[0], handles[1] + h2[1], fontsize=8, loc="best")
    elif handles[0]:
        ax.legend(*handles, fontsize=8, loc="best")
    # train.py may log accuracy as a fraction or in percent: label whichever the numbers are.
    ax.set(title="validation accuracy", xlabel="epoch", ylabel=f"accuracy ({'%' if acc_max > 1.0 else 'fraction'})")


def _panel_dc_gain(ax, step, log, metrics):
    """DA's DC gain s (pwtp.dc_gain): the fraction of a pixel's static colour that passes into DA.
    0 = DA blind to the scene (the constant profile lies in PWTP's subspace), 1 = DA is the mean
    frame. Per logged step from log.csv, and each epoch's mean over all its steps (metrics.json)."""
    has = _plot_series(ax, step, log["dc_gain"], "s per logged step", "C6")
    epochs = [(m["step"], m["dc_gain"]) for m in metrics or [] if m.get("dc_gain") is not None and "step" in m]
    if epochs:
        ax.plot(*zip(*epochs), marker="o", ls="--", color="C7", label="epoch mean (metrics.json)")
    if has or epochs:
        ax.legend(fontsize=8)
    else:
        _empty(ax, "no DC gain logged\n(input without PWTP, or an older log)")
    ax.set(title="DA's DC gain s: static colour leaking into DA", xlabel="step", ylabel="s")


def plot_curves(log, metrics, title="", dpi=100):
    """Nine panels: L_c, L_p, DA's DC gain (top); the task weight, the gradient norms, cos(g_c, g_p)
    with alpha (middle); the learning rate, validation accuracy, the L_c-L_p scatter of Fig. 3."""
    fig, axes = plt.subplots(3, 3, figsize=CURVES_SIZE, dpi=dpi)
    step = log["step"]
    (a_c, a_p, a_s), (a_w, a_g, a_cos), (a_lr, a_acc, a_sc) = axes

    if not _plot_series(a_c, step, log["loss_c"], "L_c", "C0"):
        _empty(a_c, "no L_c logged")
    a_c.set(title="recognition loss L_c", xlabel="step", ylabel="L_c (cross-entropy)")
    if not _plot_series(a_p, step, log["loss_p"], "L_p", "C1"):
        _empty(a_p, "no L_p logged\n(input without PWTP)")
    a_p.set(title="projection loss L_p (ENoPR, Eq. 7-8)", xlabel="step", ylabel="L_p")
    _panel_dc_gain(a_s, step, log, metrics)
    _panel_weight(a_w, step, log)
    _panel_gradient_norms(a_g, step, log)
    _panel_cos_alpha(a_cos, step, log)
    if not _plot_series(a_lr, step, log["lr"], "lr", "C4", smooth=False):
        _empty(a_lr, "no learning rate logged")
    a_lr.set(title="learning rate", xlabel="step", ylabel="lr")
    _panel_accuracy(a_acc, metrics)

    ok = np.isfinite(log["loss_c"]) & np.isfinite(log["loss_p"])
    if ok.any():
        sc = a_sc.scatter(log["loss_p"][ok], log["loss_c"][ok], c=step[ok], cmap="viridis", s=10)
        fig.colorbar(sc, ax=a_sc).set_label("step")
    else:
        _empty(a_sc, "needs both L_c and L_p\n(a run with PWTP)")
    a_sc.set(title="L_c vs L_p over training (Fig. 3)", xlabel="L_p (ENoPR)", ylabel="L_c")

    for ax in axes.flat:
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=12)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    return fig


def cmd_curves(args):
    if not os.path.isdir(args.run):
        raise SystemExit(f"visualize.py curves: --run {args.run!r} is not a directory")
    log = read_log(os.path.join(args.run, "log.csv"))
    metrics = read_metrics(os.path.join(args.run, "metrics.json"))
    fig = plot_curves(log, metrics, title=f"training run {os.path.abspath(args.run)}", dpi=args.dpi)
    save(fig, args.out, args.dpi)
    print(f"wrote {args.out}  ({len(log['step'])} log rows, {len(metrics or [])} epochs)")


# ---------------------------------------------------------------------------------------------
# schedule
# ---------------------------------------------------------------------------------------------
DEFAULT_AB = ("1,1", "1,2", "1,0.5", "0.5,1", "0.5,4", "0.8,0.25")


def plot_schedule(steps, lam_max, lam_min, ab, dpi=100):
    from mgda import scale_schedule

    fig, ax = plt.subplots(figsize=SCHEDULE_SIZE, dpi=dpi)
    t = np.arange(steps + 1)
    for a, b in ab:
        lam = [scale_schedule(int(s), steps, lam_max, lam_min, a, b) for s in t]
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
    ab = []
    for item in args.ab:
        try:
            a, b = (float(v) for v in item.split(","))
        except ValueError:
            raise SystemExit(f"visualize.py schedule: --ab expects pairs like 0.5,2 ; got {item!r}")
        ab.append((a, b))
    if args.steps < 1:
        raise SystemExit("visualize.py schedule: --steps must be >= 1")
    fig = plot_schedule(args.steps, args.lam_max, args.lam_min, ab, dpi=args.dpi)
    save(fig, args.out, args.dpi)
    print(f"wrote {args.out}")


# ---------------------------------------------------------------------------------------------
def save(fig, out, dpi):
    """Save atomically (temp file + rename) so a reader never sees half a PNG; no tight bbox, so the
    pixel size is figsize * dpi exactly."""
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    try:
        atomic_write(out, lambda tmp: fig.savefig(tmp, dpi=dpi, format="png"))
    finally:
        plt.close(fig)


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
    d.add_argument("--dpi", type=int, default=100)
    d.add_argument("--out", default="da.png")

    c = sub.add_parser("curves", help="L_c, L_p, alpha/lambda, LR, accuracy and the Fig. 3 scatter",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    c.add_argument("--run", required=True, help="RUN_DIR with log.csv (and metrics.json)")
    c.add_argument("--dpi", type=int, default=100)
    c.add_argument("--out", default="curves.png")

    s = sub.add_parser("schedule", help="Eq. 13 for several (a, b), like Fig. 8",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    s.add_argument("--steps", type=int, default=1000, help="t_max: total training steps")
    s.add_argument("--lam-max", type=float, default=1.0)
    s.add_argument("--lam-min", type=float, default=0.0)
    s.add_argument("--ab", nargs="+", default=list(DEFAULT_AB), help="(a, b) pairs as a,b")
    s.add_argument("--dpi", type=int, default=100)
    s.add_argument("--out", default="schedule.png")
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
