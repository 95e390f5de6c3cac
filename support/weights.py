"""Other codebases' weight formats, mapped onto this project's parameter names (backbones.py).

Not needed to follow the paper: this is how a run starts from published weights instead of random
ones. `load_pretrained` (backbones.build_model(pretrained=...)) puts a backbone-only checkpoint into a
bare backbone; `load_starting_point` (train.py --pretrained PATH) puts any known format into a whole
DAModel, PWTP included when the checkpoint has one. The formats (STARTING_POINT_FORMATS):

    this-project       a checkpoint of train.py (a DAModel state dict, net.* and pwtp.*)
    tsm                the TSM authors' TSM-ResNets (mit-han-lab/temporal-shift-module)
    pytorchvideo-x3d   pytorchvideo's X3D-XS/S/M
    torchvision        torchvision's ResNet-18/34/50/101 and ViT-B/16 (IMAGENET_URLS: ImageNet-1K)

Both loaders go through `checkpoint_format` (which format is it?), `_backbone_entries` (checkpoint
name -> our name) and `_assign` (every shape checked, nothing ignored silently), in the spirit of
nanoGPT's from_pretrained. The networks are passed in as arguments: this module does not import
backbones.py (which imports it), and tells the backbone families apart by their class names.
"""
import re

import torch
import torch.nn as nn

IMAGENET_URLS = {  # torchvision's published ImageNet-1K checkpoints (IMAGENET1K_V1 weights)
    ("tsm", 18): "https://download.pytorch.org/models/resnet18-f37072fd.pth",
    ("tsm", 34): "https://download.pytorch.org/models/resnet34-b627a593.pth",
    ("tsm", 50): "https://download.pytorch.org/models/resnet50-0676ba61.pth",
    ("tsm", 101): "https://download.pytorch.org/models/resnet101-63fe2227.pth",
    ("vit_b16", None): "https://download.pytorch.org/models/vit_b_16-c867db91.pth",
}

STARTING_POINT_FORMATS = {  # name -> what it looks like (for the messages)
    "this-project": "a checkpoint of this project's train.py: a dict with 'model' (a DAModel state dict, "
                    "keys net.* and pwtp.*) and 'model_config'",
    "tsm": "the TSM authors' release (mit-han-lab/temporal-shift-module): a dict with 'state_dict', keys "
           "module.base_model.* (torchvision ResNet names, shifted convs as ...conv1.net.weight), "
           "classifier module.new_fc.*",
    "pytorchvideo-x3d": "pytorchvideo's X3D-XS/S/M (create_x3d): a dict with 'model_state' (or the bare state "
                        "dict), keys blocks.0.conv.conv_t.*, blocks.N.res_blocks.M.branch2.*, blocks.5.proj.*",
    "torchvision": "a torchvision ResNet-18/34/50/101 (conv1.*, layer1.*, fc.*) or ViT-B/16 (conv_proj.*, "
                   "encoder.*, heads.head.*) state dict",
}


def checkpoint_format(obj, where: str):
    """Which of STARTING_POINT_FORMATS `obj` (what torch.load returned) is, told by its keys.

    returns (format, state dict, original): the state dict with DataParallel's "module." and
    torch.compile's "_orig_mod." prefixes removed, and `original` mapping its keys back to the file's
    own names (for the messages). A ValueError names `where` and the known formats when none fits.
    """
    known = "; ".join(f"{name}: {what}" for name, what in STARTING_POINT_FORMATS.items())
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: expected a checkpoint dict, got {type(obj).__name__}. Known formats: {known}")
    fmt = "this-project" if "model" in obj and "model_config" in obj else None
    sd = obj["model"] if fmt else obj.get("state_dict", obj.get("model_state", obj))
    if not isinstance(sd, dict) or not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ValueError(f"{where}: holds no state dict of tensors (top-level keys: {sorted(obj)[:8]}). "
                         f"Known formats: {known}")
    original = {k: k for k in sd}
    for prefix in ("module.", "_orig_mod."):
        original = {(k[len(prefix):] if k.startswith(prefix) else k): o for k, o in original.items()}
    sd = dict(zip(original, sd.values()))           # same order: the stripped names
    keys = list(sd)
    if fmt is None:
        if any(k.startswith("base_model.") for k in keys):
            fmt = "tsm"
        elif any(k.startswith("blocks.0.conv.conv_t.") or ".res_blocks." in k for k in keys):
            fmt = "pytorchvideo-x3d"
        elif any(k.startswith(("net.", "pwtp.")) for k in keys):
            fmt = "this-project"                    # a bare DAModel state dict
        elif ("conv1.weight" in sd and any(k.startswith("layer1.") for k in keys)) or "conv_proj.weight" in sd:
            fmt = "torchvision"
        else:
            raise ValueError(f"{where}: none of the known checkpoint formats fits (its first keys: "
                             f"{keys[:5]}). Known formats: {known}")
    return fmt, sd, original


