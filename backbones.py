"""The four backbones of the paper (Sec. 3.3, Table 1) and the DA model that puts PWTP in front of them.

Dynamic appearance is *backbone-agnostic*: PWTP turns every segment of T RGB frames into ONE frame
of the same size and channels, so any network that eats RGB frames can eat DA frames instead:
  * TSM on ResNet-18/34/50/101: a 2D ResNet on each of the S frames, except that inside every
    residual block (every other one in ResNet-101, as in TSM's code) 1/8 of the channels shift one
    frame forward in time and 1/8 one frame back (`temporal_shift`): free, and it mixes time.
  * X3D-XS and X3D-M: one small 3D network with depthwise 3x3x3 convolutions; XS and M differ only
    in their input (XS: 4 frames of 160^2, M: 16 of 224^2; DA_{4x8} and DA_{16x3}: S = 4 or 16).
  * Video ViT-B/16, adapted as Sec. 3.3 says: the patch tokens of all S frames form one sequence,
    each frame's tokens get the SAME positional embedding, and the mean of all tokens predicts.
Written out, not imported: torchvision is optional, and a reader should *see* the shift inside the
block and the duplicated embedding. Parameter names and shapes are torchvision's, so its ImageNet
checkpoints load tensor for tensor; other codebases' formats are support/weights.py's business.

    clip (B, S*T, C, H, W) --cut--> (B*S, T, C, H, W) --PWTP--> DA (B*S, C, H, W)
        --> backbone in its own layout --> logits (B, num_classes)

With input="rgb" (the paper's RGB baseline) the middle frame of every segment replaces PWTP, so DA
and RGB models cost the same apart from PWTP; "rgbdiff" / "dynimg" are baselines.py's rivals.
"""
import math
from typing import NamedTuple, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

import baselines
import data
from pwtp import PWTP
from support import checkpoints, weights

BACKBONES = ("tsm", "x3d_xs", "x3d_m", "vit_b16")
INPUTS = ("da", "rgb", "rgbdiff", "dynimg")


