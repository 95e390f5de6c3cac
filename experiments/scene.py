"""Where DA's energy goes, on the synthetic set: object pixels against background pixels.

The DC gain s (pwtp.dc_gain) says how much of a pixel's *static* colour DA keeps. It cannot say
whether DA removes the scene: s = T ||w||^2 is DA's whole filter energy, so it is 0 both when DA
removes the still background and when DA removes everything, and background texture that camera
jitter moves passes through the filter like any motion. The synthetic set can say more, because it
knows where its object is: every video is regenerated with its masks (support/synthetic.py's
`regenerate_video`), sampled and cropped exactly as the test sampling of data.py does, and the trained
model's own representation (DA, or the RGB difference) is measured on

  object pixels      covered by the actor in any frame of the segment,
  background pixels  covered neither by the actor nor by the distractor ring in any of them,

as the mean squared value per pixel (summed over colour channels), the background pixels with a
one-pixel margin around anything that moves. Their ratio is the
representation's contrast between what moves and the scene: large when the scene is suppressed,
near 1 when the background passes as strongly as the object. Also here: the share of predictions
that flip when only the background changes, from the motion-matched groups of the crossed list.
Used by experiments/claims.py on every finished run.
"""
import csv
import functools
import json
import os

import numpy as np
import torch
import torch.nn.functional as F

import backbones
import baselines
import data
from support import synthetic
from support.checkpoints import load_checkpoint


def crossed_videos(root):
    """[(rel path, meta)] of the crossed test list (split 6) of the set at `root`, from synth_meta.json."""
    with open(os.path.join(root, "synth_meta.json")) as f:
        videos = json.load(f)["videos"]
    return [(rel, v) for rel, v in sorted(videos.items()) if "testlist06.txt" in v["lists"]]


def representation(model, x):
    """What the backbone of `model` sees for segments x (S, T, C, H, W): (S, C, H, W) DA frames, RGB
    differences, or None for inputs without a motion representation (RGB)."""
    if model.input == "da":
        return model.pwtp(x).da
    if model.input == "rgbdiff":
        return baselines.rgb_difference(x)
    return None


@functools.lru_cache(maxsize=None)     # the same clips for every run on a set: drawn once per process
def masked_clip(root, rel, segments, frames, crop):
    """The test clip of one video and its masks, as data.py's single-view test samples it: frames
    (S, T, C, crop, crop) normalised, and bool (S, crop, crop) masks over each segment's T frames:
    the object (over half covered), and every pixel the actor or the ring touches, one pixel wider."""
    video, actor, ring = synthetic.regenerate_video(root, rel)              # (F, H, W, 3) uint8, (F, H, W) x 2
    idx = data.sparse_indices(len(video), segments, frames, train=False)
    box = data.eval_crop_boxes(video.shape[1], video.shape[2], crop, 1)[0]
    x = data.normalize(data.crop_resize(video[idx], box, crop))   # (S*T, 3, crop, crop)
    planes = np.stack([actor, ring, np.zeros_like(actor)], -1)[idx].astype(np.uint8) * 255
    m = data.crop_resize(planes, box, crop)                       # (S*T, 3, crop, crop) in [0, 1], resized like x
    m = m.view(segments, frames, 3, crop, crop).amax(1)           # (S, 3, crop, crop): over the T frames
    # background: no trace of the actor or the ring, one pixel of margin (resizing blends neighbours)
    moving = F.max_pool2d((m[:, 0] + m[:, 1] > 0).float(), 3, stride=1, padding=1) > 0
    return x.view(segments, frames, 3, crop, crop), m[:, 0] > 0.5, moving


@torch.no_grad()
def scene_energy(checkpoint, root):
    """{"energy_object", "energy_background", "energy_ratio"} of the model in `checkpoint` on every
    crossed test video of the set at `root` (mean squared value per pixel of what its backbone sees,
    summed over channels); {} for a model without a motion representation (RGB)."""
    ckpt = load_checkpoint(checkpoint, "bench.py claims")
    model = backbones.model_from_checkpoint(ckpt, checkpoint).eval()
    if model.input not in ("da", "rgbdiff"):
        return {}
    crop = ckpt["model_config"]["crop_size"]
    sums = {"object": [0.0, 0], "background": [0.0, 0]}
    for rel, _ in crossed_videos(root):
        x, obj, moving = masked_clip(root, rel, model.segments, model.frames, crop)
        energy = representation(model, x).float().pow(2).sum(1)   # (S, crop, crop)
        for key, mask in (("object", obj), ("background", ~moving)):
            sums[key][0] += float(energy[mask].sum())
            sums[key][1] += int(mask.sum())
    e_obj, e_bg = (s / max(n, 1) for s, n in sums.values())
    return {"energy_object": e_obj, "energy_background": e_bg,
            "energy_ratio": e_obj / e_bg if e_bg > 0 else None}


def flips(per_video_csv, root):
    """The share of conflicting test videos whose prediction differs from that of the aligned video
    of their group (same motion, jitter, ring and object; only the background differs): how often
    swapping the background alone changes the answer. None where the set has no groups."""
    stem = lambda path: os.path.splitext("/".join(path.replace("\\", "/").split("/")[-2:]))[0]   # Class/v_..._c01
    with open(per_video_csv, newline="") as f:
        predicted = {stem(row["path"]): row["predicted"] for row in csv.DictReader(f)}
    aligned, conflicting = {}, []
    for rel, v in crossed_videos(root):
        if "group" not in v or stem(rel) not in predicted:
            continue
        if v["aligned"]:
            aligned[v["group"]] = predicted[stem(rel)]
        else:
            conflicting.append((v["group"], predicted[stem(rel)]))
    pairs = [(aligned[g], p) for g, p in conflicting if g in aligned]
    return sum(a != p for a, p in pairs) / len(pairs) if pairs else None
