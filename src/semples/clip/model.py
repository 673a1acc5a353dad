"""A frozen open_clip CLIP that SemPLES differentiates through: masked images flow back to the
mask generator, learned context vectors flow back to the prompts; CLIP's own weights never move."""

from __future__ import annotations

import contextlib
import functools
import logging
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path

import open_clip
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from semples.data.classes import indefinite_article

log = logging.getLogger(__name__)

AMP_DTYPES: dict[str, torch.dtype | None] = {
    "fp32": None,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
}
"""``precision`` values: the autocast dtype CLIP runs under on CUDA (weights stay fp32)."""

_EOT_POOL_TYPES = ("argmax", "eos")


class FrozenClip(nn.Module):
    """An open_clip ``CLIP`` with no trainable parameter, pinned to eval mode.

    Only the classic ``CLIP`` class is accepted: the prompt learner feeds embeddings through its
    token-level text path (``transformer``, ``ln_final``, ``text_projection``), which
    ``CustomTextCLIP`` / CoCa / Hugging Face text towers do not expose.
    """

    def __init__(self, model: nn.Module, name: str, precision: str = "fp32") -> None:
        super().__init__()
        if not isinstance(model, open_clip.CLIP):
            raise TypeError(
                f"{name}: expected an open_clip CLIP, got {type(model).__name__}; "
                "CustomTextCLIP, CoCa and Hugging Face text towers are not supported because "
                "prompt learning needs CLIP's own token-level text transformer"
            )
        if model.text_pool_type not in _EOT_POOL_TYPES:
            raise TypeError(
                f"{name}: text pool type {model.text_pool_type!r} is not supported; prompt "
                f"learning reads the feature at the EOT token (pool types {_EOT_POOL_TYPES})"
            )
        if precision not in AMP_DTYPES:
            raise ValueError(f"precision must be one of {sorted(AMP_DTYPES)}, got {precision!r}")
        height, width = _pair(model.visual.image_size)
        if height != width:
            raise ValueError(f"{name}: non-square CLIP input {height}x{width} is not supported")

        self.model = model.eval().requires_grad_(False)
        self.name = name
        self.precision = precision
        self.image_size = height
        self.embed_dim = _text_output_dim(model)
        self.text_width = model.transformer.width
        self.context_length = model.context_length
        self.tokenizer = open_clip.get_tokenizer(name)

    def train(self, mode: bool = True) -> FrozenClip:
        """Stay in eval mode: CLIP is a fixed measuring instrument, never a trained part."""
        return super().train(False)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def encode_images(self, images: Tensor) -> Tensor:
        """Image features [B, D] of RGB images in [0, 1]; differentiable w.r.t. ``images``."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images [B, 3, H, W], got {tuple(images.shape)}")
        x = preprocess_images(self.model, images.float())
        with self._autocast(x.device):
            features = self.model.encode_image(x)
        return features.float()

    @torch.no_grad()
    def encode_texts(self, texts: Sequence[str]) -> Tensor:
        """Text features [N, D] of fixed strings (no graph: label texts are constants)."""
        tokens = self.tokenizer(list(texts)).to(self.device)
        with self._autocast(self.device):
            features = self.model.encode_text(tokens)
        return features.float()

    def encode_token_embeddings(self, embeddings: Tensor, eot_positions: Tensor) -> Tensor:
        """Text features [N, D] of token embeddings [N, context_length, text_width].

        The same computation as ``open_clip.model.CLIP.encode_text`` after its token lookup, so a
        sequence of real word embeddings gives exactly the feature of those words; the feature is
        read at ``eot_positions`` (what argmax/eos pooling selects for real tokens).
        """
        expected = (self.context_length, self.text_width)
        if embeddings.ndim != 3 or tuple(embeddings.shape[1:]) != expected:
            raise ValueError(
                f"expected embeddings [N, {expected[0]}, {expected[1]}], "
                f"got {tuple(embeddings.shape)}"
            )
        if eot_positions.shape != embeddings.shape[:1]:
            raise ValueError(
                f"expected eot_positions [{embeddings.shape[0]}], got {tuple(eot_positions.shape)}"
            )
        with self._autocast(embeddings.device):
            features = encode_text_embeddings(self.model, embeddings, eot_positions)
        return features.float()

    def _autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        dtype = AMP_DTYPES[self.precision]
        if device.type != "cuda" or dtype is None:
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=dtype)


def encode_text_embeddings(model: nn.Module, embeddings: Tensor, eot_positions: Tensor) -> Tensor:
    """CLIP's text features [N, D] of token embeddings [N, L, W], read at ``eot_positions``.

    ``open_clip.model.CLIP.encode_text`` after its token lookup. ``L`` may be shorter than the
    context length: the text transformer is causal and reads the feature at the EOT token, so
    positions after it never reach the feature, and cutting them is exact (toy captions fill
    about 20 of 77 positions, which makes CLIP pretraining's text side about 4x cheaper).
    """
    length = embeddings.shape[1]
    cast_dtype = model.transformer.get_cast_dtype()
    x = embeddings.to(cast_dtype) + model.positional_embedding[:length].to(cast_dtype)
    x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
    x = model.ln_final(x)
    x = x[torch.arange(x.shape[0], device=x.device), eot_positions.to(x.device)]
    if isinstance(model.text_projection, nn.Linear):
        return model.text_projection(x)
    return x if model.text_projection is None else x @ model.text_projection


def eot_positions(model: nn.Module, tokens: Tensor) -> Tensor:
    """Where ``model`` pools each row of ``tokens`` [N, L]: its EOT token (pool types
    ``argmax``, whose EOT id is the largest, and ``eos``)."""
    if model.text_pool_type == "argmax":
        return tokens.argmax(dim=-1)
    if model.text_pool_type == "eos":
        return (tokens == model.text_eos_id).int().argmax(dim=-1)
    raise TypeError(
        f"text pool type {model.text_pool_type!r} is not supported; the feature is read at the "
        f"EOT token (pool types {_EOT_POOL_TYPES})"
    )


def load_clip(
    name: str,
    pretrained: str | None = None,
    weights: str | Path | None = None,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    state_dict: Mapping[str, Tensor] | None = None,
) -> FrozenClip:
    """Build the open_clip architecture ``name`` with weights from an open_clip pretrained tag,
    a local state-dict file, an in-memory state dict (the toy CLIP a pipeline node pretrained),
    or none of these: random init, the toy CLIP before its pretraining."""
    sources = {"pretrained": pretrained, "weights": weights, "state_dict": state_dict}
    given = [key for key, value in sources.items() if value is not None]
    if len(given) > 1:
        raise ValueError(f"give at most one of pretrained, weights, state_dict; got {given}")
    if precision not in AMP_DTYPES:
        raise ValueError(f"precision must be one of {sorted(AMP_DTYPES)}, got {precision!r}")
    if pretrained is not None:
        model = _create_pretrained(name, pretrained)
    else:
        if not given:
            log.warning("CLIP %s has no weights (no pretrained tag, no file): random init", name)
        model = open_clip.create_model(name)
        if weights is not None:
            _load_state(model, name, _read_weights(Path(weights)), source=str(weights))
        elif state_dict is not None:
            _load_state(model, name, state_dict, source="the given state dict")
    return FrozenClip(model, name, precision).to(device)


def check_clip_weights(name: str, weights: str | Path) -> None:
    """Raise (naming the file and the architecture) unless ``weights`` is a state dict that
    fits open_clip's ``name``: the check a run makes before training, not an hour into it.

    A file that passed is not read again while its size and modification time stay the same:
    the parameter schema runs this check before the run and again for each report's parameters.
    """
    path = Path(weights)
    if not path.is_file():
        _check_clip_file(name, str(weights))  # raises, naming the missing file
    else:
        stat = path.stat()
        _check_clip_file_once(name, str(weights), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _check_clip_file_once(name: str, weights: str, size: int, mtime_ns: int) -> None:
    """:func:`_check_clip_file`, remembered per file version (a failure is not remembered)."""
    _check_clip_file(name, weights)


def _check_clip_file(name: str, weights: str) -> None:
    if name not in open_clip.list_models():
        raise ValueError(f"unknown open_clip model {name!r}")
    _fitting_state(open_clip.create_model(name), name, _read_weights(Path(weights)), weights)


def save_clip_weights(model: nn.Module, path: str | Path) -> None:
    """Write CLIP's weights as a plain state dict of CPU tensors, what ``load_clip`` reads."""
    inner = model.model if isinstance(model, FrozenClip) else model
    state = {key: value.detach().cpu() for key, value in inner.state_dict().items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)


def class_text_features(
    clip: FrozenClip, class_names: Sequence[str], template: str = "a photo of {}."
) -> Tensor:
    """Text features [K, D] of one templated sentence per class (u_f of the paper).

    ``{article}`` in the template becomes "a" or "an" ("a photo of {article} {}." gives "a photo
    of an aeroplane.", the toy captions' grammar, rather than the never-seen "a aeroplane").
    """
    return clip.encode_texts(
        [template.format(name, article=indefinite_article(name)) for name in class_names]
    )


def _create_pretrained(name: str, tag: str) -> nn.Module:
    tags = open_clip.list_pretrained_tags_by_model(name)
    if tag not in tags:
        raise ValueError(f"{tag!r} is not an open_clip pretrained tag of {name}; known: {tags}")
    try:
        return open_clip.create_model(name, pretrained=tag)
    except RuntimeError as error:
        raise RuntimeError(
            f"could not load open_clip weights {name}/{tag}: they must be in open_clip's cache "
            f"on a machine without network (or pass weights=<file>): {error}"
        ) from error


def _read_weights(path: Path) -> Mapping[str, Tensor]:
    """The state dict in ``path``: plain, or under "state_dict" as open_clip's training saves."""
    if not path.is_file():
        raise FileNotFoundError(f"CLIP weights file not found: {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as error:
        raise ValueError(f"{path} is not a torch state-dict file: {error}") from error
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, Mapping) else None
    if not isinstance(state, Mapping):
        raise ValueError(f"{path} holds {type(checkpoint).__name__}, not a state dict")
    return state


def _load_state(model: nn.Module, name: str, state: Mapping[str, Tensor], source: str) -> None:
    """Strict load that names the source and the first mismatching keys."""
    model.load_state_dict(_fitting_state(model, name, state, source), strict=True)


def _fitting_state(
    model: nn.Module, name: str, state: Mapping[str, Tensor], source: str
) -> dict[str, Tensor]:
    """``state`` with DDP's "module." prefix stripped; raises, naming the source and the first
    mismatching keys, unless it fits ``model`` key for key and shape for shape."""
    state = {key.removeprefix("module."): value for key, value in state.items()}
    problems = _state_dict_mismatches(model.state_dict(), state)
    if problems:
        raise ValueError(
            f"{source} does not hold weights of CLIP {name}: {len(problems)} mismatching keys, "
            f"e.g. {problems[:5]}"
        )
    return state


def _state_dict_mismatches(
    expected: Mapping[str, Tensor], given: Mapping[str, Tensor]
) -> list[str]:
    shapes = [
        f"{key} (shape {tuple(given[key].shape)}, model {tuple(value.shape)})"
        for key, value in expected.items()
        if key in given and given[key].shape != value.shape
    ]
    missing = [f"{key} (missing)" for key in expected if key not in given]
    unexpected = [f"{key} (unexpected)" for key in given if key not in expected]
    return shapes + missing + unexpected


def _text_output_dim(model: open_clip.CLIP) -> int:
    projection = model.text_projection
    if isinstance(projection, nn.Linear):
        return projection.out_features
    return model.transformer.width if projection is None else projection.shape[1]


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def preprocess_images(model: nn.Module, images01: Tensor) -> Tensor:
    """CLIP's input from [0, 1] images [B, 3, H, W]: bilinear resize to its input size, then
    its own mean/std. The one definition: pretraining, zero-shot checks and SemPLES feed CLIP
    exactly the same way."""
    size = _pair(model.visual.image_size)
    if tuple(images01.shape[-2:]) != size:
        images01 = F.interpolate(
            images01, size=size, mode="bilinear", align_corners=False, antialias=False
        )
    cfg = open_clip.get_model_preprocess_cfg(model)
    mean = torch.tensor(cfg["mean"], dtype=images01.dtype, device=images01.device)
    std = torch.tensor(cfg["std"], dtype=images01.dtype, device=images01.device)
    return (images01 - mean[:, None, None]) / std[:, None, None]
