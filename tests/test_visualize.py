"""visualize.py writes readable PNGs of the right size, on a tiny synthetic video made here with PyAV."""
import csv
import json
import os

import av
import matplotlib.image as mpimg
import numpy as np
import pytest
import torch

import backbones
import data
import visualize
from support import plots, synthetic
from support.runlog import LOG_FIELDS

SIZE, FRAMES = 48, 24


def write_video(path, size=SIZE, frames=FRAMES, fps=12):
    """A red square sliding left to right over a fixed textured background (mpeg4, high quality)."""
    yy, xx = np.mgrid[0:size, 0:size]
    bg = np.stack([128 + 60 * np.sin(xx / 3.0), 128 + 60 * np.cos(yy / 4.0),
                   128 + 40 * np.sin((xx + yy) / 5.0)], -1).clip(0, 255).astype(np.uint8)
    sq = size // 4
    with av.open(path, "w") as c:
        s = c.add_stream("mpeg4", rate=fps)
        s.width = s.height = size
        s.pix_fmt = "yuv420p"
        s.options = {"qscale": "2"}
        for t in range(frames):
            img = bg.copy()
            x0 = int((size - sq) * t / (frames - 1))
            img[size // 2 - sq // 2: size // 2 + sq // 2, x0:x0 + sq] = (230, 40, 40)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return write_video(str(tmp_path_factory.mktemp("vid") / "square.mp4"))


def check_png(path, figsize, dpi):
    assert os.path.isfile(path) and os.path.getsize(path) > 1000
    img = mpimg.imread(path)
    assert img.shape[:2] == plots.figure_pixels(figsize, dpi)
    # Not a blank canvas: a readable figure has plenty of distinct pixel values.
    assert img[..., :3].std() > 0.05


def test_load_clip_shapes_and_range(video):
    clip, starts, n, header = visualize.load_clip(video, segments=3, frames=4, size=32)
    # TSN test-time sampling: tick = (F - T + 1) / S, start_k = int(tick/2 + tick*k):
    # F=24, T=4, S=3 -> tick 7 -> 3, 10, 17.
    assert starts == [3, 10, 17]
    assert n == header == FRAMES and len(starts) == 3
    assert clip.shape == (3, 4, 3, 32, 32) and clip.dtype == torch.float32
    assert 0.0 <= clip.min().item() and clip.max().item() <= 1.0
    # The square is red and moves right: in the last segment's frames the red mass is further right.
    red = (clip[:, :, 0] - clip[:, :, 1]).clamp(min=0).mean(1)  # (S, H, W)
    cols = torch.arange(32, dtype=torch.float32)
    centre = [(r.sum(0) * cols).sum() / r.sum() for r in red]
    assert centre[0] < centre[1] < centre[2]


def test_video_shorter_than_a_segment_still_gives_a_clip(tmp_path):
    # 3 frames, S=2 segments of T=8: both windows start at 0 and frames past the end repeat the last.
    short = write_video(str(tmp_path / "short.mp4"), frames=3)
    clip, starts, n, _ = visualize.load_clip(short, segments=2, frames=8, size=32)
    assert starts == [0, 0] and n == 3
    assert clip.shape == (2, 8, 3, 32, 32)
    for t in range(3, 8):
        torch.testing.assert_close(clip[:, t], clip[:, 2])


def test_truncated_video_is_sampled_and_titled_by_its_decodable_frames(tmp_path, monkeypatch):
    # A truncated download: the header still says 60 frames, far fewer decode. Sampling from the header
    # would ask for frames that do not exist; `da` samples from the decodable count and says it.
    path = str(tmp_path / "cut.avi")
    frames = np.random.default_rng(0).integers(0, 256, (60, 32, 32, 3)).astype(np.uint8)
    synthetic.write_video(path, frames, gop=10)
    blob = open(path, "rb").read()
    open(path, "wb").write(blob[: int(len(blob) * 0.4)])
    true = data.decodable_frames(path)
    assert data.count_frames(path) == 60 and 10 <= true < 40
    clip, starts, n, header = visualize.load_clip(path, segments=2, frames=4, size=32)
    assert (n, header) == (true, 60)
    assert starts == [int(i) for i in data.sparse_indices(true, 2, 4, train=False)[::4]]
    assert max(starts) + 1 < true
    titles = []
    real_plot = visualize.plot_da
    monkeypatch.setattr(visualize, "plot_da", lambda *a, **k: titles.append(k["title"]) or real_plot(*a, **k))
    visualize.main(["da", "--video", path, "--segments", "2", "--frames", "4", "--size", "32",
                    "--fit-steps", "1", "--dpi", "30", "--out", str(tmp_path / "cut.png")])
    assert f"{true} frames decode (the header says 60; sampled from {true})" in titles[0]
    assert plots.frame_count_text(24, 24) == "24 frames"


def test_normalisation_matches_the_training_loader(video):
    clip = visualize.load_clip(video, segments=2, frames=4, size=32)[0]
    before = clip.clone()
    x = visualize.normalise(clip)
    # ImageNet mean/std per channel, exactly as data.py normalises training clips ...
    mean = torch.tensor(data.IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(data.IMAGENET_STD).view(3, 1, 1)
    torch.testing.assert_close(x, (before - mean) / std)
    # ... and the [0, 1] clip the figure draws is left as it was (data.normalize works in place).
    assert torch.equal(clip, before)


def test_da_without_checkpoint_writes_png(video, tmp_path):
    out = str(tmp_path / "da.png")
    visualize.main(["da", "--video", video, "--segments", "2", "--frames", "4", "--size", "32",
                    "--fit-steps", "3", "--dpi", "40", "--out", out])
    check_png(out, plots.da_figsize(2), 40)


def test_da_rgb_display_writes_png(video, tmp_path):
    out = str(tmp_path / "da_rgb.png")
    visualize.main(["da", "--video", video, "--segments", "3", "--frames", "4", "--size", "32",
                    "--fit-steps", "2", "--display", "rgb", "--dpi", "30", "--out", out])
    check_png(out, plots.da_figsize(3), 30)


def test_fit_lowers_enopr_and_da_lives_on_the_moving_square(video):
    # The unsupervised use: fitting PWTP to one clip by ENoPR alone must lower ENoPR, and the
    # residual left over (DA) must be stronger where the square moves than on the static background.
    clip01 = visualize.load_clip(video, segments=2, frames=4, size=32)[0]
    x = visualize.normalise(clip01)
    pwtp, hist = visualize.fit_pwtp(x, steps=60, lr=1e-2, log_every=0)
    assert hist[-1] < 0.6 * hist[0]
    reps = visualize.representations(pwtp, x)
    da = reps["da"].abs().sum(1)  # (S, H, W)
    band = torch.zeros(32, dtype=torch.bool)
    band[12:20] = True  # the rows the square slides along (size/4 = 8 rows around the centre)
    assert da[:, band].mean() > 3 * da[:, ~band].mean()
    # RGB difference and dynamic image vanish on the static rows too (up to codec noise).
    for key in ("rgbdiff", "dynimg"):
        r = reps[key].abs().sum(1)
        assert r[:, band].mean() > 3 * r[:, ~band].mean()


def test_da_with_checkpoint_writes_png(video, tmp_path):
    model = backbones.build_model("tsm", 3, input="da", segments=2, frames=4, small=True, crop_size=32)
    ckpt = str(tmp_path / "best.pt")
    torch.save({"model": model.state_dict(), "model_config": model.config}, ckpt)
    out = str(tmp_path / "da_ckpt.png")
    visualize.main(["da", "--video", video, "--checkpoint", ckpt, "--segments", "2", "--size", "32",
                    "--dpi", "40", "--out", out])
    check_png(out, plots.da_figsize(2), 40)
    # The PWTP used is the checkpoint's: its weights equal the saved ones.
    pwtp, _ = visualize.pwtp_from_checkpoint(ckpt)
    for k, v in model.pwtp.state_dict().items():
        torch.testing.assert_close(pwtp.state_dict()[k], v)


def test_checkpoint_without_pwtp_is_a_clear_error(video, tmp_path):
    model = backbones.build_model("tsm", 3, input="rgb", segments=2, frames=4, small=True, crop_size=32)
    ckpt = str(tmp_path / "rgb.pt")
    torch.save({"model": model.state_dict(), "model_config": model.config}, ckpt)
    with pytest.raises(ValueError, match="no PWTP"):
        visualize.main(["da", "--video", video, "--checkpoint", ckpt, "--out", str(tmp_path / "x.png")])


def test_missing_video_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="--video"):
        visualize.main(["da", "--video", str(tmp_path / "nope.mp4"), "--out", str(tmp_path / "x.png")])


def fabricate_run(run, with_loss_p=True, with_metrics=True, rows=80):
    os.makedirs(run, exist_ok=True)
    rng = np.random.default_rng(0)
    with open(os.path.join(run, "log.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(LOG_FIELDS)
        for i in range(rows):
            s = 5 * i
            lc = 2 * np.exp(-s / 150) + 0.3 + rng.normal(0, 0.05)
            p = with_loss_p
            row = {"step": s, "epoch": s // 100, "loss_c": f"{lc:.4f}",
                   "loss_p": f"{0.6 * np.exp(-s / 100) + 0.15:.4f}" if p else "",
                   "dc_gain": f"{0.9 * np.exp(-s / 80) + 0.01:.4g}" if p else "",
                   "alpha": f"{0.4 + 0.1 * rng.random():.3f}" if p else "", "lam": "", "phase": "",
                   "gc_norm": f"{0.5 * np.exp(-s / 200):.4g}" if p else "",
                   "gp_norm": f"{2e-3 * np.exp(-s / 100):.4g}" if p else "",
                   "cos": f"{0.3 * np.cos(i / 7):.4f}" if p else "",
                   "lr": f"{0.01 * (1 - i / rows):.5f}", "clips_per_s": "10.0"}
            w.writerow([row[k] for k in LOG_FIELDS])
    if with_metrics:
        with open(os.path.join(run, "metrics.json"), "w") as f:
            json.dump([{"epoch": e, "step": 100 * (e + 1), "train_loss": 1.5 - 0.3 * e, "val_top1": 30 + 15 * e,
                        "dc_gain": (0.5 * 0.5 ** e) if with_loss_p else None,
                        "val_top5": 60 + 10 * e, "val_mean_class_acc": 28 + 15 * e,
                        "val_enopr": (0.5 - 0.08 * e) if with_loss_p else None} for e in range(4)], f)


@pytest.mark.parametrize("with_loss_p,with_metrics", [(True, True), (False, False)])
def test_curves_writes_png(tmp_path, with_loss_p, with_metrics):
    run = str(tmp_path / "run")
    fabricate_run(run, with_loss_p, with_metrics)
    out = str(tmp_path / "curves.png")
    visualize.main(["curves", "--run", run, "--dpi", "50", "--out", out])
    check_png(out, plots.CURVES_SIZE, 50)


def test_curves_draws_gradient_norms_on_a_log_scale_and_cos_with_alpha(tmp_path):
    run = str(tmp_path / "run")
    fabricate_run(run)
    log = plots.read_log(os.path.join(run, "log.csv"))
    assert set(log) == set(LOG_FIELDS) | set(plots.PLOTTED)
    fig = visualize.plot_curves(log, plots.read_metrics(os.path.join(run, "metrics.json")))
    by_title = {ax.get_title(): ax for ax in fig.axes}
    norms = by_title["gradients on theta_p: ||g_c||, ||g_p|| (log scale)"]
    assert norms.get_yscale() == "log"
    plotted = {ln.get_label(): ln.get_ydata() for ln in norms.get_lines()}
    np.testing.assert_allclose(plotted["||g_p|| (ENoPR)"], log["gp_norm"])
    cos = by_title["cos(g_c, g_p) and alpha"]
    labels = {ln.get_label() for ln in cos.get_lines()}
    assert {"cos(g_c, g_p)", "alpha (MGDA, Eq. 12)"} <= labels
    visualize.plt.close(fig)


def test_curves_draws_the_dc_gain_per_step_and_per_epoch(tmp_path):
    run = str(tmp_path / "run")
    fabricate_run(run)
    log = plots.read_log(os.path.join(run, "log.csv"))
    metrics = plots.read_metrics(os.path.join(run, "metrics.json"))
    fig = visualize.plot_curves(log, metrics)
    panel = {ax.get_title(): ax for ax in fig.axes}["DA's DC gain s: static colour leaking into DA"]
    lines = {ln.get_label(): ln for ln in panel.get_lines()}
    np.testing.assert_allclose(lines["s per logged step"].get_ydata(), log["dc_gain"])
    epoch = lines["epoch mean (metrics.json)"]
    assert list(epoch.get_xdata()) == [m["step"] for m in metrics]
    np.testing.assert_allclose(epoch.get_ydata(), [m["dc_gain"] for m in metrics])
    visualize.plt.close(fig)


def test_log_columns_come_from_the_files_own_header(tmp_path):
    # A column visualize.py does not know is read too; the panels' columns missing from the header are NaN.
    path = tmp_path / "log.csv"
    path.write_text("step,loss_c,extra\n1,2.0,7\n2,1.5,8\n")
    log = plots.read_log(str(path))
    assert log["extra"].tolist() == [7.0, 8.0] and set(plots.PLOTTED) <= set(log)
    assert np.isnan(log["dc_gain"]).all()
    with pytest.raises(ValueError, match="lacks column"):
        path.write_text("when,what\n1,2\n")
        plots.read_log(str(path))


def test_truncated_metrics_json_is_named(tmp_path):
    run = tmp_path / "run"
    fabricate_run(str(run))
    text = (run / "metrics.json").read_text()
    (run / "metrics.json").write_text(text[: len(text) // 2])           # what a full disk could leave
    with pytest.raises(ValueError, match=r"metrics\.json is not valid JSON"):
        visualize.main(["curves", "--run", str(run), "--out", str(tmp_path / "c.png")])


def test_old_log_without_the_new_columns_reads_as_nan(tmp_path):
    # A log.csv written before phase / gc_norm / gp_norm / cos existed still draws (those are NaN).
    path = tmp_path / "log.csv"
    path.write_text("step,epoch,loss_c,loss_p,alpha,lam,lr,clips_per_s\n0,1,2.0,0.5,0.3,,0.01,5\n")
    log = plots.read_log(str(path))
    assert log["loss_c"].tolist() == [2.0] and np.isnan(log["gc_norm"]).all() and np.isnan(log["phase"]).all()


def test_read_log_turns_empty_cells_into_nan(tmp_path):
    run = str(tmp_path / "run")
    fabricate_run(run, with_loss_p=False, with_metrics=False, rows=5)
    log = plots.read_log(os.path.join(run, "log.csv"))
    assert np.isnan(log["loss_p"]).all() and np.isnan(log["lam"]).all()
    np.testing.assert_array_equal(log["step"], [0, 5, 10, 15, 20])


def test_curves_without_log_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="log.csv"):
        visualize.main(["curves", "--run", str(tmp_path), "--out", str(tmp_path / "c.png")])


def test_schedule_writes_png(tmp_path):
    out = str(tmp_path / "schedule.png")
    visualize.main(["schedule", "--steps", "200", "--lam-min", "0.1", "--ab", "1,1", "0.5,2",
                    "--dpi", "50", "--out", out])
    check_png(out, plots.SCHEDULE_SIZE, 50)