# pytorchvideo's X3D names -> ours. Inside a residual block (blocks.N.res_blocks.M.<part>):
X3D_BLOCK_PARTS = {"branch1_conv": "shortcut.0", "branch1_norm": "shortcut.1",
                   "branch2.conv_a": "conv_a", "branch2.norm_a": "bn_a", "branch2.conv_b": "conv_b",
                   "branch2.norm_b.0": "bn_b",                         # norm_b = Sequential(BN, SE or Identity)
                   "branch2.norm_b.1.block.0": "se.fc1", "branch2.norm_b.1.block.2": "se.fc2",
                   "branch2.conv_c": "conv_c", "branch2.norm_c": "bn_c"}
# ... in the stem (blocks.0.<part>) and the head (blocks.<stages + 1>.<part>). Beware the stem:
# create_x3d_stem hands its SPATIAL 1x3x3 conv to Conv2plus1d as `conv_t` (which runs first) and
# its depthwise TEMPORAL 5x1x1 conv as `conv_xy`. The names are swapped; the shapes say which is which.
X3D_STEM_PARTS = {"conv.conv_t": "stem_xy", "conv.conv_xy": "stem_t", "norm": "stem_bn"}
X3D_HEAD_PARTS = {"pool.pre_conv": "head_conv", "pool.pre_norm": "head_bn", "pool.post_conv": "head_lin",
                  "proj": "proj"}


def pytorchvideo_x3d_name(key: str, stages: int = 4):
    """One pytorchvideo X3D key -> our X3D's name (None when our X3D has no such tensor)."""
    m = re.fullmatch(r"blocks\.(\d+)\.res_blocks\.(\d+)\.(.+)\.(\w+)", key)
    if m and 1 <= int(m[1]) <= stages and m[3] in X3D_BLOCK_PARTS:
        return f"stages.{int(m[1]) - 1}.{m[2]}.{X3D_BLOCK_PARTS[m[3]]}.{m[4]}"
    m = re.fullmatch(r"blocks\.(\d+)\.(.+)\.(\w+)", key)
    if m and int(m[1]) == 0 and m[2] in X3D_STEM_PARTS:
        return f"{X3D_STEM_PARTS[m[2]]}.{m[3]}"
    if m and int(m[1]) == stages + 1 and m[2] in X3D_HEAD_PARTS:
        return f"{X3D_HEAD_PARTS[m[2]]}.{m[3]}"
    return None


def tsm_name(key: str):
    """One TSM-authors key (without "module.") -> our TSMResNet's name (None when it is no ResNet/classifier key).

    base_model.* are torchvision's ResNet names; a shifted block wraps its conv1 in TemporalShift, whose
    inner conv is `.net` (base_model.layer1.0.conv1.net.weight). The classifier is new_fc.* (or
    base_model.fc.* for models trained with dropout 0)."""
    if key.startswith("new_fc."):
        return "fc." + key[len("new_fc."):]
    if key.startswith("base_model."):
        return key[len("base_model."):].replace(".net.", ".")
    return None


def _head_prefix(net: nn.Module) -> str:
    """The classifier's prefix in a backbone's names: "fc.", "proj." or "heads.head."."""
    return next(name for name, m in net.named_modules() if m is net.head()) + "."


