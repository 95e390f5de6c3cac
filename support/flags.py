"""train.py's command line: every flag with its help. Not needed to follow the paper: train.py's
recipe (resolve_defaults) fills in each flag left at None, and says where each default comes from.
Flags are named like the paper (--segments S, --frames T, --proj-dim D, --lam lambda)."""
import argparse

from backbones import BACKBONES, INPUTS
from data import DATASETS
from mgda import NORMALIZERS, SPACES, STRATEGIES
from support import runs


def add_joint_flags(flag):
    """The joint-training flags (Sec. 3.4-3.5, Table 5, Eq. 12-13); `flag` is parser.add_argument."""
    flag("--joint", default=None, choices=STRATEGIES,
         help="joint-training strategy (Table 5; default mgda; synthetic: constant, see train.SYNTHETIC_DEFAULTS)")
    # Default loss+ (ours; README "The paper's claims"): Eq. 12 on the
    # raw gradients lets ||g_c|| >> ||g_p|| push alpha towards 0, so that PWTP follows L_p alone;
    # dividing each gradient by L * ||g|| first keeps both tasks weighted. The paper's plain Eq. 12
    # is one flag away: --mgda-normalize none.
    flag("--mgda-normalize", default="loss+", choices=NORMALIZERS, help="divide each task's gradient by 1, ||g||, "
         "L or L*||g|| before Eq. 12 (Sener & Koltun's gradient_normalizers); alpha then weighs the raw "
         "gradients (default loss+, which keeps alpha from collapsing; none = the paper's plain Eq. 12)")
    flag("--mgda-space", default="params", choices=SPACES, help="where Eq. 12 is solved: params = the PWTP "
         "parameters (Algorithm 1), bases = the per-pixel bases A (the MGDA-UB analogue) (default params)")
    flag("--lam", type=float, default=None, help="lambda of 'constant', lambda_max of 'scheduler' (default 1; "
         "synthetic: 30, see train.SYNTHETIC_DEFAULTS)")
    flag("--lam-min", type=float, default=0.0, help="Eq. 13 floor lambda_min (default 0)")
    flag("--sched-a", type=float, default=1.0, help="Eq. 13 shape a in (0,1] (default 1)")
    flag("--sched-b", type=float, default=1.0, help="Eq. 13 shape b > 0 (default 1)")
    flag("--separate-epochs", type=float, default=None, help="'separate': epochs of PWTP-only training before "
         "it is frozen (default: a quarter of --epochs, ours)")


# --pwtp-NAME flag -> pwtp.PWTP argument, with what the paper calls it (defaults: Sec. 4, config #7).
PWTP_OPTIONS = (("kernel", int, "kernel_size: Eq. 2 conv kernel k (default 9)"),
                ("stride", int, "stride: Eq. 2 conv stride s (default 8)"),
                ("channels", int, "channels: Eq. 2 conv channels C' (default 24)"),
                ("expansion", float, "expansion: Eq. 4 MLP width factor e (default 2)"),
                ("blocks", int, "blocks: Eq. 4 MLP bottleneck blocks K (default 1)"),
                ("bottleneck", float, "bottleneck_ratio: Eq. 4 bottleneck ratio rho (default 0.25)"))


def pwtp_options(args):
    """The --pwtp-* flags that were given, as pwtp.PWTP keyword arguments."""
    given = {p.split(":")[0]: getattr(args, f"pwtp_{n}", None) for n, _, p in PWTP_OPTIONS}
    return {k: v for k, v in given.items() if v is not None}