# =============================================================================================
# TSM: the temporal shift and a ResNet with it inside every residual block
# =============================================================================================
# For every clip, frame t (0-based) and fold = C // fold_div:
#     channels [0, fold)          out[t] = x[t+1]    (the future comes to t;  zero at t = S-1)
#     channels [fold, 2*fold)     out[t] = x[t-1]    (the past comes to t;    zero at t = 0)
#     channels [2*fold, C)        out[t] = x[t]      (untouched, 3/4 of the channels by default)
# The order of TSM's own code (first fold "left", second "right"); the ends are zero-filled, not
# wrapped around. Nothing is learned or multiplied: the shift only moves memory, yet a 3x3 conv
# after it sees three frames at once -- a temporal receptive field for free.
def temporal_shift(x: torch.Tensor, segments: int, fold_div: int = 8) -> torch.Tensor:
    """Shift 1/fold_div of the channels one frame back in time and 1/fold_div one frame forward.
    x: (B*S, C, H, W), each clip's S frames consecutive (TSM's 2D-batch layout) -> the same shape."""
    BS, C, H, W = x.shape
    if BS % segments:
        raise ValueError(f"temporal_shift: batch {BS} is not a multiple of segments={segments}")
    fold = C // fold_div
    x = x.view(BS // segments, segments, C, H, W)                     # (B, S, C, H, W)
    out = torch.zeros_like(x)
    out[:, :-1, :fold] = x[:, 1:, :fold]                               # frame t <- frame t+1
    out[:, 1:, fold:2 * fold] = x[:, :-1, fold:2 * fold]               # frame t <- frame t-1
    out[:, :, 2 * fold:] = x[:, :, 2 * fold:]                          # identity on the rest
    return out.view(BS, C, H, W)


def conv3x3(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


def shortcut(cin, cout, stride):
    """The projection shortcut (torchvision's `downsample`: 1x1 conv + BN) where the block changes
    the size or the width, else None (the identity)."""
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(conv1x1(cin, cout, stride), nn.BatchNorm2d(cout))


def conv1x1(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """ResNet-18/34 block (torchvision names: conv1, bn1, conv2, bn2, downsample.0/.1) + residual shift.

    shift=False leaves the block a plain ResNet block (TSM-R101 shifts every other block only)."""
    expansion = 1

    def __init__(self, cin, planes, stride=1, segments=8, shift=True):
        super().__init__()
        self.segments, self.shift = segments, shift
        self.conv1, self.bn1 = conv3x3(cin, planes, stride), nn.BatchNorm2d(planes)
        self.conv2, self.bn2 = conv3x3(planes, planes), nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = shortcut(cin, planes, stride)

    def forward(self, x):                                              # x: (B*S, C, H, W)
        identity = x if self.downsample is None else self.downsample(x)
        # "Residual shift": only the residual branch sees the shifted features; the identity path
        # keeps every frame's own features, so the spatial model of the ImageNet network survives.
        shifted = temporal_shift(x, self.segments) if self.shift else x
        out = self.relu(self.bn1(self.conv1(shifted)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """ResNet-50/101 block, torchvision's v1.5 (stride in the 3x3 conv) + residual shift before conv1;
    shift=False leaves a plain ResNet block (TSM-R101 shifts every other block only)."""
    expansion = 4

    def __init__(self, cin, planes, stride=1, segments=8, shift=True):
        super().__init__()
        self.segments, self.shift = segments, shift
        cout = planes * self.expansion
        self.conv1, self.bn1 = conv1x1(cin, planes), nn.BatchNorm2d(planes)
        self.conv2, self.bn2 = conv3x3(planes, planes, stride), nn.BatchNorm2d(planes)
        self.conv3, self.bn3 = conv1x1(planes, cout), nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = shortcut(cin, cout, stride)

    def forward(self, x):                                              # x: (B*S, C, H, W)
        identity = x if self.downsample is None else self.downsample(x)
        shifted = temporal_shift(x, self.segments) if self.shift else x
        out = self.relu(self.bn1(self.conv1(shifted)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


RESNET_LAYOUT = {18: (BasicBlock, (2, 2, 2, 2)), 34: (BasicBlock, (3, 4, 6, 3)),
                 50: (Bottleneck, (3, 4, 6, 3)), 101: (Bottleneck, (3, 4, 23, 3))}


class TSMResNet(nn.Module):
    """TSM: a torchvision-layout ResNet whose blocks shift time, a dropout+linear head, average consensus.

    forward(x): x (B*S, C, H, W), each clip's S frames consecutive -> logits (B, num_classes): every
    frame is classified alone (the shift is the only exchange) and the S scores averaged (TSN).
    width=64 is the real network, 16 the small one. As in TSM's code ("blockres"), ResNet-101
    (layer3 >= 23 blocks) shifts every OTHER block, shallower ResNets every block."""

    def __init__(self, num_classes, depth=50, segments=8, dropout=0.5, width=64):
        super().__init__()
        if depth not in RESNET_LAYOUT:
            raise ValueError(f"backbones.py: TSM depth must be one of {sorted(RESNET_LAYOUT)}, got {depth}")
        block, counts = RESNET_LAYOUT[depth]
        self.segments = segments
        # Stem, torchvision names: conv1 7x7/2, bn1, relu, maxpool 3x3/2   -> H/4
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        cin = width
        n_round = 2 if counts[2] >= 23 else 1                          # TSM: every other block for R101
        for i, n in enumerate(counts):                                 # layer1..layer4, H/4 .. H/32
            planes, stride = width * 2 ** i, (1 if i == 0 else 2)
            blocks = []
            for j in range(n):
                blocks.append(block(cin, planes, stride if j == 0 else 1, segments, shift=(j % n_round == 0)))
                cin = planes * block.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(cin, num_classes)
        # torchvision's init for the body; TSN's small normal init for the new head.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        nn.init.normal_(self.fc.weight, std=0.001)
        nn.init.zeros_(self.fc.bias)

    def head(self):
        return self.fc

    def forward(self, x):                                              # (B*S, C, H, W)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))           # (B*S, w, H/4, W/4)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))     # (B*S, F, H/32, W/32)
        x = self.avgpool(x).flatten(1)                                 # (B*S, F)
        x = self.fc(self.dropout(x))                                   # (B*S, K)
        return x.view(-1, self.segments, x.shape[-1]).mean(dim=1)      # (B, K) average consensus


# =============================================================================================
# X3D (XS and M share this network; only their inputs differ)
# =============================================================================================
def round_width(width, multiplier, divisor=8):
    """X3D's channel rounding: nearest multiple of 8, at least 8, never more than 10% below."""
    width *= multiplier
    out = max(divisor, int(width + divisor / 2) // divisor * divisor)
    return out + divisor if out < 0.9 * width else out


class SqueezeExcite(nn.Module):
    """Squeeze-excitation (ratio 1/16): global pool -> 1x1x1 down -> ReLU -> 1x1x1 up -> sigmoid gate."""

    def __init__(self, channels, ratio=1 / 16):
        super().__init__()
        hidden = round_width(channels, ratio)
        self.fc1 = nn.Conv3d(channels, hidden, 1, bias=True)
        self.fc2 = nn.Conv3d(hidden, channels, 1, bias=True)

    def forward(self, x):                                              # (B, C, T, H, W)
        s = F.adaptive_avg_pool3d(x, 1)                                # (B, C, 1, 1, 1)
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(s))))


class X3DBlock(nn.Module):
    """X3D bottleneck: 1x1x1 -> depthwise 3x3x3 (spatial stride) -> [SE] -> swish -> 1x1x1, BN after each."""

    def __init__(self, cin, inner, cout, stride, use_se):
        super().__init__()
        self.conv_a, self.bn_a = nn.Conv3d(cin, inner, 1, bias=False), nn.BatchNorm3d(inner)
        # Depthwise (groups = channels): mixes space and time, never channels, which makes X3D cheap.
        self.conv_b = nn.Conv3d(inner, inner, 3, stride=(1, stride, stride), padding=1, groups=inner, bias=False)
        self.bn_b = nn.BatchNorm3d(inner)
        self.se = SqueezeExcite(inner) if use_se else None
        self.conv_c, self.bn_c = nn.Conv3d(inner, cout, 1, bias=False), nn.BatchNorm3d(cout)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv3d(cin, cout, 1, stride=(1, stride, stride), bias=False),
                                          nn.BatchNorm3d(cout))

    def forward(self, x):                                              # (B, C, T, H, W)
        identity = x if self.shortcut is None else self.shortcut(x)
        out = F.relu(self.bn_a(self.conv_a(x)))
        out = self.bn_b(self.conv_b(out))
        if self.se is not None:
            out = self.se(out)
        out = F.silu(out)                                              # swish(x) = x * sigmoid(x)
        out = self.bn_c(self.conv_c(out))
        return F.relu(out + identity)


class X3D(nn.Module):
    """X3D: stem (1x3x3/2 conv, depthwise 5x1x1 conv), 4 stages of X3D blocks, 1x1x1 conv, pool, 2048-d head.

    forward(x): x (B, C, T, H, W) -> logits (B, num_classes). Each stage halves H and W in its first
    block, time is never strided, SE sits on every other block. Full size: widths 24/48/96/192
    (inner x2.25), depths 3/5/11/7 (XS/S/M alike), head 192 -> 432 -> 2048 -> classes."""

    def __init__(self, num_classes, widths=(24, 48, 96, 192), depths=(3, 5, 11, 7), expansion=2.25,
                 stem=24, head_inner=432, head_dim=2048, dropout=0.5):
        super().__init__()
        # Stem: spatial 1x3x3 conv, then a depthwise temporal 5x1x1 conv ("(2+1)D" split of a 3D conv).
        self.stem_xy = nn.Conv3d(3, stem, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1), bias=False)
        self.stem_t = nn.Conv3d(stem, stem, (5, 1, 1), padding=(2, 0, 0), groups=stem, bias=False)
        self.stem_bn = nn.BatchNorm3d(stem)
        stages, cin = [], stem
        for w, d in zip(widths, depths):
            inner = int(round(w * expansion))
            blocks = [X3DBlock(cin if j == 0 else w, inner, w, 2 if j == 0 else 1, use_se=(j % 2 == 0))
                      for j in range(d)]
            stages.append(nn.Sequential(*blocks))
            cin = w
        self.stages = nn.Sequential(*stages)
        # Head: 1x1x1 conv to the inner width, global pool, then a 1x1x1 "linear" to 2048, ReLU, dropout,
        # and the classifier. The 2048-d layer after pooling is cheap (it runs once per clip).
        self.head_conv = nn.Conv3d(cin, head_inner, 1, bias=False)
        self.head_bn = nn.BatchNorm3d(head_inner)
        self.head_lin = nn.Conv3d(head_inner, head_dim, 1, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(head_dim, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        nn.init.normal_(self.proj.weight, std=0.01)
        nn.init.zeros_(self.proj.bias)

    def head(self):
        return self.proj

    def forward(self, x):                                              # (B, C, T, H, W)
        x = F.relu(self.stem_bn(self.stem_t(self.stem_xy(x))))         # (B, 24, T, H/2, W/2)
        x = self.stages(x)                                             # (B, 192, T, H/32, W/32)
        x = F.relu(self.head_bn(self.head_conv(x)))                    # (B, 432, T, H/32, W/32)
        x = F.adaptive_avg_pool3d(x, 1)                                # (B, 432, 1, 1, 1)
        x = F.relu(self.head_lin(x)).flatten(1)                        # (B, 2048)
        return self.proj(self.dropout(x))                              # (B, K)


# =============================================================================================
# Video ViT-B/16 in torchvision's vit_b_16 layout
# =============================================================================================
class EncoderBlock(nn.Module):
    """Pre-norm transformer block, torchvision names: ln_1, self_attention, ln_2, mlp.0 / mlp.3."""

    def __init__(self, dim, heads, mlp_dim, dropout=0.0, attention_dropout=0.0):
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim, eps=1e-6)
        self.self_attention = nn.MultiheadAttention(dim, heads, dropout=attention_dropout, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.ln_2 = nn.LayerNorm(dim, eps=1e-6)
        # Indices 0..4 (Linear, GELU, Dropout, Linear, Dropout) so the keys are mlp.0.* and mlp.3.*.
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(mlp_dim, dim), nn.Dropout(dropout))
        for lin in (self.mlp[0], self.mlp[3]):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.normal_(lin.bias, std=1e-6)

    def forward(self, x):                                              # (B, L, dim)
        y = self.ln_1(x)
        y, _ = self.self_attention(y, y, y, need_weights=False)
        x = x + self.dropout(y)
        return x + self.mlp(self.ln_2(x))


class Encoder(nn.Module):
    """Holds encoder.pos_embedding, encoder.layers.encoder_layer_N, encoder.ln (torchvision names)."""

    def __init__(self, tokens, dim, depth, heads, mlp_dim, dropout=0.0):
        super().__init__()
        self.pos_embedding = nn.Parameter(torch.empty(1, tokens, dim).normal_(std=0.02))  # ONE frame's worth
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.Sequential()
        for i in range(depth):
            self.layers.add_module(f"encoder_layer_{i}", EncoderBlock(dim, heads, mlp_dim, dropout))
        self.ln = nn.LayerNorm(dim, eps=1e-6)


class VideoViT(nn.Module):
    """ViT-B/16 for S frames (Sec. 3.3): joint encoding, duplicated positional embedding, mean-token head.

    forward(x): x (B, S, C, H, W) -> logits (B, num_classes), H = W = image_size.

    The image ViT's positional table (one class token + (H/16)*(W/16) patches) is *duplicated for
    each segment*: attention knows where a patch is in the image, not which frame it came from
    (how we read Sec. 4.1's "does not model the interactions between different frames"). All
    S*(H/16)*(W/16) patch tokens and the class token form one sequence. The stored parameter keeps
    torchvision's shape, so an ImageNet checkpoint loads strictly; the duplication is in forward.
    The prediction is the mean of ALL last-layer tokens, class token included (Sec. 3.3).
    """

    def __init__(self, num_classes, image_size=224, patch=16, dim=768, depth=12, heads=12, mlp_dim=3072,
                 dropout=0.0, head_dropout=0.0):
        super().__init__()
        if image_size % patch:
            raise ValueError(f"backbones.py: ViT crop_size {image_size} must be a multiple of the patch {patch}")
        self.image_size, self.patch, self.dim = image_size, patch, dim
        self.conv_proj = nn.Conv2d(3, dim, patch, stride=patch)        # one token per 16x16 patch
        self.class_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.encoder = Encoder(1 + (image_size // patch) ** 2, dim, depth, heads, mlp_dim, dropout)
        self.head_dropout = nn.Dropout(head_dropout)
        self.heads = nn.Sequential()
        self.heads.add_module("head", nn.Linear(dim, num_classes))
        fan_in = 3 * patch * patch                                     # torchvision's conv_proj init
        nn.init.trunc_normal_(self.conv_proj.weight, std=math.sqrt(1 / fan_in))
        nn.init.zeros_(self.conv_proj.bias)
        # torchvision zero-initialises the head; we use a small normal init instead so that, from the
        # first step, gradients reach every layer (a zero head blocks them for one step).
        nn.init.normal_(self.heads.head.weight, std=0.02)
        nn.init.zeros_(self.heads.head.bias)

    def head(self):
        return self.heads.head

    def forward(self, x):                                              # (B, S, C, H, W)
        B, S, C, H, W = x.shape
        if (H, W) != (self.image_size, self.image_size):
            raise ValueError(f"backbones.py: this ViT was built for {self.image_size}x{self.image_size} frames "
                             f"(crop_size), got {H}x{W}")
        tok = self.conv_proj(x.flatten(0, 1))                          # (B*S, dim, H/16, W/16)
        tok = tok.flatten(2).transpose(1, 2)                           # (B*S, P, dim), P = patches per frame
        P = tok.shape[1]
        pos = self.encoder.pos_embedding                               # (1, 1 + P, dim)
        tok = tok.view(B, S, P, self.dim) + pos[:, None, 1:]          # same embedding for every frame
        tok = tok.reshape(B, S * P, self.dim)                          # (B, S*P, dim) one joint sequence
        cls = self.class_token.expand(B, -1, -1) + pos[:, :1]         # (B, 1, dim)
        z = torch.cat([cls, tok], dim=1)                               # (B, 1 + S*P, dim)
        z = self.encoder.ln(self.encoder.layers(self.encoder.dropout(z)))
        z = z.mean(dim=1)                                              # (B, dim) mean of all tokens
        return self.heads.head(self.head_dropout(z))                   # (B, K)


# =============================================================================================
# The DA model
# =============================================================================================
class ModelOutput(NamedTuple):
    logits: torch.Tensor            # (B, num_classes)
    pwtp: Optional[tuple]           # PWTPOutput (da, x_hat, residual, A, enopr) for input="da", else None


class DAModel(nn.Module):
    """PWTP (or an RGB / baseline frame picker) in front of a backbone; see build_model for arguments.
    The clip's S*T frames are S consecutive segments of T frames (spread (TSN) or dense: data.py)."""

    def __init__(self, backbone, num_classes, input="da", segments=8, frames=8, proj_dim=1, depth=50,
                 dropout=0.5, pretrained=None, small=False, crop_size=224, input_scale=1.0, **pwtp_kwargs):
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"backbones.py: backbone must be one of {BACKBONES}, got {backbone!r}")
        if input not in INPUTS:
            raise ValueError(f"backbones.py: input must be one of {INPUTS}, got {input!r}")
        if segments < 1 or frames < 1:
            raise ValueError(f"backbones.py: segments and frames must be >= 1, got S={segments}, T={frames}")
        if input in ("da", "rgbdiff", "dynimg") and frames < 2:
            raise ValueError(f"backbones.py: input={input!r} needs frames (T) >= 2 per segment, got {frames}")
        if input != "da" and pwtp_kwargs:
            raise ValueError(f"backbones.py: PWTP options {sorted(pwtp_kwargs)} given but input={input!r} has no PWTP")
        self.backbone_name, self.input, self.segments, self.frames = backbone, input, segments, frames
        self.num_classes = num_classes
        # input_scale (ours; not in the paper): DA frames are residuals, far smaller than normalised
        # RGB, so a backbone made for RGB first sees near-zero inputs; 1.0 is the paper's model.
        self.input_scale = float(input_scale)
        # build_model(**config) rebuilds the same architecture; the weights live in the checkpoint,
        # so `pretrained` is recorded as None (a rebuild must not need the download or the file).
        self.config = dict(backbone=backbone, num_classes=num_classes, input=input, segments=segments,
                           frames=frames, proj_dim=proj_dim, depth=depth, dropout=dropout, pretrained=None,
                           small=small, crop_size=crop_size, input_scale=self.input_scale, **pwtp_kwargs)

        self.pwtp = PWTP(frames=frames, proj_dim=proj_dim, **pwtp_kwargs) if input == "da" else None
        # ImageNet's mean and std (data.py) on the model's device: forward normalises uint8 clips with them
        self.register_buffer("pixel_mean", torch.tensor(data.IMAGENET_MEAN).view(3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(data.IMAGENET_STD).view(3, 1, 1), persistent=False)
        if backbone == "tsm":
            self.net = TSMResNet(num_classes, depth=depth, segments=segments, dropout=dropout,
                                 width=16 if small else 64)
        elif backbone in ("x3d_xs", "x3d_m"):   # small: narrow, shallow; stage 3's 2nd block tests one without SE
            narrow = dict(widths=(8, 16, 24, 32), depths=(1, 1, 2, 1), stem=8, head_inner=72, head_dim=128)
            self.net = X3D(num_classes, dropout=dropout, **(narrow if small else {}))
        else:  # vit_b16
            narrow = dict(dim=64, depth=2, heads=2, mlp_dim=128)
            self.net = VideoViT(num_classes, image_size=crop_size, head_dropout=dropout, **(narrow if small else {}))

        if pretrained is not None:
            if small and pretrained == "imagenet":
                raise ValueError("backbones.py: pretrained='imagenet' needs the full-size network, not small=True "
                                 "(use --pretrained none with the small configuration)")
            key = ("tsm", depth) if backbone == "tsm" else (backbone, None)
            # Published weights come in other codebases' names: support/weights.py maps them onto ours.
            weights.load_pretrained(self.net, pretrained, key)

    # --- parameter groups for mgda.py and the optimiser -------------------------------------
    def shared_parameters(self):
        """theta_p: the PWTP parameters, shared by L_c and L_p (empty without PWTP)."""
        return [] if self.pwtp is None else list(self.pwtp.parameters())

    def recognition_parameters(self):
        """theta_c: backbone + classifier, trained by L_c alone."""
        return list(self.net.parameters())

    def head_parameters(self):
        """The final classifier only (a subset of recognition_parameters; x5 LR and weight decay)."""
        return list(self.net.head().parameters())

    # --- forward ---------------------------------------------------------------------------
    # The RGB baseline sees the middle frame of each segment (for even T the later of the two
    # middle ones): S frames, exactly as many as the DA model, so both cost the same.
    def forward(self, clip):
        """clip (B, S*T, C, H, W), uint8 pixels (data.py's items) or float frames already normalised ->
        ModelOutput: logits (B, classes), PWTPOutput or None."""
        if clip.dim() != 5 or clip.shape[1] != self.segments * self.frames:
            raise ValueError(f"DAModel: expected a clip (B, S*T={self.segments}*{self.frames}, C, H, W), "
                             f"got {tuple(clip.shape)}")
        clip = clip.contiguous()        # the loader's clips are channels-last in memory (data.crop_pixels)
        if clip.dtype == torch.uint8:   # pixels -> [0, 1], then ImageNet's mean and std, here (= data.normalize)
            clip = clip.float().div_(255.0).sub_(self.pixel_mean).div_(self.pixel_std)
        (B, _, C, H, W), S, out = clip.shape, self.segments, None
        x = clip.reshape(B * S, self.frames, C, H, W)                # (B*S, T, C, H, W) one row per segment
        if self.input == "da":
            out = self.pwtp(x)                                         # Eq. 1-7 on every segment
            frames = out.da                                            # (B*S, C, H, W) one DA frame each
        elif self.input == "rgb":
            frames = x[:, self.frames // 2]
        else:
            frames = (baselines.rgb_difference if self.input == "rgbdiff" else baselines.dynamic_image)(x)
        if self.input_scale != 1.0:
            frames = frames * self.input_scale
        if self.backbone_name == "tsm":
            logits = self.net(frames)                                  # 2D batch (B*S, C, H, W)
        elif self.backbone_name in ("x3d_xs", "x3d_m"):
            logits = self.net(frames.view(B, S, C, H, W).transpose(1, 2))   # (B, C, S, H, W): S is time
        else:
            logits = self.net(frames.view(B, S, C, H, W))              # (B, S, C, H, W)
        return ModelOutput(logits, out)


def build_model(backbone, num_classes, input="da", segments=8, frames=8, proj_dim=1, depth=50, dropout=0.5,
                pretrained=None, small=False, crop_size=224, input_scale=1.0, **pwtp_kwargs) -> DAModel:
    """The one factory train.py and evaluate.py use.

    backbone: "tsm" (ResNet `depth` 18/34/50/101), "x3d_xs", "x3d_m", "vit_b16" (crop_size = frame size).
    input: "da" (PWTP with frames=T, proj_dim=D and **pwtp_kwargs), "rgb" (each segment's middle
      frame), "rgbdiff" / "dynimg" (baselines.py); the backbone always sees S frames.
    pretrained: None, "imagenet" (torchvision's, downloaded once), or a backbone-only checkpoint
      (support/weights.py); this project's own checkpoints load after building.
    small: the narrow CPU configuration (ResNet widths /4; X3D widths 8-32, 5 blocks; ViT dim 64, 2 layers).
    """
    return DAModel(backbone, num_classes, input=input, segments=segments, frames=frames, proj_dim=proj_dim,
                   depth=depth, dropout=dropout, pretrained=pretrained, small=small, crop_size=crop_size,
                   input_scale=input_scale, **pwtp_kwargs)


def model_from_checkpoint(ckpt, where="the checkpoint"):
    """The DAModel a checkpoint (or export) of train.py describes, with its weights, on the CPU."""
    config = dict(ckpt["model_config"], pretrained=None)    # the weights come from the checkpoint
    try:
        model = build_model(**config)
        model.load_state_dict(checkpoints.model_state(ckpt))
    except (TypeError, ValueError, RuntimeError) as e:      # a hand-edited model_config, say
        raise SystemExit(f"{where}: its model_config {config} does not describe its weights: "
                         f"{str(e).splitlines()[0]}") from None
    return model
