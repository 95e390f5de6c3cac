"""The resolved recipe in words: every value a run will use, each marked where it comes from:
"paper" (Appendix A states it for this setting), "ours" (the paper does not state it here: our
choice) or "yours" (a flag given on the command line). Not in the paper: train.py hands it the
recipe it chose and the flags, and the run prints the lines first (and --dry-run shows them)."""


def describe(args, recipe, why, given, world):
    """The recipe's lines: `why` (which recipe and why it applies), then the values. recipe: the
    train.RECIPES entry (its lr is for recipe["global_batch"] clips in total, recipe["batch_size"]
    per GPU; recipe["ours"] names the values the paper does not state here); given: the flags set
    on the command line; world: the processes of this run."""
    def mark(key, text):
        return f"{text} ({'yours' if key in given else 'ours' if key in recipe['ours'] else 'paper'})"
    total = args.batch_size * args.accum_steps * world
    paper_lr = mark("lr", f"{recipe['lr']:g} per {recipe['global_batch']} clips = "
                          f"{recipe['global_batch'] // recipe['batch_size']} GPUs x {recipe['batch_size']}")
    lr = mark("lr", f"lr {args.lr:g}") if "lr" in given else f"lr {args.lr:g}: {paper_lr}, scaled linearly"
    joint = joint_words(args) + (" (yours)" if "joint" in given else " (ours)" if "joint" in recipe["ours"] else "")
    return "\n".join([
        why,
        f"  batch {mark('batch_size', f'{args.batch_size} clips per process')} x {args.accum_steps} micro-batches "
        f"x {world} processes = {total} clips per step; {lr}",
        f"  {mark('weight_decay', f'weight decay {args.weight_decay:g}')}, "
        f"{mark('dropout', f'dropout {args.dropout:g}')}, "
        f"{mark('epochs', f'{args.epochs} epochs')}, {mark('warmup_epochs', f'warm-up {args.warmup_epochs:g} epochs')}"
        f" then cosine, {mark('freeze_bn', 'BatchNorm ' + ('frozen but the first' if args.freeze_bn else 'trained'))}",
        f"  {mark('label_smoothing', f'label smoothing {args.label_smoothing:g}')}, "
        f"{mark('clip_grad', f'gradient clip {args.clip_grad:g}' if args.clip_grad else 'no gradient clip')}, "
        f"{mark('pwtp_lr_mult', f'PWTP lr x{args.pwtp_lr_mult:g}')}",
        f"  joint training: {joint}",
        f"  views: {view_words(args)}; validation 1 clip x 1 centre crop per video; the paper's accuracy: "
        "evaluate.py --clips N --crops 3 (N per table: REPRODUCE.md)",
    ])


def joint_words(args):
    """--joint and its settings in words, with what is ours (Sec. 3.4-3.5, Table 5, Eq. 13)."""
    if args.input != "da":
        return f"none: --input {args.input} has no PWTP, L_c alone"
    if args.joint == "mgda":
        norm = ("plain Eq. 12, the paper's" if args.mgda_normalize == "none" else
                f"--mgda-normalize {args.mgda_normalize}, ours: the paper's plain Eq. 12 is --mgda-normalize none")
        return f"MGDA, Algorithm 1 ({norm}" + ("; Eq. 12 on the bases A, ours)" if args.mgda_space == "bases" else ")")
    return {"constant": f"constant lambda = {args.lam:g} (Eq. 9)",
            "scheduler": f"Eq. 13, lambda from {args.lam:g} to {args.lam_min:g}, a = {args.sched_a:g}, "
                         f"b = {args.sched_b:g} (the form is ours)",
            "separate": f"separate: PWTP alone on L_p for {args.separate_epochs:g} epochs, then the backbone on L_c",
            "recognition": "L_c alone, PWTP included (Fig. 3)"}[args.joint]


def view_words(args):
    """What one view of the model is: the input, S x T and the crop."""
    frames = (f"S x T = {args.segments} x {args.frames}" + (f", D = {args.proj_dim}" if args.input == "da" else "")
              if args.input != "rgb" else f"S = {args.segments} frames")
    return f"{args.input.upper()} {frames} at {args.crop_size}^2"
