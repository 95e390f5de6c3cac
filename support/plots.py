"""visualize.py's machinery, not the paper: reading one video into a clip for a picture; the `da`
figure's grid of image rows with its colour scales and fixed layout; the readers of a run's log.csv
and metrics.json; the diagnostic panels of `curves`; checks of visualize.py's flags; the atomic PNG
save.

Figures have a fixed size in inches and are saved without tight cropping, so their pixel size is
predictable (figure_pixels; the tests check it); `--dpi` scales them.
"""
import csv
import json
import math
import os
import textwrap

import matplotlib

matplotlib.use("Agg")  # files only, no display: works on headless training machines
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from support.decode import count_frames, decodable_frames, read_frames  # noqa: E402
from support.system import atomic_write  # noqa: E402  (a reader never sees half a PNG)

# Rec. 601 luma weights: the "luminance" of a signed RGB image is this weighted channel sum.
LUMA = (0.299, 0.587, 0.114)

# Layout of the `da` figure, in inches (pixels = inches * dpi): one PANEL square per image, a label
# column on the left, a colour-bar column on the right, a band at the top for the title.
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


def save(fig, out, dpi):
    """Save atomically (temp file + rename) so a reader never sees half a PNG; no tight bbox, so the
    pixel size is figsize * dpi exactly."""
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    try:
        atomic_write(out, lambda tmp: fig.savefig(tmp, dpi=dpi, format="png"))
    finally:
        plt.close(fig)


# ---------------------------------------------------------------------------------------------
# One video -> one clip
# ---------------------------------------------------------------------------------------------
def resize_short_side(img, size):
    """(H, W, 3) uint8 -> (H', W', 3) uint8 with min(H', W') = size (bilinear, antialiased).

    Not data.crop_resize on data.eval_crop_boxes' centre square: on non-square videos that crops
    before resizing, which puts the crop a fraction of a pixel elsewhere."""
    H, W = img.shape[:2]
    scale = size / min(H, W)
    h, w = max(size, round(H * scale)), max(size, round(W * scale))
    x = img.permute(2, 0, 1)[None].float()  # (1, 3, H, W)
    x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=scale < 1)
    return x[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8)  # (h, w, 3)


def read_clip(path, size, sample):
    """Video file or frame folder -> (clip, indices, num_frames, header_frames).

    sample(num_frames) -> the frame indices to take (the caller's sampling). It is given the count of
    frames that really decode (decodable_frames), not the container header's (count_frames): a
    truncated download keeps its full header, and sampling from that would ask for frames that do
    not exist. The full decode that counts them costs one playing of the video, once per figure;
    read_frames then decodes only the sampled frames. clip: float (len(indices), 3, size, size) in
    [0, 1], the short side resized to `size`, centre crop. Any failure is an error naming --video:
    drawing one video, there is nothing sensible to skip to."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"visualize.py da: --video {path!r} does not exist")
    try:
        header, num = count_frames(path), decodable_frames(path)
        if num == 0:
            raise ValueError("no frame decodes")
        idx = sample(num)
        raw = read_frames(path, idx, num)  # (len(idx), H, W, 3) uint8
    except Exception as e:  # PyAV errors have many classes; name the flag and the file
        raise ValueError(f"visualize.py da: cannot decode --video {path!r}: {e}") from e
    clip = torch.stack([resize_short_side(torch.from_numpy(np.ascontiguousarray(f)), size) for f in raw])
    H, W = clip.shape[1:3]
    top, left = (H - size) // 2, (W - size) // 2
    clip = clip[:, top:top + size, left:left + size]  # centre crop (n, size, size, 3)
    return clip.permute(0, 3, 1, 2).float().div(255), idx, num, header  # (n, 3, size, size) in [0, 1]


def frame_count_text(num_frames, header_frames):
    """What the `da` title says about the video's length: the decodable count, and the header's
    when it differs (a truncated file or a header that over-counts)."""
    if header_frames == num_frames:
        return f"{num_frames} frames"
    return f"{num_frames} frames decode (the header says {header_frames}; sampled from {num_frames})"


def check_da_flags(args, ckpt):
    """`da`'s flags named when out of range; --size defaults to the checkpoint's training crop (its
    PWTP runs at any size, but learned its subspaces at that scale), else 112."""
    if args.size is None:
        args.size = int(ckpt["model_config"].get("crop_size", 112)) if ckpt else 112
    if args.segments < 1 or args.frames < 2 or args.size < 16:
        raise SystemExit("visualize.py da: need --segments >= 1, --frames >= 2 and --size >= 16")
    if args.fit_steps < 0:
        raise SystemExit("visualize.py da: --fit-steps must be >= 0")


def check_frames(args, frames):
    """T = `frames`, the checkpoint's: its PWTP fixes T, and --frames may only repeat it."""
    if args.frames_given and args.frames != frames:
        raise SystemExit(f"visualize.py da: --frames {args.frames} but the checkpoint's PWTP was "
                         f"trained on T = {frames} frames per segment; leave --frames out")
    return frames


