"""`python bench.py reproduce`: REPRODUCE.md's tables, each of the paper's tables as train.py commands
with the recipe each resolves to, its test protocol and what each run would cost.

The rows are PAPER_ROWS (the paper's row, the exact command or None where this code cannot run it,
the test views, the paper's number, the status); the recipe is train.py's for the command's starting
point, with its GPUs and whose values it uses; the cost of a row is the measured step of its backbone
family (MEASURED_STEP) scaled by the row's multiply-adds per clip, times its dataset's videos and the
recipe's epochs. It prints the markdown tables that REPRODUCE.md holds under its introduction, and
writes the rows to --out (reproduce.json).
"""
import argparse

import torch

import train
from experiments.speed import macs
from support.system import atomic_json

# Videos per dataset (training, validation): the official lists (UCF101/HMDB51 split 1); Kinetics
# copies differ by a few per cent, these are typical counts.
DATASET_SIZES = {"ucf101": (9537, 3783), "hmdb51": (3570, 1530), "sthv1": (86017, 11522),
                 "kinetics400": (240000, 19800), "minikinetics": (80000, 5000)}
# Measured on one H100 (bf16, torch 2.11+cu130, batch 8): seconds per training clip and the
# multiply-adds per clip of that model. Other models are scaled by their multiply-adds from the
# measurement of their own family (X3D's depthwise convolutions run far below a GPU's peak).
MEASURED_STEP = {"tsm": (0.068 / 8, dict(backbone="tsm", segments=8, frames=4, crop_size=224)),
                 "x3d": (0.074 / 8, dict(backbone="x3d_xs", segments=4, frames=8, crop_size=160))}
V100_SLOWDOWN = 3.0      # ours, not measured: a V100 taken as 3x an H100's time per clip

# (table, row, train.py arguments or None (not provided), test views (clips, crops), paper's number(s),
# status). The GPUs of a row are its recipe's total batch over its batch per GPU (train.RECIPES). Test
# views: 3 crops x N clips where the paper reports accuracy that way (Tables 1 and 3), a single centre-
# cropped clip in the ablations (Tables 4-10, Fig. 3), as Appendix A says.
NOT_RUN = "not run: needs the dataset and GPUs"
TABLE_8 = ("PWTP parameters here {params}; ENoPR not run: needs Mini-Kinetics and GPUs (our optimiser is SGD, the "
           "paper's AdamW)")
NO_FLOW = ("not provided: needs optical flow (TV-L1 extraction, or FlowNet2's or TVNet's networks), which this "
           "code does not include; bench.py compares DA's cost with RAFT-small and Horn–Schunck only")
SSV1, K400, MINIK = "--dataset sthv1 --data-root DATA/sthv1", "--dataset kinetics400 --data-root DATA/k400", \
    "--dataset minikinetics --data-root DATA/minik"
