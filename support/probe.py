"""evaluate.py --static-probe: how much of a model's accuracy static cues alone buy. Not in the paper
(ours, after the StillMix paper's SCUBA/SCUFO idea). Two extra passes over the test set:

    frozen    every clip replaced by its own middle frame repeated over all S*T frames: no motion;
    conflict  every clip mixed 50/50 with the middle frame of a video of ANOTHER class (partner_order):
              the motion is intact, the static scene points at a wrong class.

A model that reads motion keeps its conflict accuracy and loses its frozen accuracy. For FIXED bases
that contain the constant direction, a static image added to a clip leaves DA unchanged (Eq. 5-6;
tests/test_evaluate.py checks the algebra); PWTP computes its bases from the clip itself (Eq. 2-4)
and the mix halves the moving part too, so for the model the probe is an experiment, not an identity.

The caller hands in its own test protocol (`top1`), so the probe is scored exactly like the test.
"""
import numpy as np
import torch


def add_flags(flag):
    """--static-probe and --probe-seed on the caller's argparse add_argument `flag`."""
    flag("--static-probe", action="store_true",
         help="also report top-1 on 'frozen' clips (middle frame repeated) and 'conflict' clips "
              "(mixed 50/50 with a still of another class's video)")
    flag("--probe-seed", type=int, default=0, help="seed that picks each conflict partner (default 0)")


def still_frame(clip: torch.Tensor) -> torch.Tensor:
    """(..., S*T, C, H, W) -> (..., C, H, W): the clip's middle frame, index S*T // 2 (the later of
    the two middle ones for even S*T). The middle rather than the first is our choice: it is the
    frame most likely to show the action's scene."""
    return clip.select(-4, clip.shape[-4] // 2)


def frozen_clip(clip: torch.Tensor) -> torch.Tensor:
    """(..., S*T, C, H, W) -> same shape, every frame the middle one: the appearance stays, all
    motion is gone. For DA input the PWTP sees a constant temporal profile at every pixel."""
    return still_frame(clip).unsqueeze(-4).expand_as(clip).contiguous()


def conflict_clip(clip: torch.Tensor, other_still: torch.Tensor, normalize=None) -> torch.Tensor:
    """clip (..., S*T, C, H, W) and a still frame other_still (..., C, H, W) of a video of another
    class -> 0.5 * clip + 0.5 * other_still on every frame (same shape as clip, float).

    Mixed in normalised space, which is the same as mixing the pixels: ImageNet normalisation is
    affine and the two weights sum to 1. uint8 pixels (the dataset's items) are normalised first by
    `normalize` (the caller's: the model's own normalisation), since a half-half mix is no uint8 image."""
    if other_still.shape != clip.shape[:-4] + clip.shape[-3:]:
        raise ValueError(f"conflict_clip: the still must be (..., C, H, W) matching the clip "
                         f"{tuple(clip.shape)}, got {tuple(other_still.shape)}")
    if clip.dtype == torch.uint8:
        if normalize is None:
            raise ValueError("conflict_clip: uint8 pixels need `normalize`, the model's normalisation")
        clip, other_still = normalize(clip), normalize(other_still)
    return 0.5 * clip + 0.5 * other_still.unsqueeze(-4)


def partner_order(labels, index, seed=0):
    """The videos whose still may be mixed into video `index` for `conflict`: every video of another
    class than labels[index], shuffled by numpy's default_rng([seed, index]) (deterministic, and
    independent of ranks and workers). The first readable one is used."""
    labels = np.asarray(labels)
    others = np.flatnonzero(labels != labels[index])
    return np.random.default_rng([int(seed), int(index)]).permutation(others).tolist()


class StaticProbeDataset(torch.utils.data.Dataset):
    """The test set `ds` (items (clip (V, S*T, C, H, W), label), label -1 = unreadable) with every
    readable clip replaced by frozen_clip(clip) ("frozen") or by conflict_clip(clip, the still of
    the same view of its partner video, normalize) ("conflict"; partner: partner_order over ds.samples'
    labels)."""

    def __init__(self, ds, mode, seed=0, normalize=None):
        if mode not in ("frozen", "conflict"):
            raise ValueError(f"StaticProbeDataset: mode must be 'frozen' or 'conflict', got {mode!r}")
        self.ds, self.mode, self.seed, self.normalize = ds, mode, seed, normalize
        self.labels = np.array([label for _, label in ds.samples])

    def __len__(self):
        return len(self.ds)

    @property
    def item_shape(self):
        """The uint8 clips' shape, the test set's ("frozen"), for a loader's shared batches; None for the
        float clips of "conflict", which go through torch's own collate."""
        return self.ds.item_shape if self.mode == "frozen" else None

    def __getitem__(self, index):
        clip, label = self.ds[index]
        if label < 0:   # unreadable: stays out of the probe too (float in "conflict", whose batches are float)
            return (clip.float() if self.mode == "conflict" else clip), label
        if self.mode == "frozen":
            return frozen_clip(clip), label
        for j in partner_order(self.labels, index, self.seed):
            other, other_label = self.ds[j]
            if other_label >= 0:
                return conflict_clip(clip, still_frame(other), self.normalize), label
        raise RuntimeError(f"--static-probe: no readable video of a class other than "
                           f"{label} to mix into video {index}")


def check_classes(ds):
    """A conflict partner needs a video of another class: refuse a test set of one class, before
    anything runs."""
    if len({label for _, label in ds.samples}) < 2:
        raise SystemExit("evaluate.py: --static-probe needs test videos of at least two classes")


def static_probe(ds, seed, top1, normalize=None):
    """{frozen_top1, frozen_videos, conflict_top1, conflict_videos, frozen_rule, conflict_rule}.
    top1(dataset, what) -> (top-1 %, readable videos): the caller's test protocol on a dataset;
    normalize: uint8 pixels -> the model's float input, for the conflict mix (see conflict_clip)."""
    res = {}
    for mode in ("frozen", "conflict"):
        probe = StaticProbeDataset(ds, mode, seed, normalize)
        res[f"{mode}_top1"], res[f"{mode}_videos"] = top1(probe, f"static probe ({mode})")
    res["frozen_rule"] = "each clip replaced by its middle frame (index S*T//2) repeated over all S*T frames"
    res["conflict_rule"] = (f"each clip mixed 0.5/0.5 with the middle frame of the same view of another "
                            f"class's video: the first readable of partner_order(labels, index, "
                            f"seed={seed}) (numpy default_rng([seed, index]))")
    return res


def report_line(probe, top1, seed):
    """The printed line: normal, frozen and conflict top-1 side by side."""
    return (f"  static probe: top-1 {top1:.2f} % normal | {probe['frozen_top1']:.2f} % frozen (middle frame "
            f"repeated, no motion) | {probe['conflict_top1']:.2f} % conflict (50/50 with a still of another "
            f"class, partners seeded by --probe-seed {seed})")