# ---------------------------------------------------------------------------------------------
# The `da` figure: rows of S images, signed rows with one colour scale each
# ---------------------------------------------------------------------------------------------
def luminance(img):
    """(S, 3, H, W) signed -> (S, H, W): Rec. 601 weighted channel sum (still signed)."""
    w = torch.tensor(LUMA, dtype=img.dtype).view(1, 3, 1, 1)
    return (img * w).sum(1)


def row_range(v):
    """Symmetric display range of a signed row: the 99.5th percentile of |v|, so a handful of
    extreme pixels do not wash everything else out; never 0 (a static clip is all zeros)."""
    r = float(np.percentile(np.abs(v), 99.5))
    return r if r > 0 else 1.0


def row_colorbar(fig, r, S, im, vmax, display):
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


def display_images(imgs, signed, display):
    """imgs (S, 3, H, W) -> (what imshow draws per segment, vmax). Unsigned: RGB in [0, 1], vmax None.
    Signed, "diverging": luminance (S, H, W) for a diverging map of range +-vmax; "rgb": the row's
    range stretched to [0, 1] with 0 at mid-grey."""
    if not signed:
        return imgs.permute(0, 2, 3, 1).clamp(0, 1).numpy(), None       # (S, H, W, 3)
    if display == "diverging":
        lum = luminance(imgs).numpy()                                     # (S, H, W) signed
        return lum, row_range(lum)
    v = imgs.permute(0, 2, 3, 1).numpy()                                  # (S, H, W, 3) signed
    vmax = row_range(v)
    return np.clip(0.5 + 0.5 * v / vmax, 0, 1), vmax