X3D_XS_K400, SOURCE = "--pretrained WEIGHTS/x3d_xs_k400.pyth", "RUNS/k400_da8x16_tsm"
PAPER_ROWS = [
    ("1", "TSM-R50 RGB, IN-1K, 8 frames", f"{SSV1} --backbone tsm --input rgb --frames 1 --pretrained imagenet", (2, 3), "48.7", NOT_RUN),
    ("1", "DA₈ₓ₄ TSM-R50, IN-1K", f"{SSV1} --backbone tsm --segments 8 --frames 4 --pretrained imagenet", (2, 3), "50.1", NOT_RUN),
    ("1", "ViT-B RGB, IN-21K (ours: IN-1K)", f"{SSV1} --backbone vit_b16 --input rgb --frames 1 --pretrained imagenet", (1, 3), "45.7", NOT_RUN),
    ("1", "DA₈ₓ₄ ViT-B, IN-21K (ours: IN-1K)", f"{SSV1} --backbone vit_b16 --segments 8 --frames 4 --pretrained imagenet", (1, 3), "46.4", NOT_RUN),
    ("1", "X3D-XS RGB, K400", f"{SSV1} --backbone x3d_xs --input rgb --frames 1 {X3D_XS_K400}", (2, 3), "40.6", NOT_RUN),
    ("1", "DA₄ₓ₈ X3D-XS, K400", f"{SSV1} --backbone x3d_xs --segments 4 --frames 8 {X3D_XS_K400}", (2, 3), "43.1", NOT_RUN),
    ("1", "X3D-M RGB, K400", f"{SSV1} --backbone x3d_m --input rgb --frames 1 --pretrained WEIGHTS/x3d_m_k400.pyth", (2, 3), "52.0", NOT_RUN),
    ("1", "DA₁₆ₓ₃ X3D-M, K400", f"{SSV1} --backbone x3d_m --segments 16 --frames 3 --pretrained WEIGHTS/x3d_m_k400.pyth", (2, 3), "53.7", NOT_RUN),
]
# Table 3: Kinetics-400, then UCF101 and HMDB51 fine-tuned from a Kinetics DA model of their own S x T
# (PWTP's MLP is T(T-1)/2 wide, so only a T = 16 model starts a T = 16 row): the source row is ours.
PAPER_ROWS += [
    ("3", "TSM-R50 RGB, IN-1K, 16 frames", f"{K400} --backbone tsm --input rgb --segments 16 --frames 1 --pretrained imagenet", (10, 3), "74.7", NOT_RUN),
    ("3", "DA₁₆ₓ₈ TSM-R50, IN-1K", f"{K400} --backbone tsm --segments 16 --frames 8 --pretrained imagenet", (10, 3), "75.9", NOT_RUN),
    ("3", "X3D-M RGB, from scratch", f"{K400} --backbone x3d_m --input rgb --frames 1 --pretrained none", (10, 3), "76.0", NOT_RUN),
    ("3", "DA₁₆ₓ₈ X3D-M, from scratch", f"{K400} --backbone x3d_m --segments 16 --frames 8 --pretrained none", (10, 3), "77.3", NOT_RUN),
    ("3", "ViT-B RGB, IN-21K (ours: IN-1K)", f"{K400} --backbone vit_b16 --input rgb --frames 1 --pretrained imagenet", (1, 3), "76.5", NOT_RUN),
    ("3", "DA ViT-B, IN-21K (S×T illegible; ours 8×4)", f"{K400} --backbone vit_b16 --segments 8 --frames 4 --pretrained imagenet", (1, 3), "78.2", NOT_RUN),
    ("3", f"DA₈ₓ₁₆ TSM-R50, IN-1K: the source of the two rows below (ours, into {SOURCE})", f"{K400} --backbone tsm --segments 8 --frames 16 --pretrained imagenet --out {SOURCE}", (10, 3), "not reported", NOT_RUN),
    ("3", "DA₈ₓ₁₆ TSM-R50 on UCF101 split 1, from the source row", f"--dataset ucf101 --data-root DATA/ucf101 --split 1 --backbone tsm --segments 8 --frames 16 --pretrained {SOURCE}/best.pt", (2, 3), "96.5 (mean of 3 splits)", NOT_RUN),
    ("3", "DA₈ₓ₁₆ TSM-R50 on HMDB51 split 1, from the source row", f"--dataset hmdb51 --data-root DATA/hmdb51 --split 1 --backbone tsm --segments 8 --frames 16 --pretrained {SOURCE}/best.pt", (2, 3), "75.3 (mean of 3 splits)", NOT_RUN),
]
# Table 4 (PWTP's shape, DA₄ₓT X3D-XS): T and D, then the Eq. 2 convolution (stride s, kernel k, channels
# C'); each on Mini-Kinetics and SS-V1. The kernel sizes are not legible in the paper; ours (k = 7 and 11)
# reproduce its FLOPs column's differences from the default row (TABLE_NOTES["4"] computes them).
MINIK_X3D, SSV1_X3D = f"{MINIK} --backbone x3d_xs --segments 4 --pretrained none", f"{SSV1} --backbone x3d_xs --segments 4 {X3D_XS_K400}"
PAPER_ROWS += [
    ("4", f"T = {t}, D = {d}, {name}", f"{base} --frames {t} --proj-dim {d}", (1, 1), f"{acc} (ENoPR {enopr}; {flops}G)", NOT_RUN)
    for t, d, minik, ssv1, flops in ((4, 1, ("0.26", "56.2"), ("0.16", "39.3"), "0.71"), (4, 2, ("0.24", "55.3"), ("0.08", "39.5"), "0.71"),
                                     (8, 1, ("0.41", "56.9"), ("0.27", "41.0"), "0.82"), (8, 3, ("0.33", "57.0"), ("0.13", "41.3"), "0.83"),
                                     (16, 1, ("0.72", "58.6"), ("0.39", "42.1"), "1.12"))
    for name, base, (enopr, acc) in (("Mini-K", MINIK_X3D, minik), ("SS-V1", SSV1_X3D, ssv1))
] + [
    ("4", f"s = {s}, k = {k}{'' if k == 9 else ' (ours)'}, C' = {c}, {name}", f"{base} --frames 8 --pwtp-stride {s} --pwtp-kernel {k} --pwtp-channels {c}", (1, 1), f"{acc} (ENoPR {enopr}; {flops}G)", NOT_RUN)
    for s, k, c, minik, ssv1, flops in ((1, 7, 12, ("0.26", "55.1"), ("0.14", "40.9"), "2.60"), (1, 7, 24, ("0.22", "58.6"), ("0.13", "41.1"), "4.06"),
                                        (4, 7, 24, ("0.32", "58.1"), ("0.18", "41.3"), "0.95"), (8, 9, 24, ("0.41", "56.9"), ("0.27", "41.0"), "0.82"),
                                        (8, 11, 24, ("0.37", "57.1"), ("0.20", "41.2"), "0.86"))
    for name, base, (enopr, acc) in (("Mini-K", MINIK_X3D, minik), ("SS-V1", SSV1_X3D, ssv1))
]
# Table 5 (SS-V1, DA₄ₓ₈ X3D-XS from a K400 X3D-XS): the constant scales' values are not legible in the
# paper; ours are 0.1, 1 and 10 (ordered as its ENoPR column falls).
X3D_SS = f"{SSV1_X3D} --frames 8"
PAPER_ROWS += [
    ("5", "baseline (RGB X3D-XS)", f"{SSV1} --backbone x3d_xs --input rgb --frames 1 {X3D_XS_K400}", (1, 1), "38.3", NOT_RUN),
    ("5", "separate training", X3D_SS + " --joint separate", (1, 1), "39.4 (ENoPR 0.17)", NOT_RUN),
    ("5", "constant scale λ = 0.1 (ours)", X3D_SS + " --joint constant --lam 0.1", (1, 1), "39.2 (ENoPR 0.43)", NOT_RUN),
    ("5", "constant scale λ = 1 (ours)", X3D_SS + " --joint constant --lam 1", (1, 1), "40.1 (ENoPR 0.34)", NOT_RUN),
    ("5", "constant scale λ = 10 (ours)", X3D_SS + " --joint constant --lam 10", (1, 1), "39.3 (ENoPR 0.22)", NOT_RUN),
    ("5", "MGDA, plain Eq. 12", X3D_SS + " --joint mgda --mgda-normalize none", (1, 1), "41.0 (ENoPR 0.27)", NOT_RUN),
]
# Table 6 (TSM-R50, 8 segments of 6 frames = 48 raw frames, ImageNet weights): SS-V1 and UCF101.
PAPER_ROWS += [
    ("6", f"{name}, SS-V1", f"{SSV1} --backbone tsm --segments 8 --frames 6 --input {inp} --pretrained imagenet", (1, 1), ss, NOT_RUN)
    for name, inp, ss in (("RGB", "rgb", "46.5"), ("RGB difference", "rgbdiff", "46.6"), ("dynamic image", "dynimg", "43.3"), ("DA₈ₓ₆", "da", "48.7"))
] + [
    ("6", f"{name}, UCF101", f"--dataset ucf101 --data-root DATA/ucf101 --backbone tsm --segments 8 --frames 6 --input {inp} --pretrained imagenet", (1, 1), ucf, NOT_RUN)
    for name, inp, ucf in (("RGB", "rgb", "87.1"), ("RGB difference", "rgbdiff", "87.0"), ("dynamic image", "dynimg", "86.2"), ("DA₈ₓ₆", "da", "89.7"))
] + [
    ("6", name, None, (1, 1), f"SS-V1 {ss}, UCF101 {ucf}", NO_FLOW)
    for name, ss, ucf in (("Flow (TV-L1)", "37.4", "88.5"), ("RGB+Flow", "49.8", "93.9"), ("FlowNetC", "26.3", "87.3"),
                          ("FlowNetS", "23.4", "86.8"), ("TVNet", "45.2", "88.6"))
]
# Table 7 (Appendix B: more cost than DA, no better), in Table 6's setting.
PAPER_ROWS += [
    ("7", "TSM R101 RGB, SS-V1", f"{SSV1} --backbone tsm --depth 101 --segments 8 --frames 6 --input rgb --pretrained imagenet", (1, 1), "46.9", NOT_RUN),
    ("7", "TSM R50+Conv (RGB, SS-V1 and UCF101)", None, (1, 1), "46.3, 87.0", "not provided: the paper gives only the "
     "extra convolution's cost (44.5G, 2.6K parameters), not its shape or place"),
]
# Table 8 (PWTP alone on L_p for 10 epochs, Mini-Kinetics): the parameter counts are computed here.
PAPER_ROWS += [
    ("8", f"MLP config #{i} (ρ {rho}, K {k}, e {e}): PWTP alone on L_p", MINIK_X3D + f" --frames 8 --joint separate --epochs 10 --separate-epochs 10 --warmup-epochs 1 --pwtp-bottleneck {rho} --pwtp-blocks {k} --pwtp-expansion {e}", (1, 1), f"ENoPR {enopr}, {params}k", TABLE_8)
    for i, rho, k, e, enopr, params in ((1, 0.25, 1, 4, "0.26", "16.9"), (2, 0.25, 1, 1, "0.27", "7.4"), (3, 0.25, 2, 1, "0.28", "7.9"),
                                        (4, 0.25, 2, 4, "0.26", "23.3"), (5, 1, 1, 4, "0.28", "35.5"), (6, 0.25, 0, 4, "0.30", "10.0"),
                                        (7, 0.25, 1, 2, "0.27", "9.7"))
]
# Table 9 (scale scheduler, X3D-XS on SS-V1): Eq. 13's exact form and the four (a, b) are not
# legible in the paper; the form is ours (mgda.scale_schedule) and so are these values.
PAPER_ROWS += [
    ("9", f"scale scheduler a = {a}, b = {b} (ours)", X3D_SS + f" --joint scheduler --lam 1 --sched-a {a} --sched-b {b}", (1, 1), paper, NOT_RUN)
    for a, b, paper in ((1, 1, "40.7 (ENoPR 0.57)"), (0.5, 1, "40.6 (ENoPR 0.53)"), (1, 2, "40.7 (ENoPR 0.56)"), (0.5, 2, "40.4 (ENoPR 0.55)"))
]
# Table 10 (longer segments, DA₄ₓT X3D-XS on Mini-Kinetics).
PAPER_ROWS += [
    ("10", f"T = {t}", MINIK_X3D + f" --frames {t}", (1, 1), paper, NOT_RUN)
    for t, paper in ((4, "56.2 (ENoPR 0.26)"), (8, "56.9 (ENoPR 0.41)"), (16, "58.2 (ENoPR 0.53)"))
]
# Fig. 3 (PWTP trained by L_c alone; held-out L_c against ENoPR per epoch: visualize.py curves).
PAPER_ROWS += [
    ("Fig. 3", "(a) UCF101, L_c only", "--dataset ucf101 --data-root DATA/ucf101 --backbone x3d_xs --segments 4 --frames 8 --joint recognition --pretrained none", (1, 1), "positive correlation", NOT_RUN),
    ("Fig. 3", "(b) Mini-Kinetics, L_c only", MINIK_X3D + " --frames 8 --joint recognition", (1, 1), "positive correlation", NOT_RUN),
]

