"""Mask generators S: networks that turn an image into one activation map per class.

SemPLES trains S from image-level labels only, through CLIP (METHOD.md). Every generator here has
the same contract so that the stages, CAM inference and the pipelines never ask which one they
hold: ``forward`` takes RGB images in [0, 1] (each generator applies the ImageNet normalisation
itself, so callers never normalise) and returns class logits ``[B, K, h, w]`` at the network's
``output_stride``, before any sigmoid. Each exposes ``backbone`` (the trunk, for freezing or
loading ImageNet weights) and ``classifier`` (a bias-free 1x1 convolution, so a CAM is a weighted
sum of features, as in CAM/IRN/CLIMS).

``masks_for_pairs`` turns logits into the training masks M_k of Eq. (1); ``inference_cams`` into
the CAMs scored at inference.
"""

from __future__ import annotations

import logging
import pickle
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import timm
import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

logger = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# How many keys a warning or error lists before saying "...".
_MAX_LISTED_KEYS = 8


class MaskGenerator(nn.Module):
    """Shared body of every generator: ImageNet normalisation -> ``features`` -> 1x1 classifier.

    Subclasses set ``backbone``, ``feature_dim``, ``output_stride`` and ``source_head_prefixes``
    (keys of an ImageNet checkpoint's own classification head, which weight loading ignores) and
    implement ``features``.
    """

    output_stride: int
    source_head_prefixes: tuple[str, ...] = ()

    def __init__(self, num_classes: int, feature_dim: int) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        # Non-persistent: the constants stay out of checkpoints, which then hold weights only.
        self.register_buffer(
            "pixel_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False
        )
        self.register_buffer(
            "pixel_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False
        )
        self.classifier = nn.Conv2d(feature_dim, num_classes, kernel_size=1, bias=False)

    def features(self, normalized: Tensor) -> Tensor:
        """Feature map ``[B, C, h, w]`` at ``output_stride`` from ImageNet-normalised images."""
        raise NotImplementedError

    def forward(self, images: Tensor) -> Tensor:
        """Class logits ``[B, K, h, w]`` from RGB images ``[B, 3, H, W]`` in [0, 1]."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape [B, 3, H, W], got {tuple(images.shape)}")
        normalized = (images - self.pixel_mean) / self.pixel_std
        return self.classifier(self.features(normalized))


class ResNet50Cam(MaskGenerator):
    """The CLIMS / IRN ResNet-50 CAM network (the paper's Table 4 variant of S).

    torchvision's ResNet-50 (conv1..layer4) with layer4's stride set to 1 without dilation, as
    IRN's strides (2, 2, 2, 1) do: output stride 16 with 2048-d features.

    With ``freeze_stem`` (default, as in IRN/CLIMS, which fine-tune from ImageNet): batch norm
    always uses its running statistics (IRN's fixed batch norm; small CAM batches would otherwise
    corrupt them) and conv1..layer2 receive no gradient. Pass ``freeze_stem=False`` to train every
    layer, e.g. from random initialisation.
    """

    output_stride = 16
    source_head_prefixes = ("fc.",)
    _STEM = ("conv1", "bn1", "layer1", "layer2")

    def __init__(self, num_classes: int, freeze_stem: bool = True) -> None:
        super().__init__(num_classes, feature_dim=2048)
        resnet = torchvision.models.resnet50(weights=None)
        first_block = resnet.layer4[0]
        first_block.conv2.stride = (1, 1)
        first_block.downsample[0].stride = (1, 1)
        names = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
        # Same child names as torchvision's ResNet, so its state-dict keys load unchanged.
        self.backbone = nn.Sequential(OrderedDict((name, getattr(resnet, name)) for name in names))
        self.freeze_stem = freeze_stem
        if freeze_stem:
            for name in self._STEM:
                self.backbone.get_submodule(name).requires_grad_(False)

    def train(self, mode: bool = True) -> ResNet50Cam:
        super().train(mode)
        if self.freeze_stem:
            for module in self.backbone.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.eval()
        return self

    def features(self, normalized: Tensor) -> Tensor:
        return self.backbone(normalized)


class DeiTSmallCam(MaskGenerator):
    """A DeiT-S CAM network: timm's ``deit_small_patch16_224`` with a 1x1 conv head on patches.

    The patch tokens of the last block (after the final norm; class token dropped) are laid out
    on their h x w grid (output stride 16) and classified by a 1x1 convolution. Position
    embeddings are resampled to the input's grid (timm's ``dynamic_img_size``), so any input whose
    sides are multiples of 16 works. This is a plain patch-token CAM in the spirit of WeakTr's
    head; it is NOT WeakTr's fusion of attention maps across heads and layers.
    """

    output_stride = 16
    source_head_prefixes = ("head.", "head_dist.")

    def __init__(self, num_classes: int) -> None:
        backbone = timm.create_model(
            "deit_small_patch16_224", pretrained=False, num_classes=0, dynamic_img_size=True
        )
        super().__init__(num_classes, feature_dim=backbone.embed_dim)
        self.backbone = backbone

    def features(self, normalized: Tensor) -> Tensor:
        height, width = normalized.shape[-2:]
        if height % self.output_stride or width % self.output_stride:
            raise ValueError(
                f"DeiTSmallCam needs image sides that are multiples of {self.output_stride}, "
                f"got {height}x{width}"
            )
        tokens = self.backbone.forward_features(normalized)
        patches = tokens[:, self.backbone.num_prefix_tokens :]
        grid = (height // self.output_stride, width // self.output_stride)
        return patches.transpose(1, 2).reshape(patches.shape[0], -1, *grid)


def _conv_bn_relu(in_channels: int, out_channels: int, stride: int, dilation: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size=3,
            stride=stride,
            padding=dilation,
            dilation=dilation,
            bias=False,
        ),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class SmallFcnCam(MaskGenerator):
    """A small random-init FCN for the 96 px toy world, sized for 2 CPU cores.

    Four conv-BN-ReLU blocks (widths 32, 32, 64, 96): two stride-2 blocks reach output stride 4
    (24 x 24 maps at 96 px, fine enough to outline objects of 17-38 px), then two blocks dilated
    by ``dilations`` (2 and 3) widen the receptive field to 47 px, enough to see an object with
    its context, without more downsampling. Measured on this 2-core CPU: forward + backward of
    16 images at 96 px in about 30 ms (stride 8 or a fifth block cost more for coarser maps or
    more time).

    Dilations with a common factor grid (Wang et al. 2018, hybrid dilated convolution): at 2
    and 4 an output cell saw only the cells an even number of cells away on the stride-4 grid,
    and the maps of flat regions (the toy sheep's wool) came out as stripes 8 px apart with
    the object's body between them dim (README, "Measured on the toy world"). At 2 and 3 every
    cell within 3 cells is seen.
    """

    def __init__(
        self,
        num_classes: int,
        widths: tuple[int, int, int, int] = (32, 32, 64, 96),
        output_stride: int = 4,
        dilations: tuple[int, int] = (2, 3),
    ):
        super().__init__(num_classes, feature_dim=widths[-1])
        if output_stride not in (4, 8):
            raise ValueError(f"SmallFcnCam output_stride must be 4 or 8, got {output_stride}")
        if len(dilations) != 2 or not all(isinstance(d, int) and d >= 1 for d in dilations):
            raise ValueError(
                f"SmallFcnCam dilations must be two integers >= 1, got {list(dilations)}"
            )
        self.output_stride = output_stride
        third_stride = output_stride // 4
        strides_and_dilations = ((2, 1), (2, 1), (third_stride, dilations[0]), (1, dilations[1]))
        channels = (3, *widths)
        self.backbone = nn.Sequential(
            *(
                _conv_bn_relu(channels[i], channels[i + 1], stride, dilation)
                for i, (stride, dilation) in enumerate(strides_and_dilations)
            )
        )

    def features(self, normalized: Tensor) -> Tensor:
        return self.backbone(normalized)


_ARCHITECTURES: dict[str, type[MaskGenerator]] = {
    "resnet50": ResNet50Cam,
    "deit_small": DeiTSmallCam,
    "small_fcn": SmallFcnCam,
}
GENERATOR_ARCHITECTURES = tuple(_ARCHITECTURES)


def _architecture(arch: str) -> type[MaskGenerator]:
    if arch not in _ARCHITECTURES:
        raise ValueError(f"unknown mask generator {arch!r}; choose one of {sorted(_ARCHITECTURES)}")
    return _ARCHITECTURES[arch]


def build_mask_generator(
    arch: str, num_classes: int, weights: str | Path | None = None, **options: Any
) -> MaskGenerator:
    """Build generator ``arch`` for ``num_classes`` classes, random-init or from ``weights``.

    ``weights`` is a local file holding either an ImageNet state dict of the trunk (torchvision
    ResNet-50 / timm DeiT-S; its classification head is ignored) or a whole generator's state
    dict (see ``load_generator_weights``). ``options`` go to the architecture's constructor
    (e.g. ``output_stride`` of ``small_fcn``).
    """
    model = _architecture(arch)(num_classes, **options)
    if weights is not None:
        load_generator_weights(model, weights)
    return model


def check_generator_options(arch: str, options: Mapping[str, Any]) -> None:
    """Raise ValueError, naming the options, when ``options`` do not build ``arch``: an unknown
    option or a value its constructor refuses. The generator is built on the meta device (no
    memory, no weights), so parameter validation can afford it before a run starts."""
    architecture = _architecture(arch)
    try:
        with torch.device("meta"):
            architecture(1, **options)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"generator options {dict(options)} do not fit {arch!r}: {error}"
        ) from error


def _listed(keys: list[str]) -> str:
    more = ", ..." if len(keys) > _MAX_LISTED_KEYS else ""
    return ", ".join(keys[:_MAX_LISTED_KEYS]) + more


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    """Tensors of a checkpoint file; a ``{"model": ...}`` / ``{"state_dict": ...}`` wrapper
    (the DeiT release and Lightning-style checkpoints) is unwrapped."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as error:
        # The cause stays chained; torch's own message suggests weights_only=False, which we
        # never do (it would execute arbitrary pickled code).
        raise ValueError(
            f"cannot read weights file {path} as a torch state dict ({type(error).__name__})"
        ) from error
    for wrapper in ("model", "state_dict"):
        if isinstance(state, Mapping) and isinstance(state.get(wrapper), Mapping):
            state = state[wrapper]
    if not isinstance(state, Mapping) or not all(
        isinstance(key, str) and isinstance(value, Tensor) for key, value in state.items()
    ):
        raise ValueError(f"weights file {path} does not hold a state dict of tensors")
    return dict(state)


def _shape_matches(source: Mapping[str, Tensor], target: Mapping[str, Tensor]) -> list[str]:
    return [
        key for key, value in source.items() if key in target and target[key].shape == value.shape
    ]


def load_generator_weights(model: MaskGenerator, path: str | Path) -> None:
    """Load a trunk-only (ImageNet) or whole-generator state dict from ``path`` into ``model``.

    The file is matched against both the whole generator and its ``backbone``; the target that
    more keys fit (same name and shape) is loaded. Nothing fitting is a ValueError naming the
    file; otherwise keys left unloaded, unused or of the wrong shape are logged as a warning
    (the source's own classification head is dropped silently).
    """
    path = Path(path)
    source = _read_state_dict(path)
    whole, trunk = model.state_dict(), model.backbone.state_dict()
    fit_whole, fit_trunk = _shape_matches(source, whole), _shape_matches(source, trunk)
    target_module, target_state, fitting = (
        (model, whole, fit_whole)
        if len(fit_whole) >= len(fit_trunk)
        else (model.backbone, trunk, fit_trunk)
    )
    if not fitting:
        raise ValueError(
            f"no tensor in weights file {path} fits {type(model).__name__} or its backbone "
            f"(file keys: {_listed(sorted(source))})"
        )
    target_module.load_state_dict({key: source[key] for key in fitting}, strict=False)
    target_name = "generator" if target_module is model else "backbone"
    fitting_set = set(fitting)
    missing = sorted(set(target_state) - fitting_set - set(source))
    wrong_shape = sorted(key for key in source if key in target_state and key not in fitting_set)
    unused = sorted(
        key
        for key in source
        if key not in target_state
        and not (target_module is model.backbone and key.startswith(model.source_head_prefixes))
    )
    problems = [
        f"{label}: {_listed(keys)}"
        for label, keys in (
            ("not in the file (left as initialised)", missing),
            ("wrong shape (skipped)", wrong_shape),
            ("not used", unused),
        )
        if keys
    ]
    if problems:
        logger.warning(
            "loaded %d tensors from %s into the %s of %s; %s",
            len(fitting),
            path,
            target_name,
            type(model).__name__,
            "; ".join(problems),
        )
    else:
        logger.info("loaded %d tensors from %s into the %s", len(fitting), path, target_name)


MASK_ACTIVATIONS = ("sigmoid", "relu_max")


def masks_for_pairs(
    logits: Tensor,
    batch_index: Tensor,
    class_index: Tensor,
    size: tuple[int, int],
    eps: float = 1e-1,
    activation: str = "sigmoid",
) -> Tensor:
    """Training masks M_k ``[P, H, W]`` for the positive (image, class) pairs.

    ``sigmoid`` (the reference code): sigmoid of each selected map, bilinearly upsampled to
    ``size`` (align_corners=False), then min-max normalised per map as
    (m - min) / (max - min + eps): every map spans [0, 1) with minimum 0, and the eps keeps a
    nearly flat map nearly zero instead of amplifying its noise.

    ``relu_max``: ReLU of each map, upsampled, divided by its maximum (+ ``eps`` times a
    floor of 1, so a map with no positive evidence stays near zero): the same function of the
    logits as the CAMs that inference scores (:func:`inference_cams`, max-normalised), so what
    CLIP's gradient reshapes is what the threshold sweep reads. A sigmoid saturates where a
    trained CAM network's logits are large, and its masks then cover object and context alike.

    Pairs are selected before upsampling, so only positive maps are upsampled. Differentiable.
    """
    if logits.ndim != 4:
        raise ValueError(f"expected logits [B, K, h, w], got {tuple(logits.shape)}")
    if batch_index.ndim != 1 or batch_index.shape != class_index.shape:
        raise ValueError(
            "batch_index and class_index must be 1-D of equal length, got "
            f"{tuple(batch_index.shape)} and {tuple(class_index.shape)}"
        )
    if activation not in MASK_ACTIVATIONS:
        raise ValueError(
            f"unknown mask activation {activation!r}; choose one of {MASK_ACTIVATIONS}"
        )
    selected = logits[batch_index, class_index].unsqueeze(1)
    if activation == "relu_max":
        maps = F.interpolate(F.relu(selected), size=size, mode="bilinear", align_corners=False)
        maps = maps.squeeze(1)
        return maps / (maps.amax(dim=(1, 2), keepdim=True).clamp_min(1.0 * eps) + 1e-5)
    maps = torch.sigmoid(selected)
    maps = F.interpolate(maps, size=size, mode="bilinear", align_corners=False).squeeze(1)
    low = maps.amin(dim=(1, 2), keepdim=True)
    high = maps.amax(dim=(1, 2), keepdim=True)
    return (maps - low) / (high - low + eps)


def inference_cams(logits: Tensor) -> Tensor:
    """CAMs for inference: ReLU of the logits (multi-scale sums and max-normalisation follow
    elsewhere), as CAM/IRN score class evidence rather than sigmoid probabilities."""
    return F.relu(logits)