def _backbone_entries(fmt: str, sd: dict, net: nn.Module, where: str):
    """Map a backbone-only checkpoint (prefix-free names, see checkpoint_format) onto `net`'s names.

    returns (entries [(checkpoint key, our key or None, tensor)], gaps, notes): `gaps` are prefixes of
    our tensors that this format cannot fill (they stay at their initial values), `notes` lines to print.
    """
    family = {"tsm": "TSMResNet", "pytorchvideo-x3d": "X3D"}.get(fmt)       # backbones.py's class names
    if fmt == "torchvision":
        family = "VideoViT" if "conv_proj.weight" in sd else "TSMResNet"
    if type(net).__name__ != family:
        raise ValueError(f"{where}: a {fmt} checkpoint holds a {family}, but the model's backbone is a "
                         f"{type(net).__name__} (pick the matching --backbone)")
    gaps, notes = [], []
    if fmt == "tsm":
        entries = [(k, tsm_name(k), v) for k, v in sd.items()]
        theirs = sorted({k.rsplit(".conv1.net.", 1)[0] for k in sd if ".conv1.net." in k})
        ours = sorted(f"layer{i}.{j}" for i in range(1, 5) for j, b in enumerate(getattr(net, f"layer{i}")) if b.shift)
        if [t[len("base_model."):] for t in theirs] != ours:
            notes.append(f"the checkpoint shifts {len(theirs)} blocks (its conv1.net wrappers), this model "
                         f"{len(ours)}: the weights fit, but were trained with another shift placement")
    elif fmt == "pytorchvideo-x3d":
        entries = [(k, pytorchvideo_x3d_name(k, len(net.stages)), v) for k, v in sd.items()]
        for s, stage in enumerate(net.stages):
            for j, blk in enumerate(stage):
                if blk.shortcut is not None and blk.conv_a.in_channels == blk.conv_c.out_channels:
                    gaps.append(f"stages.{s}.{j}.shortcut.1.")
        filled = [n for _, n, _ in entries if n]
        left = [g for g in gaps if not any(n.startswith(g) for n in filled)]
        if left:
            notes.append("pytorchvideo's X3D has no BatchNorm on a shortcut that only strides (same width in "
                         f"and out: {', '.join(g[:-1] for g in left)}); ours, like SlowFast's X3D, has one. It "
                         "stays at its initial values: in eval mode (almost) the identity, so the network "
                         "computes what pytorchvideo's does; in training it normalises the shortcut")
    else:  # torchvision; older ViT checkpoints name the MLP layers linear_1/linear_2 (now mlp.0/mlp.3)
        entries = [(k, k.replace("mlp.linear_1.", "mlp.0.").replace("mlp.linear_2.", "mlp.3."), v)
                   for k, v in sd.items()]
    return entries, gaps, notes