CLASSES = {"ucf101": 101, "hmdb51": 51, "sthv1": 174, "kinetics400": 400, "minikinetics": 200}


def paper_mode(command):
    """The paper's MGDA (plain Eq. 12) for a DA command that names no strategy: the rows reproduce
    the paper, not this code's default (--mgda-normalize loss+, ours)."""
    da = "--input" not in command or "--input da" in command
    return command + (" --joint mgda --mgda-normalize none" if da and "--joint" not in command else "")


def resolved(argv):
    """(args, recipe): train.py's flags for a command, completed by the recipe of its starting point as
    a run would complete them (a WEIGHTS/ or RUNS/ file stands for a Kinetics video model), and that
    recipe (train.RECIPES' entry, with its total batch and the values that are ours)."""
    args = train.build_parser().parse_args(argv)
    start = args.pretrained if args.pretrained in ("imagenet", "none") else "kinetics"
    return train.resolve_defaults(args, 1, start), train.choose_recipe(args, start)[0]


def build_meta(args):
    """The model the flags describe, on the meta device (no memory, no weights)."""
    with torch.device("meta"):
        return train.build_model(args, CLASSES.get(args.dataset, 10))


def macs_per_clip(args):
    """Multiply-adds of one view (a clip of S*T frames) of the model the flags describe."""
    model = build_meta(args)
    with torch.device("meta"):
        clip = torch.empty(1, args.segments * args.frames, 3, args.crop_size, args.crop_size)
        return macs(lambda: model.eval()(clip))