def image_rows(rows, heads, feet, display="diverging", title="", dpi=100):
    """The `da` figure: rows = [(label, images (S, 3, H, W), signed)], one panel per segment;
    heads: S titles over the first row; feet: {row: S texts under its panels}. Signed rows get one
    colour bar each and a symmetric range shared by their S panels. Explicit axes positions
    (fractions of the figure) so nothing depends on tight_layout."""
    S = len(heads)
    W_in, H_in = da_figsize(S)
    fig = plt.figure(figsize=(W_in, H_in), dpi=dpi)
    for r, (label, imgs, signed) in enumerate(rows):
        shown, vmax = display_images(imgs, signed, display)
        for s in range(S):
            ax = fig.add_axes([(DA_LABEL + s * DA_PANEL + 0.05) / W_in, (DA_PANEL * (DA_ROWS - 1 - r) + 0.05) / H_in,
                               (DA_PANEL - 0.1) / W_in, (DA_PANEL - 0.35) / H_in])
            if signed and display == "diverging":
                im = ax.imshow(shown[s], cmap="RdBu_r", vmin=-vmax, vmax=vmax, interpolation="nearest")
            else:
                im = ax.imshow(shown[s], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(heads[s] if r == 0 else "", fontsize=9)
            ax.set_xlabel(feet[r][s] if r in feet else "", fontsize=8)
            ax.set_ylabel(label if s == 0 else "", fontsize=9)
        if signed:
            row_colorbar(fig, r, S, im, vmax, display)
    how = ("luminance, diverging map, white = 0" if display == "diverging"
           else "RGB, 0 = grey, ±p99.5 stretched to display range")
    # Wrap the title to the figure width (~13 characters per inch at 10 pt) so it is never cut off.
    text = textwrap.fill(title, width=max(40, int(W_in * 13))) + f"\nsigned rows: {how}"
    fig.suptitle(text, fontsize=10, y=1 - 0.05 / H_in, va="top")
    return fig


# ---------------------------------------------------------------------------------------------
# A run's files: log.csv and metrics.json
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
            entries = json.load(f)
    except ValueError as e:        # a truncated or hand-edited file
        raise ValueError(f"visualize.py curves: {path} is not valid JSON ({e}); train.py rewrites it "
                         "at the next epoch end, or delete it to draw the log alone") from None
    if not isinstance(entries, list):
        raise ValueError(f"visualize.py curves: {path} should hold a list of per-epoch dicts")
    return entries


# ---------------------------------------------------------------------------------------------
# The panels of `curves`
# ---------------------------------------------------------------------------------------------
def empty(ax, msg):
    """A panel with nothing to draw says why, in grey, in its middle."""
    ax.text(0.5, 0.5, msg, ha="center", va="center", transform=ax.transAxes, fontsize=10, color="0.4")


def series(ax, step, y, label, color, smooth=True):
    """Plot the finite points of y over step; False when there are none. Over 50 points: faint, with a
    running mean over ~1/25 of the run on top, which makes the trend readable."""
    ok = np.isfinite(y)
    if ok.sum() == 0:
        return False
    ax.plot(step[ok], y[ok], color=color, lw=0.8 if smooth else 1.5,
            alpha=0.5 if (smooth and ok.sum() > 50) else 1.0,
            marker="." if ok.sum() <= 50 else None, label=label)
    if smooth and ok.sum() > 50:
        k = max(2, ok.sum() // 25)
        mean = np.convolve(y[ok], np.ones(k) / k, mode="valid")
        ax.plot(step[ok][k - 1:], mean, color=color, lw=2, label=f"{label} (running mean {k})")
    return True


def panel_series(ax, step, y, ylabel, color, title, missing, smooth=True):
    """One logged quantity over the steps, or the text `missing` when the run logged none."""
    if not series(ax, step, y, ylabel, color, smooth):
        empty(ax, missing)
    ax.set(title=title, xlabel="step", ylabel=ylabel)


def panel_weight(ax, step, log):
    """alpha (MGDA, Eq. 12) and lambda (constant / Eq. 13 schedule) share a panel: a run logs one."""
    has_a = series(ax, step, log["alpha"], "alpha (MGDA, Eq. 12)", "C2")
    has_l = series(ax, step, log["lam"], "lambda (L_c + lambda L_p)", "C3")
    if not (has_a or has_l):
        empty(ax, "no alpha / lambda logged\n(strategy without one)")
    else:
        ax.legend(fontsize=8)
    ax.set(title="task weight: " + " & ".join(n for n, h in (("alpha", has_a), ("lambda", has_l)) if h)
           if (has_a or has_l) else "task weight", xlabel="step", ylabel="weight")


def panel_gradient_norms(ax, step, log):
    """||g_c|| and ||g_p|| on the PWTP parameters, log scale: they differ by orders of magnitude,
    and their ratio is what decides Eq. 12 (the shorter gradient wins)."""
    ok = [series(ax, step, log[k], name, c) for k, name, c in
          (("gc_norm", "||g_c|| (recognition)", "C0"), ("gp_norm", "||g_p|| (ENoPR)", "C1"))]
    positive = np.concatenate([log[k][np.isfinite(log[k]) & (log[k] > 0)] for k in ("gc_norm", "gp_norm")])
    if not any(ok):
        empty(ax, "no gradient norms logged\n(no PWTP, or a log older than gc_norm/gp_norm)")
    else:
        if positive.size:                 # a log axis needs something above 0 to show
            ax.set_yscale("log")
        ax.legend(fontsize=8)
    ax.set(title="gradients on theta_p: ||g_c||, ||g_p|| (log scale)", xlabel="step", ylabel="norm")


def panel_cos_alpha(ax, step, log):
    """cos(g_c, g_p) beside alpha. Eq. 12 gives alpha > 0 only when g_p.g_p > g_c.g_p, i.e. when
    cos < ||g_p|| / ||g_c||: with ||g_p|| << ||g_c|| only (near-)orthogonal or opposed gradients give
    recognition any weight on theta_p; otherwise alpha = 0, MGDA's collapse."""
    has_c = series(ax, step, log["cos"], "cos(g_c, g_p)", "C5")
    has_a = series(ax, step, log["alpha"], "alpha (MGDA, Eq. 12)", "C2")
    if not (has_c or has_a):
        empty(ax, "no cos / alpha logged\n(no PWTP, or a strategy without them)")
    else:
        ax.axhline(0, color="0.5", lw=0.8, ls=":")
        ax.set_ylim(-1.05, 1.05)
        ax.legend(fontsize=8)
    ax.set(title="cos(g_c, g_p) and alpha", xlabel="step", ylabel="cosine / weight")


def panel_dc_gain(ax, step, log, metrics):
    """DA's DC gain s (pwtp.dc_gain): the fraction of a pixel's static colour that passes into DA.
    0 = DA blind to the scene (the constant profile lies in PWTP's subspace), 1 = DA is the mean
    frame. Per logged step from log.csv, and each epoch's mean over all its steps (metrics.json)."""
    has = series(ax, step, log["dc_gain"], "s per logged step", "C6")
    epochs = [(m["step"], m["dc_gain"]) for m in metrics or [] if m.get("dc_gain") is not None and "step" in m]
    if epochs:
        ax.plot(*zip(*epochs), marker="o", ls="--", color="C7", label="epoch mean (metrics.json)")
    if has or epochs:
        ax.legend(fontsize=8)
    else:
        empty(ax, "no DC gain logged\n(input without PWTP, or an older log)")
    ax.set(title="DA's DC gain s: static colour leaking into DA", xlabel="step", ylabel="s")


def epoch_values(metrics, key):
    """metrics.json's `key` per epoch as a float array, NaN where an epoch lacks it."""
    return np.array([m.get(key) if m.get(key) is not None else np.nan for m in metrics], dtype=float)


def twin_axis(ax, x, y, label, color):
    """y on a second y axis at the right of ax (dashed), with one legend for both axes."""
    handles = ax.get_legend_handles_labels()
    tw = ax.twinx()
    tw.plot(x, y, marker="s", ls="--", color=color, label=label)
    tw.set_ylabel(f"{label} (dashed)", color=color)
    tw.tick_params(axis="y", colors=color)
    h2 = tw.get_legend_handles_labels()
    tw.legend(handles[0] + h2[0], handles[1] + h2[1], fontsize=8, loc="best")


def parse_pairs(items):
    """`schedule`'s --ab: "a,b" strings -> [(a, b)] floats; a malformed one is named."""
    pairs = []
    for item in items:
        try:
            a, b = (float(v) for v in item.split(","))
        except ValueError:
            raise SystemExit(f"visualize.py schedule: --ab expects pairs like 0.5,2 ; got {item!r}") from None
        pairs.append((a, b))
    return pairs