def _assign(module: nn.Module, entries, head: str, where: str, fmt: str, gaps=(), notes=()):
    """Copy mapped checkpoint tensors into `module`; every name and shape must fit.

    entries: [(checkpoint key, our key in module.state_dict() or None, tensor)]. head: our classifier's
    prefix; it is dropped (and said so) when the class counts differ. Our tensors may stay at their
    initial values only if they are: BatchNorm counters, the classifier (dropped or absent), the PWTP
    when the checkpoint has none at all, or listed in `gaps`. Anything else missing, any checkpoint
    tensor with no place in the model, and any shape mismatch raise one ValueError listing them all.
    """
    own = module.state_dict()
    ours = {o: (ck, v) for ck, o, v in entries if o is not None and o in own}
    unexpected = [ck if o is None else f"{ck} -> {o}" for ck, o, _ in entries if o is None or o not in own]
    targets = [o for _, o, _ in entries if o is not None]
    unexpected += [f"{ck} -> {o} (a second tensor for the same place)" for ck, o, _ in entries
                   if o in ours and targets.count(o) > 1 and ours[o][0] != ck]
    notes, dropped = list(notes), []
    w = ours.get(head + "weight")
    if w is not None and head + "weight" in own and w[1].shape[0] != own[head + "weight"].shape[0]:
        dropped = [ck for o, (ck, _) in ours.items() if o.startswith(head)]
        notes.append(f"classifier dropped ({', '.join(dropped)}): the checkpoint has {w[1].shape[0]} classes, "
                     f"the model {own[head + 'weight'].shape[0]}; the model keeps its freshly initialised one")
        ours = {o: e for o, e in ours.items() if not o.startswith(head)}
    mismatched = [f"{ck} -> {o}: checkpoint {tuple(v.shape)} vs model {tuple(own[o].shape)}"
                  for o, (ck, v) in ours.items() if v.shape != own[o].shape]
    may_stay = tuple(gaps) + (head,) * (head + "weight" not in ours)
    may_stay += ("pwtp.",) * (not any(o.startswith("pwtp.") for o in ours))
    missing = [k for k in own if k not in ours and not k.endswith("num_batches_tracked") and not k.startswith(may_stay)]
    if unexpected or mismatched or missing:
        def show(name, items):
            return f"\n  {name} ({len(items)}): " + ", ".join(items[:12]) + (" ..." if len(items) > 12 else "") if items else ""
        hint = ("\n  (the checkpoint holds a PWTP: build the model with input='da')"
                if any("pwtp." in u for u in unexpected) else "")
        raise ValueError(f"support/weights.py: the {fmt} checkpoint {where} does not fit this {type(module).__name__}:"
                         + show("not in the model", unexpected) + show("shape mismatch", mismatched)
                         + show("missing from the checkpoint", missing) + hint)
    with torch.no_grad():
        for o, (_, v) in ours.items():
            own[o].copy_(v)                         # state_dict tensors share storage with the module's
    left = [k for k in own if k not in ours and not k.endswith("num_batches_tracked")]
    report = dict(format=fmt, loaded=len(ours), left_initial=left, dropped=dropped, notes=notes)
    _print_report(where, report)
    return report


def _print_report(where, r):
    pwtp = [k for k in r["left_initial"] if k.startswith("pwtp.")]
    rest = [k for k in r["left_initial"] if not k.startswith("pwtp.")]
    left = ([f"pwtp.* ({len(pwtp)} tensors, the whole PWTP)"] if pwtp else []) + rest[:10]
    left += [f"... {len(rest) - 10} more"] if len(rest) > 10 else []
    print(f"starting point {where}: {r['format']} format, {r['loaded']} tensors loaded; left at their initial "
          f"values: {', '.join(left) if left else 'none'}")
    for note in r["notes"]:
        print(f"  note: {note}")


def load_starting_point(model: nn.Module, obj, where: str) -> dict:
    """Load any known checkpoint format (STARTING_POINT_FORMATS) into a DAModel: train.py --pretrained PATH.

    obj: what torch.load returned; where: the path (for the messages). The format is told by the keys.
    Backbone-only formats (tsm, pytorchvideo-x3d, torchvision) fill model.net and leave the PWTP at its
    initial values; this project's checkpoints fill the PWTP too (e.g. a Kinetics DA run fine-tuned on
    UCF101). The classifier is dropped when the class counts differ. Prints what happened and returns
    {"format", "loaded" (number of tensors), "left_initial" (our keys not loaded), "dropped" (checkpoint
    keys not used: the classifier), "notes" (lines printed)}.
    """
    fmt, sd, original = checkpoint_format(obj, where)
    head = "net." + _head_prefix(model.net)
    if fmt == "this-project":
        cfg = obj.get("model_config", {}) if isinstance(obj, dict) else {}
        if cfg.get("backbone", model.backbone_name) != model.backbone_name:
            raise ValueError(f"{where}: this checkpoint's backbone is {cfg['backbone']!r}, the model's "
                             f"{model.backbone_name!r} (pick the matching --backbone)")
        _check_pwtp_shape(cfg, model, sd, where)
        return _assign(model, [(original[k], k, v) for k, v in sd.items()], head, where, fmt)
    entries, gaps, notes = _backbone_entries(fmt, sd, model.net, where)
    entries = [(original[ck], None if o is None else "net." + o, v) for ck, o, v in entries]
    return _assign(model, entries, head, where, fmt, ["net." + g for g in gaps], notes)