def reference_seconds(family):
    """Seconds per training clip on one H100 for `family`, with the multiply-adds it was measured at."""
    seconds, setting = MEASURED_STEP[family]
    args, _ = resolved(["--dataset", "sthv1", "--data-root", "DATA/sthv1", "--pretrained", "none"]
                       + [f"--{k.replace('_', '-')}={v}" for k, v in setting.items()])
    return seconds, macs_per_clip(args)


def recipe_words(args, recipe):
    """The row's recipe: its GPUs, batch, lr, epochs, and whose values they are."""
    gpus, total = recipe["global_batch"] // recipe["batch_size"], recipe["global_batch"]
    ours = [k.replace("warmup_epochs", "warm-up").replace("_", " ") for k in recipe["ours"]]
    whose = ("Appendix A" if not ours else "ours" if recipe["ours"] == train.OURS_IF_ELSEWHERE
             else f"Appendix A; ours: {', '.join(ours)}")
    return (f"{gpus} GPUs × {args.batch_size} = {total} clips, lr {recipe['lr']:g}, {args.epochs} epochs "
            f"(warm-up {args.warmup_epochs:g}), wd {args.weight_decay:g}, dropout {args.dropout:g} ({whose})")


def parameter_status(args, paper, status):
    """Table 8's status: PWTP's parameter count here, exact to the paper's precision or off by how much."""
    count = sum(p.numel() for p in build_meta(args).pwtp.parameters())
    stated = float(paper.rsplit(", ", 1)[1].rstrip("k")) * 1000
    diff = count - stated
    said = (f"{count:,}, the paper's {stated / 1000:g}k to its precision" if abs(diff) < 50 else
            f"{count:,}, {abs(diff):.0f} ({abs(diff) / stated:.1%}) {'below' if diff < 0 else 'above'} the paper's "
            f"{stated / 1000:g}k")
    return status.format(params=said)


