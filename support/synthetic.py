"""The synthetic motion set: the project's own benchmark, written as real encoded videos in UCF101's
official layout, so that everything else (layouts, decoding, the loaders) reads it like a real dataset.

It is built so that the paper's claim can FAIL on it (Sec. 1: "many videos labeled with different action
categories are shot in the same environment"; DA "filters out the static information considered unrelated
to motion"). Two parts:
  splits 1-3  scene-balanced: every class shows every background about equally often, in training and in
              test; only motion tells classes apart (the paper's Fig. 1 situation).
  splits 4/5  static-bias: in training, background k goes with class k for a fraction `bias` (0.9) of the
              videos of class k (the others show the backgrounds of other classes). Split 4 tests on an
              in-distribution list with the same correlation, split 5 (same training list) on a
              bias-conflicting list where EVERY video shows the background of another class. A model that
              learnt the background shortcut scores high on split 4 and below chance on split 5; one that
              reads motion scores alike on both. (Our construction, after the static-bias splits of e.g.
              StillMix / SCUBA; the paper reports no such test.)
The static cue is the background alone. The moving object's own look (shape, colour) is, in the paper's
words, "appearance information relating to movement" that DA keeps by design, so tying it to the class
would test something the paper does not claim; it is drawn independently of class and background.

What makes the motion harder to read than one big object crossing the frame (on which every
representation is right at once, so the set would separate nothing):
  * a small object (radius size/10): few pixels carry the motion;
  * the object moves during a random sub-interval of the clip only ([t0, t1], t0 <= 0.25, t1 >= 0.75)
    and is still before and after, so some sampled segments hold no class motion;
  * a distractor: a hollow ring of one fixed look in every video, moving at half the object's speed and
    turning at random every frame (DISTRACTOR_TURN), so it goes nowhere in particular. Motion energy alone
    does not point at the actor: a model has to tell a consistent motion from a wandering one. Its look is
    the same for every class and its path is random: it carries no class information;
  * camera jitter (a random walk of the camera window): it moves the background too, so the background's
    texture leaks into frame differences, as camera shake does in real videos.
Everything a video shows besides its background and object look (object path, scale, timing, distractor
path, jitter) comes from one generator seeded by (seed, class, video number), never from the background,
so motion is drawn the same way whatever the cue. Split 6's crossed videos come in motion groups: the
`classes` videos of a group share one generator (the group's first video's number) and one object look,
so they show the same motion and differ only in background; an aligned and a conflicting video of one
group then differ in nothing but the cue. Same arguments -> byte-identical files.

Videos are mpeg4 .avi files, as UCF101 ships (lossy), or, with image_format="png", lossless frame folders
that carry the video's file name (v_..._c01.avi/000001.png, ...; support/prepare.py's convention, which
every layout reads like the video), so the lists and synth_meta.json name the same paths either way.
regenerate_video redraws one written video with its actor and ring masks (what a pixel shows: the object,
the distractor, or the background), e.g. to measure where a model looks.

    python data.py synth --out DIR [--png]   (or automatically, on first use, at default_synthetic_root())
"""
import itertools
import json
import math
import os
import re
import shutil
import tempfile
from fractions import Fraction
from typing import NamedTuple

import av
import numpy as np
import torch
import torch.nn.functional as F
from av.video.reformatter import VideoReformatter
from PIL import Image  # Pillow: what support/decode.py reads frame images with (matplotlib depends on it)

_YUV = VideoReformatter()  # one converter for re-encoded frames that are not yuv420p


def encodable_rate(fps):
    """`fps` as a Fraction whose time base 1/fps every encoder accepts: MPEG-4 part 2 stores the time base
    in 16 bits, so a rate like 1000000/66667 (a real AVI's) is refused; its time base is then rescaled to
    the nearest fraction with a denominator <= 65535 (15 fps for that one: a few parts in a million).
    Common rates (25, 30000/1001) are unchanged."""
    rate = Fraction(fps).limit_denominator(10 ** 9)
    if rate <= 0:
        raise ValueError(f"frame rate {fps}: must be > 0")
    return rate if rate.numerator <= 65535 else 1 / (1 / rate).limit_denominator(65535)