# What shapes PWTP's tensors (backbones.build_model's arguments, as model_config records them), by flag.
PWTP_SHAPE = {"frames": "--frames", "proj_dim": "--proj-dim", "kernel_size": "--pwtp-kernel", "stride": "--pwtp-stride",
              "channels": "--pwtp-channels", "expansion": "--pwtp-expansion", "blocks": "--pwtp-blocks",
              "bottleneck_ratio": "--pwtp-bottleneck"}


def _check_pwtp_shape(cfg: dict, model: nn.Module, sd: dict, where: str):
    """A checkpoint's PWTP fits only a PWTP of the same T, D and --pwtp-* shape: its MLP reads the
    T(T-1)/2 frame-pair relations of Eq. 3 and writes T*D values per pixel. Says which differ (a
    checkpoint without model_config is left to _assign's shape check)."""
    if model.pwtp is None or not any(k.startswith("pwtp.") for k in sd) or "frames" not in cfg:
        return
    own = model.config
    differ = [f"{flag} {cfg.get(k, 'default')} (this model: {own.get(k, 'default')})"
              for k, flag in PWTP_SHAPE.items() if cfg.get(k) != own.get(k)]
    if differ:
        t = cfg["frames"]
        raise ValueError(f"{where}: its PWTP was trained with {', '.join(differ)}. PWTP's MLP takes the "
                         f"T(T-1)/2 = {t * (t - 1) // 2} frame-pair relations of Eq. 3 at T = {t}, so these weights "
                         "cannot fill this model's PWTP. Start from a model trained with the same flags (REPRODUCE.md: "
                         "Table 3's source row trains the DA 8x16 Kinetics model its T = 16 rows start from), or "
                         "build this one with the checkpoint's values")


def load_pretrained(net: nn.Module, source, key=None) -> dict:
    """Load backbone weights into a bare backbone: build_model(pretrained=source).

    source: "imagenet" (torchvision's IMAGENET_URLS[key], downloaded once into torch's hub cache and
    checked against the hash in its file name), a path, or an already loaded checkpoint dict. Any
    backbone-only format of STARTING_POINT_FORMATS works; the mapping and checks are those of
    load_starting_point (the classifier is dropped when the class counts differ). Returns its report.
    """
    if isinstance(source, dict):
        obj, where = source, "(the given state dict)"
    elif source == "imagenet":
        if key not in IMAGENET_URLS:
            raise ValueError(f"support/weights.py: no ImageNet checkpoint for {key}: torchvision publishes ResNet-18/34/50/101 "
                             "and ViT-B/16 only (X3D has none). Use --pretrained PATH (e.g. pytorchvideo's Kinetics "
                             "X3D file) or --pretrained none (train from scratch)")
        url = IMAGENET_URLS[key]
        try:
            obj = torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=False, check_hash=True)
        except Exception as e:  # URLError, socket errors, HTTP errors, a bad hash: no usable file
            raise RuntimeError(f"support/weights.py: pretrained='imagenet' could not download {url} ({e}). Offline? "
                               "Download that file elsewhere and use --pretrained PATH (a local file), or "
                               "--pretrained none to train from scratch") from e
        where = url
    else:
        obj, where = torch.load(source, map_location="cpu", weights_only=True), str(source)
    fmt, sd, original = checkpoint_format(obj, where)
    if fmt == "this-project":
        raise ValueError(f"{where} is a checkpoint of this project (PWTP + backbone): load it with "
                         "support.weights.load_starting_point (train.py --pretrained PATH), not into a bare backbone")
    entries, gaps, notes = _backbone_entries(fmt, sd, net, where)
    entries = [(original[ck], o, v) for ck, o, v in entries]
    return _assign(net, entries, _head_prefix(net), where, fmt, gaps, notes)