def reproduce_row(table, name, command, test, paper, status, refs):
    """One REPRODUCE.md row: the setting, the command, its test, and its estimated cost in hours."""
    if command is None:                   # not provided: the reason is the status
        return {"table": table, "row": name, "setting": "—", "command": None, "test": "—", "paper": paper,
                "paper_hw_h": None, "h100_h": None, "status": status}
    args, recipe = resolved(command.split())
    seconds, ref_macs = refs["x3d" if args.backbone.startswith("x3d") else "tsm"]
    view_macs = macs_per_clip(args)
    per_clip = seconds * view_macs / ref_macs                      # training: forward + backward
    n_train, n_val = DATASET_SIZES[args.dataset]
    h100_h = args.epochs * (n_train * per_clip + n_val * per_clip / 3) / 3600   # + one view-forward validation
    joint = args.joint + (f" ({args.mgda_normalize})" if args.joint == "mgda" and args.input == "da" else "")
    setting = (f"{args.dataset}, {args.backbone}{'-R' + str(args.depth) if args.backbone == 'tsm' else ''}, "
               f"{args.input.upper()} S×T = {args.segments}×{args.frames}, "
               + (f"D = {args.proj_dim}, {joint}, " if args.input == "da" else "")
               + f"from {args.pretrained if '/' not in args.pretrained else 'Kinetics'}; {recipe_words(args, recipe)}")
    gpus = recipe["global_batch"] // recipe["batch_size"]            # the recipe's, the paper's where it says
    return {"table": table, "row": name, "setting": setting, "command": "python train.py " + command,
            "test": f"--clips {test[0]} --crops {test[1]}", "paper": paper, "paper_hw_h": h100_h * V100_SLOWDOWN / gpus,
            "h100_h": h100_h, "macs": view_macs / 1e9,
            "status": parameter_status(args, paper, status) if "{params}" in status else status}