def build_parser(synthetic_defaults):
    """The parser; `synthetic_defaults`: train.SYNTHETIC_DEFAULTS, named in the description."""
    p = argparse.ArgumentParser(
        description="Train a dynamic-appearance action-recognition model with joint training "
                    "(MGDA by default). Unset flags take the recipe of the --pretrained starting point; "
                    "with --dataset synthetic (the default) a CPU-sized configuration is used instead: "
                    + ", ".join(f"{k}={v}" for k, v in synthetic_defaults.items()) + ".",
        epilog="Example: python train.py --dataset ucf101 --data-root ~/data/ucf101 --backbone tsm "
               "--pretrained k400_da_tsm.pt --out runs/ucf-da-tsm")
    flag = p.add_argument
    flag("--dataset", default="synthetic", choices=DATASETS, help="dataset (default synthetic)")
    flag("--data-root", default=None, help="dataset folder (synthetic: data.default_synthetic_root())")
    flag("--split", type=int, default=1,
         help="UCF101/HMDB51 split 1-3; synthetic also 4 and 5, the static-bias split (default 1)")
    flag("--backbone", default=None, choices=BACKBONES, help="default tsm")
    flag("--depth", type=int, default=None, help="ResNet depth for tsm (default 50; synthetic 18)")
    flag("--small", default=None, action=argparse.BooleanOptionalAction,
         help="narrow CPU-sized backbone (default off; synthetic on)")
    flag("--input", default="da", choices=INPUTS, help="representation fed to the backbone (default da)")
    flag("--segments", type=int, default=None, help="S segments (default: 8 tsm/vit, 4 x3d_xs, 16 x3d_m)")
    flag("--frames", type=int, default=None, help="T frames per segment (default 8)")
    flag("--proj-dim", type=int, default=1, help="D, dimension of the per-pixel subspace (default 1)")
    # PWTP's own shape (Eq. 2 conv: Table 4; Eq. 4 MLP: Table 8); unset = the paper's default (pwtp.PWTP).
    for name, kind, paper in PWTP_OPTIONS:
        flag(f"--pwtp-{name}", type=kind, default=None, help=f"PWTP {paper}")
    add_joint_flags(flag)
    flag("--crop-size", type=int, default=None, help="training/test crop (default 224; x3d_xs 160)")
    flag("--epochs", type=int, default=None)
    flag("--batch-size", type=int, default=None, help="clips per process per micro-batch")
    flag("--accum-steps", type=int, default=1, metavar="K", help="K micro-batches of --batch-size per optimiser "
         "step, so 1-2 GPUs reach the paper's total batch (MGDA derives alpha once, from the summed g_c and g_p)")
    flag("--lr", type=float, default=None, help="base learning rate (default: the starting point's recipe, "
         "scaled linearly to batch-size x accum-steps x processes)")
    flag("--weight-decay", type=float, default=None)
    flag("--dropout", type=float, default=None, help="dropout before the classifier")
    flag("--warmup-epochs", type=float, default=None,
         help="linear warm-up (default 7 on large sets; at most half the run, ours)")
    flag("--pwtp-lr-mult", type=float, default=None, help="PWTP learning-rate multiplier (ViT: 5)")
    flag("--input-scale", type=float, default=1.0, help="fixed gain on the frames the backbone sees (ours; DA "
         "frames are ~30x smaller than normalised RGB; default 1 = the paper's model)")
    flag("--pretrained", default=None, metavar="{none,imagenet,PATH}", help="starting point, which also picks the "
         "recipe: PATH = a Kinetics video model (TSM's, pytorchvideo's, or a train.py best.pt/last.pt/export) or a "
         "torchvision state dict; imagenet = torchvision's ImageNet weights (downloaded once); none = random "
         "weights. Default: imagenet for tsm/vit_b16 on real datasets, none for x3d, small models and synthetic")
    flag("--freeze-bn", default=None, action=argparse.BooleanOptionalAction, help="freeze every BatchNorm but "
         "the first (default: on when fine-tuning a pretrained model on ucf101/hmdb51, off from scratch)")
    flag("--clip-grad", type=float, default=None, help="gradient-norm clip, 0 = off (default 20)")
    flag("--label-smoothing", type=float, default=None, help="default 0.1")
    runs.add_run_flags(flag)              # --out, --resume, --seed, --amp, --device, --dry-run, ...
    return p
