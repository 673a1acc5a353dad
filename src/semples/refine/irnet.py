"""IRNet (Ahn, Cho & Kwak, CVPR'19): class boundaries and displacement fields from IR labels.

IR labels are stride-4 maps of confident foreground classes, confident background (0) and 255
(ignore), made from CAMs. IRNet never sees a boundary label: it learns an edge map whose path
affinities (``1 - max edge`` between two pixels, :func:`edge_to_affinity`) are high for pairs of
the same label and low for pairs of different labels (:func:`affinity_labels`), and a
displacement field whose differences match the offsets of same-instance pairs. The edge map then
drives the random walk of :mod:`semples.refine.random_walk` (:func:`predict_edge`).

Maps are at stride 4: an H x W image gives ceil(H / 4) x ceil(W / 4) maps, which IR labels
subsampled as ``label[::4, ::4]`` match. With ``image_scale`` 2 (or 4) IRNet upsamples the image
first, so its maps are at stride 2 (or 1) of the image: IRN's grid for images far smaller than
VOC's, whose objects would otherwise be a few cells wide (``IRNet.stride``). With sides that
are not multiples of the stride the last row and column cover a partial cell, and the flipped
pass of :func:`predict_edge` is then shifted by that part of a cell; use multiples of 4 for
exact alignment.

Displacements are (dy, dx) in map cells: ``p + D(p)`` is the centroid of p's instance.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

from semples.checkpoints import load_state
from semples.data.classes import IGNORE_INDEX
from semples.models.cam_networks import IMAGENET_MEAN, IMAGENET_STD
from semples.refine.random_walk import Offset, search_paths

_EPS = 1e-5  # IRN's guard in the logs and the normalisers of its loss
OUTPUT_STRIDE = 4  # of IRNet's input, at which its edge and displacement maps are
IMAGE_SCALES = (1, 2, 4)  # IRNet's input upsampling: its maps at stride 4, 2 or 1 of the image
STRIDES = tuple(OUTPUT_STRIDE // scale for scale in IMAGE_SCALES)  # of the image


def _reduce(in_channels: int, out_channels: int, upsample: int = 1) -> nn.Sequential:
    """IRN's branch layer: 1x1 conv, GroupNorm, optional bilinear upsampling, ReLU."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, 1, bias=False),
        nn.GroupNorm(min(16, out_channels // 8), out_channels),
    ]
    if upsample > 1:
        layers.append(nn.Upsample(scale_factor=upsample, mode="bilinear", align_corners=False))
    layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def _fit(x: Tensor, like: Tensor) -> Tensor:
    """Crop an upsampled map to ``like``'s size (odd sizes upsample to one cell too many)."""
    return x[..., : like.shape[-2], : like.shape[-1]]


class _ResNet50Trunk(nn.Module):
    """torchvision's ResNet-50 with IRN's strides (2, 2, 2, 1): five stages at strides
    4, 4, 8, 16, 16. Child names are torchvision's, so its state-dict keys load unchanged."""

    channels = (64, 256, 512, 1024, 2048)
    strides = (4, 4, 8, 16, 16)

    def __init__(self) -> None:
        super().__init__()
        resnet = torchvision.models.resnet50(weights=None)
        resnet.layer4[0].conv2.stride = (1, 1)
        resnet.layer4[0].downsample[0].stride = (1, 1)
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
            setattr(self, name, getattr(resnet, name))

    def forward(self, x: Tensor) -> list[Tensor]:
        stage1 = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        stage2 = self.layer1(stage1)
        stage3 = self.layer2(stage2)
        stage4 = self.layer3(stage3)
        return [stage1, stage2, stage3, stage4, self.layer4(stage4)]


def _conv(in_channels: int, out_channels: int, stride: int = 1, dilation: int = 1) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride, dilation, dilation, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class _SmallTrunk(nn.Module):
    """A random-init trunk for the 96 px toy world with the ResNet trunk's stage layout:
    stages at strides 4, 4, 8, 8, 8 (the last two dilated by 2 and 4, receptive field 119 px)."""

    channels = (32, 48, 64, 96, 128)
    strides = (4, 4, 8, 8, 8)

    def __init__(self) -> None:
        super().__init__()
        self.stages = nn.ModuleList(
            [
                nn.Sequential(_conv(3, 32, stride=2), _conv(32, 32, stride=2)),
                _conv(32, 48),
                _conv(48, 64, stride=2),
                _conv(64, 96, dilation=2),
                _conv(96, 128, dilation=4),
            ]
        )

    def forward(self, x: Tensor) -> list[Tensor]:
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


class _EdgeBranch(nn.Module):
    """Every stage reduced to ``width`` channels at stride 4, concatenated, one logit map."""

    def __init__(self, channels: Sequence[int], strides: Sequence[int], width: int) -> None:
        super().__init__()
        self.reduce = nn.ModuleList(
            _reduce(c, width, s // 4) for c, s in zip(channels, strides, strict=True)
        )
        self.classify = nn.Conv2d(width * len(channels), 1, 1)

    def forward(self, features: list[Tensor]) -> Tensor:
        maps = [_fit(reduce(x), features[0]) for reduce, x in zip(self.reduce, features)]
        return self.classify(torch.cat(maps, 1))


class MeanShift(nn.Module):
    """IRN's mean shift of the displacement field.

    The loss only compares displacements of pixel pairs, so the field is defined up to a
    constant. Training tracks its running mean (momentum as batch norm's); inference subtracts
    it, so that the mostly background pixels, which should not move, get displacements near 0.
    """

    def __init__(self, channels: int, momentum: float = 0.1) -> None:
        super().__init__()
        self.momentum = momentum
        self.register_buffer("running_mean", torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            with torch.no_grad():
                self.running_mean.lerp_(x.mean((0, 2, 3)), self.momentum)
            return x
        return x - self.running_mean.view(1, -1, 1, 1)


class _DisplacementBranch(nn.Module):
    """IRN's displacement branch: the deep stages merged at stride 8, upsampled to stride 4,
    merged with the two stride-4 stages, then a two-channel (dy, dx) field."""

    def __init__(self, channels: Sequence[int], strides: Sequence[int], width: int) -> None:
        super().__init__()
        self.fine = nn.ModuleList(
            [_reduce(channels[0], width // 4), _reduce(channels[1], width // 2)]
        )
        self.coarse = nn.ModuleList(
            _reduce(c, width, s // 8) for c, s in zip(channels[2:], strides[2:], strict=True)
        )
        self.merge_coarse = _reduce(width * len(self.coarse), width, upsample=2)
        self.head = nn.Sequential(
            _reduce(width // 4 + width // 2 + width, width),
            nn.Conv2d(width, 2, 1, bias=False),
            MeanShift(2),
        )

    def forward(self, features: list[Tensor]) -> Tensor:
        fine = [reduce(x) for reduce, x in zip(self.fine, features[:2])]
        coarse = [reduce(x) for reduce, x in zip(self.coarse, features[2:])]
        coarse = [_fit(x, coarse[0]) for x in coarse]
        merged = _fit(self.merge_coarse(torch.cat(coarse, 1)), fine[0])
        return self.head(torch.cat([*fine, merged], 1))


# backbone name -> (trunk, edge branch width, displacement branch width)
_BACKBONES: dict[str, tuple[type[nn.Module], int, int]] = {
    "resnet50": (_ResNet50Trunk, 32, 256),  # IRN's widths
    "small": (_SmallTrunk, 32, 64),  # narrower displacement branch, sized for 2 CPU cores
}
IRNET_BACKBONES = tuple(_BACKBONES)


class IRNet(nn.Module):
    """IRN's network: an edge logit map and a displacement field, both at stride 4 of its
    (possibly upsampled) input.

    ``backbone="resnet50"`` is IRN's: an ImageNet ResNet-50 (``weights``: a local torchvision
    state dict; its ``fc`` is ignored) that is never trained, its features detached and its
    batch norm in eval mode (IRN's ``Net.train``), so only the branches learn from the IR labels.
    ``backbone="small"`` is a random-init trunk for the toy world; it is trained with the
    branches, since random features carry no boundary information of their own.
    ``image_scale`` upsamples the input (bilinear) so that the maps are at ``stride`` =
    4 / ``image_scale`` of the image.
    """

    def __init__(
        self, backbone: str = "resnet50", weights: str | Path | None = None, image_scale: int = 1
    ) -> None:
        super().__init__()
        if image_scale not in IMAGE_SCALES:
            raise ValueError(f"image_scale must be one of {IMAGE_SCALES}, got {image_scale}")
        self.image_scale = image_scale
        self.stride = OUTPUT_STRIDE // image_scale
        if backbone not in _BACKBONES:
            raise ValueError(
                f"unknown IRNet backbone {backbone!r}; choose one of {sorted(_BACKBONES)}"
            )
        if weights is not None and backbone != "resnet50":
            raise ValueError(
                f"weights are ImageNet ResNet-50 weights; backbone {backbone!r} has none"
            )
        trunk, edge_width, displacement_width = _BACKBONES[backbone]
        self.backbone = trunk()
        self.backbone_frozen = backbone == "resnet50"
        self.backbone.requires_grad_(not self.backbone_frozen)
        channels, strides = self.backbone.channels, self.backbone.strides
        self.edge_branch = _EdgeBranch(channels, strides, edge_width)
        self.displacement_branch = _DisplacementBranch(channels, strides, displacement_width)
        # Non-persistent: the constants stay out of checkpoints.
        mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
        self.register_buffer("pixel_mean", mean.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", std.view(1, 3, 1, 1), persistent=False)
        if weights is not None:
            _load_backbone_weights(self.backbone, Path(weights))

    def train(self, mode: bool = True) -> IRNet:
        super().train(mode)
        if self.backbone_frozen:
            self.backbone.eval()
        return self

    def parameter_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(trainable trunk + edge branch, displacement branch): IRN gives the second 10x lr."""
        edge_side = [p for p in self.backbone.parameters() if p.requires_grad]
        edge_side += list(self.edge_branch.parameters())
        return edge_side, list(self.displacement_branch.parameters())

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """``(edge logits [B, 1, h, w], displacement [B, 2, h, w])`` from RGB images
        ``[B, 3, H, W]`` in [0, 1]; h, w = ceil(H / stride), ceil(W / stride)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape [B, 3, H, W], got {tuple(images.shape)}")
        if self.image_scale > 1:
            images = F.interpolate(
                images, scale_factor=self.image_scale, mode="bilinear", align_corners=False
            )
        normalized = (images - self.pixel_mean) / self.pixel_std
        frozen = torch.no_grad() if self.backbone_frozen else contextlib.nullcontext()
        with frozen:
            features = self.backbone(normalized)
        return self.edge_branch(features), self.displacement_branch(features)


def _load_backbone_weights(trunk: nn.Module, path: Path) -> None:
    state = load_state(path)
    if not isinstance(state, dict):
        raise ValueError(f"weights file {path} does not hold a state dict")
    try:
        trunk.load_state_dict({k: v for k, v in state.items() if not k.startswith("fc.")})
    except RuntimeError as error:
        raise ValueError(f"weights file {path} is not a torchvision ResNet-50: {error}") from error


def _check_radius(radius: int) -> None:
    if radius < 2:
        raise ValueError(f"radius must be >= 2 (radius 1 has no search direction), got {radius}")


def _destinations(radius: int) -> list[Offset]:
    return [offset for offset, _ in search_paths(radius)]


def _neighbours(x: Tensor, offsets: Sequence[Offset], fill: float) -> Tensor:
    """``x[..., y + dy, x + dx]`` for every offset, stacked before the h, w dims; ``fill``
    where the neighbour falls outside the map."""
    height, width = x.shape[-2:]
    reach = max(max(abs(dy), abs(dx)) for dy, dx in offsets)
    padded = F.pad(x, (reach, reach, reach, reach), value=fill)
    return torch.stack(
        [
            padded[..., reach + dy : reach + dy + height, reach + dx : reach + dx + width]
            for dy, dx in offsets
        ],
        dim=-3,
    )


def affinity_labels(labels: Tensor, radius: int = 10) -> tuple[Tensor, Tensor, Tensor]:
    """IRN's pair labels ``(bg_pos, fg_pos, neg)``, float masks ``[B, D, h, w]``.

    Entry (k, y, x) is the pair of p = (y, x) and p + d_k, d_k the k-th direction of
    :func:`~semples.refine.random_walk.search_paths`: bg_pos if both are background (0),
    fg_pos if both are the same class > 0, neg if both are labelled and differ. Pairs with an
    ignored pixel (255) or leaving the map are none of the three. IRN instead crops the source
    pixels to those whose every neighbour lies inside the map; keeping every in-map pair loses
    nothing and matters on small maps (a 24 x 24 map cropped at radius 10 keeps 15 x 6 sources).
    """
    if labels.ndim != 3 or labels.is_floating_point():
        raise ValueError(
            f"labels must be integer [B, h, w], got {labels.dtype} {tuple(labels.shape)}"
        )
    _check_radius(radius)
    source = labels.unsqueeze(1)
    target = _neighbours(labels, _destinations(radius), fill=IGNORE_INDEX)
    labelled = (source != IGNORE_INDEX) & (target != IGNORE_INDEX)
    same = labelled & (source == target)
    return (same & (source == 0)).float(), (same & (source > 0)).float(), (labelled & ~same).float()


@functools.cache
def _path_table(radius: int) -> tuple[tuple[Offset, ...], tuple[int, ...], tuple[int, ...]]:
    """Every offset some path of ``radius`` crosses, then all paths as positions in that list,
    concatenated, and their lengths."""
    paths = [path for _, path in search_paths(radius)]
    offsets = tuple(sorted({offset for path in paths for offset in path}))
    position = {offset: i for i, offset in enumerate(offsets)}
    flat = tuple(position[offset] for path in paths for offset in path)
    return offsets, flat, tuple(len(path) for path in paths)


def edge_to_affinity(edge_prob: Tensor, radius: int = 10) -> Tensor:
    """Path affinities ``1 - max(edge on the path)`` ``[B, D, h, w]`` of every pixel and
    direction, 0 for pairs leaving the map (as :func:`~semples.refine.random_walk.edge_affinities`).

    Differentiable; as IRN's max pooling, the gradient of a pair reaches only its path's largest
    edge pixel. The winners are found without autograd and then gathered, so autograd keeps one
    index per pair instead of every path pixel of every pair.
    """
    if edge_prob.ndim != 4 or edge_prob.shape[1] != 1:
        raise ValueError(f"edge_prob must be [B, 1, h, w], got {tuple(edge_prob.shape)}")
    _check_radius(radius)
    offsets, flat_paths, lengths = _path_table(radius)
    shifted = _neighbours(edge_prob[:, 0], offsets, fill=1.0)  # [B, K, h, w]
    with torch.no_grad():
        paths = torch.tensor(flat_paths, device=edge_prob.device).split(lengths)
        # max(dim).indices: far faster than argmax(dim) on CPU, and also the first maximum.
        index = torch.stack(
            [path[shifted.index_select(1, path).max(1).indices] for path in paths], 1
        )
    return 1 - shifted.gather(1, index)


def _masked_mean(values: Tensor, mask: Tensor, weight: float = 1.0) -> Tensor:
    return (values * mask).sum() / (weight * mask.sum() + _EPS)


def irnet_loss(
    edge_logits: Tensor, displacement: Tensor, labels: Tensor, radius: int = 10
) -> dict[str, Tensor]:
    """IRN's loss terms and ``"total"`` = (pos_aff + neg_aff) / 2 + (dp_fg + dp_bg) / 2.

    * pos_aff: mean of the background and foreground ``-log(affinity)`` over positive pairs;
    * neg_aff: ``-log(1 - affinity)`` over negative pairs;
    * dp_fg: ``|D(p) - D(p + d) - d|`` over foreground positive pairs (both pixels of one
      instance point at its centroid), dp_bg: ``|D(p) - D(p + d)|`` over background positive
      pairs; both are L1 over (dy, dx), halved as IRN's (per coordinate).
    """
    batch, height, width = labels.shape if labels.ndim == 3 else (-1, -1, -1)
    if edge_logits.shape != (batch, 1, height, width) or displacement.shape != (
        batch,
        2,
        height,
        width,
    ):
        raise ValueError(
            f"expected edge logits [B, 1, h, w], displacement [B, 2, h, w] and labels [B, h, w], "
            f"got {tuple(edge_logits.shape)}, {tuple(displacement.shape)}, {tuple(labels.shape)}"
        )
    bg_pos, fg_pos, neg = affinity_labels(labels, radius)
    affinity = edge_to_affinity(torch.sigmoid(edge_logits), radius)
    pos_aff = (
        _masked_mean(-torch.log(affinity + _EPS), bg_pos) / 2
        + _masked_mean(-torch.log(affinity + _EPS), fg_pos) / 2
    )
    neg_aff = _masked_mean(-torch.log(1 + _EPS - affinity), neg)

    destinations = _destinations(radius)
    offsets = torch.tensor(destinations, dtype=displacement.dtype, device=displacement.device)
    offsets = offsets.T.reshape(1, 2, -1, 1, 1)
    difference = displacement.unsqueeze(2) - _neighbours(displacement, destinations, fill=0.0)
    dp_fg = _masked_mean((difference - offsets).abs(), fg_pos.unsqueeze(1), weight=2)
    dp_bg = _masked_mean(difference.abs(), bg_pos.unsqueeze(1), weight=2)
    total = (pos_aff + neg_aff) / 2 + (dp_fg + dp_bg) / 2
    return {"pos_aff": pos_aff, "neg_aff": neg_aff, "dp_fg": dp_fg, "dp_bg": dp_bg, "total": total}


@torch.no_grad()
def predict_edge(model: IRNet, image: Tensor) -> Tensor:
    """IRN's inference edge map ``[ceil(H / stride), ceil(W / stride)]`` in [0, 1] (the model's
    ``stride``, 4 by default) of one RGB image ``[3, H, W]`` in [0, 1]: the sigmoid of the edge
    logits averaged with those of the flipped image (flipped back), in eval mode (the caller's
    mode is restored)."""
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"expected an image of shape [3, H, W], got {tuple(image.shape)}")
    was_training = model.training
    model.eval()
    try:
        batch = torch.stack([image, image.flip(-1)]).to(model.pixel_mean.device)
        logits, _ = model(batch)
    finally:
        model.train(was_training)
    edge = torch.sigmoid(logits[0, 0] / 2 + logits[1, 0].flip(-1) / 2)
    stride = model.stride
    return edge[: math.ceil(image.shape[1] / stride), : math.ceil(image.shape[2] / stride)]