def fmt_hours(h):
    return "—" if h is None else f"{h * 60:.0f} min" if h < 1 else f"{h:.1f} h" if h < 48 else f"{h / 24:.1f} days"


def kernel_note(rows):
    """Table 4's note: the multiply-adds of its convolution rows against the paper's FLOPs column, both
    as differences from the default row (s = 8, k = 9, C' = 24), on Mini-Kinetics."""
    conv = [r for r in rows if r["table"] == "4" and r["row"].startswith("s = ") and "Mini-K" in r["row"]]
    base = next(r for r in conv if r["row"].startswith("s = 8, k = 9,"))
    paper_g = lambda r: float(r["paper"].rsplit("; ", 1)[1].rstrip("G)"))
    said = [f"{r['row'].rsplit(',', 1)[0]}: {r['macs'] - base['macs']:+.2f} G here, "
            f"{paper_g(r) - paper_g(base):+.2f} G in the paper" for r in conv if r is not base]
    return (f"The kernel sizes k of the convolution rows are not legible in the paper; ours reproduce its FLOPs "
            f"column as differences from the default row (our count of that row: {base['macs']:.2f} G multiply-adds "
            f"per view, the paper's {paper_g(base):g}G): " + "; ".join(said) + ".")


TABLE_NOTES = {
    "3": lambda rows: "The paper's text cites both its Kinetics-400 table and its UCF101/HMDB51 table as Table 3 "
                      "(it cites no Table 2). The UCF101 and HMDB51 rows start from the source row's best.pt: "
                      "PWTP's MLP is T(T−1)/2 wide, so the DA₁₆ₓ₈ model (T = 8) cannot start a T = 16 row "
                      "(train.py stops, naming the PWTP tensors that do not fit).",
    "4": kernel_note,
    "7": lambda rows: "Its TSM R50 and DA TSM R50 rows are Table 6's RGB and DA₈ₓ₆ rows.",
    "8": lambda rows: "PWTP's parameter counts (the status column) are counted by `python bench.py reproduce` on the "
                      "models the commands build, against the paper's column; tests/test_reproduce.py checks them.",
}


def reproduce_markdown(rows):
    """REPRODUCE.md's tables: one per paper table, a row per command (or per row not provided)."""
    out = []
    for table in dict.fromkeys(r["table"] for r in rows):
        title = table if table.startswith("Fig") else f"Table {table}"
        out += [f"## {title}", ""] + ([TABLE_NOTES[table](rows), ""] if table in TABLE_NOTES else [])
        out += ["| row | setting | command | test (evaluate.py) | paper | est. paper hardware | est. 1 H100 | status |",
                "|---|---|---|---|---|---|---|---|"]
        out += [f"| {r['row']} | {r['setting']} | {'`' + r['command'] + '`' if r['command'] else '—'} | "
                f"{'`' + r['test'] + '`' if r['command'] else '—'} | {r['paper']} | {fmt_hours(r['paper_hw_h'])} | "
                f"{fmt_hours(r['h100_h'])} | {r['status']} |" for r in rows if r["table"] == table]
        out.append("")
    return "\n".join(out)


def run_reproduce(a):
    """python bench.py reproduce: REPRODUCE.md's tables, costs estimated from the measured steps."""
    refs = {family: reference_seconds(family) for family in MEASURED_STEP}
    rows = [reproduce_row(table, name, cmd and paper_mode(cmd), *rest, refs) for table, name, cmd, *rest in PAPER_ROWS]
    print(reproduce_markdown(rows))
    atomic_json(rows, a.out)
    return rows


def main(argv=None):
    """python bench.py reproduce [--out reproduce.json]"""
    p = argparse.ArgumentParser(prog="bench.py reproduce", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="reproduce.json", help="JSON output: the rows (default reproduce.json)")
    return run_reproduce(p.parse_args(argv))