def write_video(path, frames, fps=25, codec="mpeg4", gop=12, bit_rate=None, options=None):
    """Encode `frames` into `path` with PyAV: uint8 arrays (H, W, 3) (an (N, H, W, 3) array is fine) or
    decoded av.VideoFrames (re-encoding: frame n gets time stamp n/fps whatever it had, so the output has
    one frame per 1/fps on a regular grid in every container), H and W even. mpeg4 in .avi is what UCF101
    ships; the default bit rate is generous so small patterns survive; `options` (e.g. x264's
    {"crf": "18"}) replace the bit rate. A key frame every `gop` frames. Single-threaded encoder so the
    same frames give the same bytes. Returns the count."""
    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        raise ValueError(f"{path}: no frames to write")
    h, w = (first.height, first.width) if isinstance(first, av.VideoFrame) else first.shape[:2]
    if h % 2 or w % 2:
        raise ValueError(f"frame size {w}x{h}: yuv420p needs even width and height")
    rate, n = encodable_rate(fps), 0
    with av.open(path, "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.codec_context.time_base = 1 / rate  # frame n at time stamp n: real, increasing time stamps
        if options:
            stream.options = dict(options)
        else:
            stream.bit_rate = bit_rate or max(200_000, int(w * h * rate * 2))
        stream.codec_context.gop_size = gop
        stream.codec_context.thread_count = 1
        for f in itertools.chain([first], frames):
            if isinstance(f, av.VideoFrame):
                f = f if f.format.name == "yuv420p" else _YUV.reformat(f, format="yuv420p", threads=1)
            else:
                f = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")
            f.pts, f.time_base = n, 1 / rate
            for pkt in stream.encode(f):
                container.mux(pkt)
            n += 1
        for pkt in stream.encode():
            container.mux(pkt)
    return n


def write_frames(folder, frames):
    """Each frame (uint8 (H, W, 3)) as folder/000001.png, 000002.png, ...: lossless, so decode.FrameFolder
    (which reads the names in natural order) gives back exactly these arrays. Pillow writes no time stamp
    into a PNG: the same frames give the same bytes. A folder already there is replaced, as write_video
    replaces a file, so no frame of an older, longer video stays behind. Returns the count."""
    if os.path.isdir(folder):
        shutil.rmtree(folder)
    os.makedirs(folder)
    for n, frame in enumerate(frames, 1):
        Image.fromarray(np.ascontiguousarray(frame, dtype=np.uint8)).save(os.path.join(folder, f"{n:06d}.png"))
    return len(frames)


# Motion classes: (name, trajectory). A trajectory maps u in [0, 1] (progress of the motion) and per-video
# parameters to the object centre (x, y) in pixels of the canvas and a scale factor. Start points are drawn
# so that, at any single frame, every class puts the object anywhere in a similar central region at
# similar sizes: only the motion (across frames) tells classes apart, as in the paper's Fig. 1.
def _traj(name, u, p):
    a = p["amp"]
    if name == "MoveRight":
        return p["x"] - a / 2 + a * u, p["y"], p["s"]
    if name == "MoveLeft":
        return p["x"] + a / 2 - a * u, p["y"], p["s"]
    if name == "MoveDown":
        return p["x"], p["y"] - a / 2 + a * u, p["s"]
    if name == "MoveUp":
        return p["x"], p["y"] + a / 2 - a * u, p["s"]
    if name == "Circle":
        ang = p["phase"] + 2 * math.pi * u
        return p["x"] + a / 2 * math.cos(ang), p["y"] + a / 2 * math.sin(ang), p["s"]
    if name == "Pulse":
        return p["x"], p["y"], p["s"] * (1 + 0.45 * math.sin(p["phase"] + 4 * math.pi * u))
    if name == "Shake":
        return p["x"] + a / 3 * math.sin(p["phase"] + 6 * math.pi * u), p["y"], p["s"]
    if name == "Diagonal":
        return p["x"] - a / 2 + a * u, p["y"] - a / 2 + a * u, p["s"]
    raise ValueError(name)


MOTIONS = ("MoveRight", "MoveLeft", "MoveUp", "MoveDown", "Circle", "Pulse", "Shake", "Diagonal")
SYNTH_SPRITES = 3  # object looks shared by all classes (the backgrounds: one per class, see synthetic_pool)
DISTRACTOR_LOOK = (3, (235, 235, 235))  # shape 3 = hollow ring, light grey: no object ever looks like it
SYNTH_BIAS = 0.9  # static-bias split: fraction of a class's training videos that show the class's background
# 1-3 scene-balanced, 4/5 static-bias (see the top of this file); 6, written only when asked for
# (crossed > 0): the static-bias training list, tested on every class crossed with every background.
SYNTH_SPLITS = (1, 2, 3, 4, 5, 6)
# Std of the distractor's change of heading per frame (rad). 1.5: successive steps keep only
# exp(-1.5^2 / 2) = 0.32 of their direction, so over 32 frames the ring's net travel is about a quarter of
# its path length, while the actor's is all of it (our choice).
DISTRACTOR_TURN = 1.5
# The ring's speed and radius relative to the object's: slower and smaller than the actor, so that a model
# can single out the actor, but only by telling a consistent motion from a wandering one. As fast and as
# large as the actor, the ring hides it; without a ring, motion energy alone names the class (our choice).
DISTRACTOR_SPEED = 0.5
DISTRACTOR_SIZE = 0.6


def synthetic_pool(seed, canvas, backgrounds):
    """The shared pool: `backgrounds` textured images (canvas, canvas, 3) uint8 (one per class: background
    k is "the cue of class k" in the static-bias split) and SYNTH_SPRITES object looks (shape id, RGB
    colour). A background is a smooth colour field around its own hue (hues evenly spaced around the
    colour wheel, so backgrounds are easy to tell apart, as scenes are) plus stripes and fine noise
    (texture, so camera jitter is visible)."""
    rng = np.random.default_rng([seed, 1000])
    bgs = []
    yy, xx = np.mgrid[0:canvas, 0:canvas]
    for k in range(backgrounds):
        hue = 2 * math.pi * k / backgrounds
        tint = 45 * np.array([math.cos(hue), math.cos(hue - 2 * math.pi / 3), math.cos(hue + 2 * math.pi / 3)])
        coarse = rng.uniform(60, 170, size=(1, 3, 5, 5)) + tint.reshape(1, 3, 1, 1)
        coarse = torch.from_numpy(coarse.astype(np.float32))
        smooth = F.interpolate(coarse, size=(canvas, canvas), mode="bicubic", align_corners=False)
        smooth = smooth[0].permute(1, 2, 0).numpy()
        ang, freq = rng.uniform(0, math.pi), rng.uniform(0.15, 0.5)
        stripes = 18 * np.sin(freq * (xx * math.cos(ang) + yy * math.sin(ang)))[..., None]
        noise = rng.normal(0, 10, size=(canvas, canvas, 3))
        bgs.append(np.clip(smooth + stripes + noise, 0, 255).astype(np.uint8))
    sprites = [(k % 3, tuple(int(c) for c in rng.integers(0, 256, size=3))) for k in range(SYNTH_SPRITES)]
    return bgs, sprites


def _paint(img, grid, look, x, y, r):
    """Paint `look` (shape 0 disk, 1 square, 2 diamond: filled with a darker core; 3: hollow ring) of
    radius r px at (x, y) px into img (H, W, 3) in place; grid = (yy, xx) pixel coordinates. Returns the
    painted pixels, bool (H, W): the masks come from the very test that paints, never from a second copy
    of the geometry."""
    shape, colour = look
    dx, dy = grid[1] - x, grid[0] - y
    if shape == 1:
        d = np.maximum(np.abs(dx), np.abs(dy))
    elif shape == 2:
        d = (np.abs(dx) + np.abs(dy)) / 1.3
    else:
        d = np.sqrt(dx ** 2 + dy ** 2)
    if shape == 3:
        mask = (d <= r) & (d >= r * 0.6)
        img[mask] = colour
        return mask
    mask = d <= r
    img[mask] = colour
    img[d <= r * 0.45] = tuple(c // 2 for c in colour)
    return mask


def _margin(size):
    """The jitter margin m (px): a video's canvas (and background) is size + 2m square, and its camera
    window of size x size moves inside it."""
    return max(2, size // 16)


def _distractor_path(rng, size, frames, m, speed):
    """(frames, 2) canvas positions (x, y) of the distractor: constant speed (px per frame), heading a
    random walk (DISTRACTOR_TURN rad per frame), reflected at the borders of the central 70 % of the frame."""
    lo, hi = 0.15 * size + m, 0.85 * size + m
    pos = rng.uniform(0.3, 0.7, size=2) * size + m
    heading = rng.uniform(0, 2 * math.pi) + np.cumsum(rng.normal(0, DISTRACTOR_TURN, size=frames))
    out = np.empty((frames, 2))
    for f in range(frames):
        out[f] = pos
        pos = pos + speed * np.array([math.cos(heading[f]), math.sin(heading[f])])
        pos = np.where(pos < lo, 2 * lo - pos, np.where(pos > hi, 2 * hi - pos, pos))  # bounce
    return out


def _synth_video(cls_name, bg, sprite, rng, size, frames, jitter=True, scale=1.0, masks=False):
    """uint8 (frames, size, size, 3): the object (look `sprite`) moving by `cls_name` during [t0, t1] over
    `bg`, a distractor ring wandering at half its speed, and camera jitter (jitter=False: a still camera,
    centred; the jitter is drawn all the same, so both sets show the same motions). Every random draw
    comes from `rng` in a fixed order, none from bg or sprite (motion is drawn the same whatever the cue).
    scale multiplies the radius of the object and of the ring (no draw depends on it: the same motions).
    masks=True: (frames, actor, ring), the masks bool (frames, size, size): the object's pixels, and the
    ring's pixels that show (the object is painted in front of it); the rest is background."""
    m = _margin(size)
    p = {"x": rng.uniform(0.38, 0.62) * size + m, "y": rng.uniform(0.38, 0.62) * size + m,
         "s": rng.uniform(0.8, 1.2), "amp": rng.uniform(0.3, 0.45) * size, "phase": rng.uniform(0, 2 * math.pi)}
    t0, t1 = rng.uniform(0, 0.25), rng.uniform(0.75, 1.0)  # the motion happens between t0 and t1 only
    radius = size / 10 * scale
    jit = np.cumsum(rng.integers(-1, 2, size=(frames, 2)), axis=0)  # camera random walk, same for all classes
    jit = np.clip(jit + rng.integers(-m, m + 1, size=2), -m, m)
    jit = jit if jitter else 0 * jit  # a still camera: drawn all the same, so the later draws agree
    speed = p["amp"] / ((t1 - t0) * max(frames - 1, 1))  # the object's speed (px/frame) when it moves
    dist = _distractor_path(rng, size, frames, m, DISTRACTOR_SPEED * speed)
    grid = np.mgrid[0:size + 2 * m, 0:size + 2 * m]
    out = np.empty((frames, size, size, 3), np.uint8)
    actor, ring = np.zeros((2, frames, size, size), bool)
    for f in range(frames):
        u = min(max((f / max(frames - 1, 1) - t0) / (t1 - t0), 0.0), 1.0)
        x, y, s = _traj(cls_name, u, p)
        canvas = bg.copy()
        on_ring = _paint(canvas, grid, DISTRACTOR_LOOK, dist[f, 0], dist[f, 1], DISTRACTOR_SIZE * radius)
        on_actor = _paint(canvas, grid, sprite, x, y, radius * s)  # the actor in front
        window = np.s_[m + jit[f, 0]:m + jit[f, 0] + size, m + jit[f, 1]:m + jit[f, 1] + size]
        out[f], actor[f], ring[f] = canvas[window], on_actor[window], (on_ring & ~on_actor)[window]
    return (out, actor, ring) if masks else out


def bias_cues(ci, n, classes, bias):
    """Backgrounds (cues) of the n videos of class `ci` in one static-bias list: round(bias * n) of them
    show the class's own background ci, spread evenly over the list; the others show the backgrounds of
    the other classes in turn (rotated by ci, so over all classes every background appears as a
    conflicting cue about equally often). bias = 0: the bias-conflicting list (never the own background)."""
    own = round(bias * n)
    cues, q = [], 0
    for j in range(n):
        if (j + 1) * own // n > j * own // n:  # Bresenham: `own` of the n positions, evenly spread
            cues.append(ci)
        else:
            cues.append((ci + 1 + (q + ci) % (classes - 1)) % classes)
            q += 1
    return cues


class SynthVideo(NamedTuple):
    """One planned video of the synthetic set: class id, number within its class (its file's gXX is
    number+1), background (= cue) and object look, the lists it is in, `draw`: the video number whose
    generator (seed, class, draw) draws its motion (its own number, except in split 6's crossed list),
    and `group`: its motion group q in the crossed list (None elsewhere)."""
    ci: int
    number: int
    background: int
    sprite: int
    lists: tuple  # e.g. ("trainlist02.txt", "testlist01.txt", ...)
    draw: int
    group: object = None


def synthetic_plan(classes, videos_per_class, bias_train, bias_test, bias, crossed=0):
    """Every video of the set (SynthVideo), class by class: first the scene-balanced videos of splits 1-3,
    then the static-bias training list (splits 4 and 5, and 6 when crossed > 0), the in-distribution
    test list (split 4), the bias-conflicting test list (split 5) and, when crossed > 0, split 6's test
    list: `crossed` videos of the class on every background (aligned: its own; conflicting: the others),
    so both accuracies come from one list. That list comes in `crossed` motion groups per class: group q
    is `classes` videos, one per background, that share the generator and the look of its first video,
    so the aligned and the conflicting versions of one motion differ only in background. Backgrounds and
    looks are fixed rules, not random draws."""
    plan = []
    for ci in range(classes):
        for i in range(videos_per_class):
            # Scene-balanced: video i = 4j + r is tested in split r+1 (r < 3). The background (j + r + ci)
            # cycles through the whole pool as j grows, for the test groups of every split and for the
            # training groups alike, so no background says "this class" or "not this class".
            j, r = divmod(i, 4)
            lists = tuple(f"testlist0{k}.txt" if r == k - 1 else f"trainlist0{k}.txt" for k in (1, 2, 3))
            plan.append(SynthVideo(ci, i, (j + r + ci) % classes, (2 * j + r + ci) % SYNTH_SPRITES, lists, i))
        number = videos_per_class
        train = ("trainlist04.txt", "trainlist05.txt") + (("trainlist06.txt",) if crossed else ())
        for lists, n, frac in ((train, bias_train, bias),
                               (("testlist04.txt",), bias_test, bias), (("testlist05.txt",), bias_test, 0.0)):
            for j, cue in enumerate(bias_cues(ci, n, classes, frac)):
                plan.append(SynthVideo(ci, number, cue, (j + ci) % SYNTH_SPRITES, lists, number))
                number += 1
        for q in range(crossed):  # motion group q: videos first + b on background b, all drawn like `first`
            first = number + q * classes
            plan += [SynthVideo(ci, first + b, b, (q + ci) % SYNTH_SPRITES, ("testlist06.txt",), first, q)
                     for b in range(classes)]
    return plan


def _check(classes, videos_per_class, size, frames, bias_train, bias_test, bias, crossed, image_format, scale):
    if not 2 <= classes <= len(MOTIONS):
        raise ValueError(f"--classes must be 2..{len(MOTIONS)} (motions: {MOTIONS}), got {classes}")
    if size % 2 or size < 16:
        raise ValueError(f"--size must be even and >= 16, got {size}")
    if frames < 2 or videos_per_class < 1 or bias_train < 1 or bias_test < 1 or crossed < 0:
        raise ValueError("--frames must be >= 2, --videos-per-class, --bias-train, --bias-test >= 1 and "
                         "--crossed >= 0")
    if not 0.0 <= bias <= 1.0:
        raise ValueError(f"--bias must be a fraction in [0, 1], got {bias}")
    if image_format not in ("avi", "png"):
        raise ValueError(f"image_format must be 'avi' or 'png' (--png), got {image_format!r}")
    if not scale > 0:
        raise ValueError(f"--object-scale must be > 0, got {scale}")


# synth_meta.json keys written only where a set differs from these defaults, so that the default set's
# meta stays byte-identical to what it was before they existed; readers take meta.get(key, default).
META_DEFAULTS = {"jitter": True, "crossed": 0, "image_format": "avi", "object_scale": 1.0}


def _video_meta(v, cname):
    """synth_meta.json's entry of planned video v: class, background (its static cue), object look, lists;
    in split 6's crossed list also "aligned" (its own background), its motion "group" ("<Class>/q": the
    `classes` videos that show one motion on every background) and "draw" (the video number whose
    generator drew it: the group's first)."""
    entry = {"class": cname, "background": v.background, "sprite": v.sprite, "lists": list(v.lists)}
    if v.group is not None:
        entry.update(aligned=v.background == v.ci, group=f"{cname}/{v.group}", draw=v.draw)
    return entry


def write_synthetic(out, classes=4, videos_per_class=40, size=64, frames=32, seed=0, bias_train=None,
                    bias_test=None, bias=SYNTH_BIAS, jitter=True, crossed=0, image_format="avi", object_scale=1.0):
    """Write the synthetic motion set in the official UCF101 layout under `out`:
    out/UCF-101/<Class>/v_<Class>_gXX_c01.avi, out/ucfTrainTestlist/{classInd.txt, trainlist0K.txt,
    testlist0K.txt} for K = 1..5 (and 6, see below; CRLF, 1-based ids) and out/synth_meta.json (the set's
    arguments; per video: class, background = its static cue, object look, lists).
    Splits 1-3: videos_per_class videos per class, scene-balanced; video i is tested in split (i % 4) + 1
    (a quarter each; i % 4 == 3 is always in training). Splits 4/5 (static-bias, see the top of this
    file): bias_train training videos per class (default 3/2 x videos_per_class), bias_test per class in
    each test list (default 3/4 x videos_per_class); `bias` (the cue strength rho) is the fraction showing
    the class's own background in the training and in-distribution lists. Defaults: 4 classes -> 160 +
    240 + 120 + 120 videos. jitter=False: a still camera. crossed=N > 0 adds split 6: split 4's training
    list, tested on N motion groups per class, each shown on every background (synthetic_plan); each
    video is marked "aligned" (its own background) or not, with its "group", in synth_meta.json.
    image_format="png": each video a folder of lossless PNG frames under the .avi's name (write_frames),
    which every reader takes for the video. object_scale multiplies the radius of the object and of the
    ring. Same arguments -> byte-identical files."""
    bias_train = videos_per_class * 3 // 2 if bias_train is None else bias_train
    bias_test = max(1, videos_per_class * 3 // 4) if bias_test is None else bias_test
    _check(classes, videos_per_class, size, frames, bias_train, bias_test, bias, crossed, image_format, object_scale)
    bgs, sprites = synthetic_pool(seed, size + 2 * _margin(size), classes)
    names = MOTIONS[:classes]
    lines = {f"{w}list0{k}.txt": [] for k in SYNTH_SPLITS[:6 if crossed else 5] for w in ("train", "test")}
    meta = {"seed": seed, "size": size, "frames": frames, "classes": list(names), "backgrounds": classes,
            "sprites": SYNTH_SPRITES, "bias": bias, "videos": {},
            "cue": "background: background k is the cue of class k (classes[k]); splits 4/5 are static-bias"}
    given = {"jitter": bool(jitter), "crossed": crossed, "image_format": image_format,
             "object_scale": float(object_scale)}
    meta.update({k: x for k, x in given.items() if x != META_DEFAULTS[k]})
    for v in synthetic_plan(classes, videos_per_class, bias_train, bias_test, bias, crossed):
        cname = names[v.ci]
        rel = f"{cname}/v_{cname}_g{v.number + 1:02d}_c01.avi"
        os.makedirs(os.path.join(out, "UCF-101", cname), exist_ok=True)
        video = _synth_video(cname, bgs[v.background], sprites[v.sprite],
                             np.random.default_rng([seed, v.ci, v.draw]), size, frames, jitter, object_scale)
        path = os.path.join(out, "UCF-101", cname, os.path.basename(rel))
        if image_format == "png":
            write_frames(path, video)
        else:
            write_video(path, video)
        meta["videos"][rel] = _video_meta(v, cname)
        for name in v.lists:
            lines[name].append(f"{rel} {v.ci + 1}" if name.startswith("train") else rel)
    lines["classInd.txt"] = [f"{i + 1} {c}" for i, c in enumerate(names)]
    os.makedirs(os.path.join(out, "ucfTrainTestlist"), exist_ok=True)
    for fname, rows in lines.items():
        with open(os.path.join(out, "ucfTrainTestlist", fname), "w", newline="") as f:
            f.write("".join(ln + "\r\n" for ln in rows))  # CRLF like the official lists
    with open(os.path.join(out, "synth_meta.json"), "w") as f:  # written last: marks a complete set
        json.dump(meta, f, indent=1, sort_keys=True)
    return out


class Regenerated(NamedTuple):
    """regenerate_video's answer: one video's frames and what each pixel shows."""
    frames: np.ndarray  # uint8 (F, H, W, 3): the video as written (a png set's frames exactly)
    actor: np.ndarray   # bool (F, H, W): the moving object (the class's motion)
    ring: np.ndarray    # bool (F, H, W): the distractor ring where it shows; neither mask: background


def regenerate_video(root, rel):
    """Video `rel` of the synthetic set at `root` (its synth_meta.json key, e.g.
    "MoveLeft/v_MoveLeft_g05_c01.avi", or its path under root/UCF-101) drawn again, with its masks, from
    what synth_meta.json records (seed, size, frames, jitter, object scale; the video's class,
    background, look and generator: (seed, class, its "draw", else its number gXX - 1)) by the code that
    wrote it (_synth_video), so the frames equal the written ones: exactly in a png set; in an avi set,
    before the lossy encoding. Lets a benchmark score what a model attends to against the actor."""
    meta_path = os.path.join(root, "synth_meta.json")
    with open(meta_path) as f:
        meta = json.load(f)
    if os.path.isabs(rel):
        rel = os.path.relpath(rel, os.path.join(root, "UCF-101"))
    rel = rel.replace(os.sep, "/")
    v, number = meta["videos"].get(rel), re.search(r"_g(\d+)_c01\.avi$", rel)
    if v is None or number is None:
        raise ValueError(f"{rel!r} is not a video of {meta_path} (expected a key like "
                         f"{next(iter(meta['videos']))!r})")
    size, opt = meta["size"], {k: meta.get(k, d) for k, d in META_DEFAULTS.items()}
    bgs, sprites = synthetic_pool(meta["seed"], size + 2 * _margin(size), meta["backgrounds"])
    rng = np.random.default_rng([meta["seed"], meta["classes"].index(v["class"]),
                                 v.get("draw", int(number.group(1)) - 1)])
    return Regenerated(*_synth_video(v["class"], bgs[v["background"]], sprites[v["sprite"]], rng, size,
                                     meta["frames"], opt["jitter"], opt["object_scale"], masks=True))


def static_cue_agreement(root, split, train):
    """Fraction of the videos of one list of the synthetic set at `root` whose background (static cue) is
    their own class's, from synth_meta.json: ~SYNTH_BIAS for split 4/5 training and split 4 test, 0 for
    split 5 test, ~1/classes for splits 1-3. Lets tests and bench.py check the correlation."""
    if split not in SYNTH_SPLITS:
        raise ValueError(f"synthetic: --split must be one of {SYNTH_SPLITS}, got {split}")
    with open(os.path.join(root, "synth_meta.json")) as f:
        meta = json.load(f)
    listname = f"{'train' if train else 'test'}list0{split}.txt"
    videos = [v for v in meta["videos"].values() if listname in v["lists"]]
    return sum(v["background"] == meta["classes"].index(v["class"]) for v in videos) / len(videos)


def default_synthetic_root():
    """Where the synthetic set lives when no --data-root is given (written there on first use)."""
    return os.path.join(os.path.expanduser("~"), ".cache", "dynamic-appearance", "synth-v4")


def ensure_synthetic(root, **kwargs):
    """`root` holding a complete synthetic set: written (defaults or `kwargs`) if `root` does not exist.
    Written into a temporary sibling folder, then renamed, so an interrupted write never looks complete
    (and concurrent ranks do not collide: the loser of the rename uses the winner's set)."""
    if os.path.isfile(os.path.join(root, "synth_meta.json")):
        return root
    if os.path.exists(root) and os.listdir(root):
        raise FileNotFoundError(f"synthetic: {root} exists but holds no complete synthetic set (no "
                                "synth_meta.json); delete it or pick another --data-root")
    parent = os.path.dirname(os.path.abspath(root))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".synth-tmp-", dir=parent)
    try:
        write_synthetic(tmp, **kwargs)
        if os.path.isdir(root):
            os.rmdir(root)  # an empty folder
        os.rename(tmp, root)
    except OSError:
        if not os.path.isfile(os.path.join(root, "synth_meta.json")):
            raise
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return root


def add_arguments(p):
    """`python data.py synth`'s flags."""
    p.add_argument("--out", required=True)
    p.add_argument("--classes", type=int, default=4)
    p.add_argument("--videos-per-class", type=int, default=40)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--frames", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bias", type=float, default=SYNTH_BIAS,
                   help="static-bias split: the cue strength rho, the fraction of training videos showing "
                        "their class's background")
    p.add_argument("--bias-train", type=int, default=None,
                   help="static-bias training videos per class (default 3/2 x --videos-per-class)")
    p.add_argument("--bias-test", type=int, default=None,
                   help="videos per class in each static-bias test list (default 3/4 x --videos-per-class)")
    p.add_argument("--no-jitter", dest="jitter", action="store_false", help="a still camera (default: jitter)")
    p.add_argument("--crossed", type=int, default=0,
                   help="add split 6: split 4's training list, tested on N motion groups per class, each "
                        "shown on every background (default 0: no split 6)")
    p.add_argument("--png", dest="image_format", action="store_const", const="png", default="avi",
                   help="write each video as a folder of lossless PNG frames (default: mpeg4 .avi files)")
    p.add_argument("--object-scale", type=float, default=1.0,
                   help="multiplies the radius of the moving object and of the distractor ring (default 1)")


def main(args):
    """`python data.py synth`: write the set at args.out and say what was written."""
    write_synthetic(args.out, args.classes, args.videos_per_class, args.size, args.frames, args.seed,
                    args.bias_train, args.bias_test, args.bias, args.jitter, args.crossed, args.image_format,
                    args.object_scale)
    kind = "PNG frame folders" if args.image_format == "png" else "mpeg4 .avi"
    print(f"wrote {args.classes} classes ({args.size}px, {args.frames} frames, {kind}) to {args.out}: splits 1-3 "
          f"{args.videos_per_class} videos per class, static-bias splits 4/5 (training cue agreement "
          f"{static_cue_agreement(args.out, 4, True):.2f})")
