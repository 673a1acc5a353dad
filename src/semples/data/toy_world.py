"""The toy world: a synthetic weakly-supervised segmentation dataset with co-occurring contexts.

SemPLES exists because an object and its usual surroundings appear together so often that
image-level labels cannot tell them apart: a model trained on "boat" images also marks the water.
This world reproduces that problem at a size a CPU can train on. Six object classes are drawn as
simple, recognisable shapes on a neutral pastel background, each in its own horizontal slot so
that none hides another. Every class has one context (boat -> water, train -> rails, ...) that is
painted under or around the object with probability ``co_occurrence``. Scenes carry image-level
labels; the pixel masks (in which contexts are background) serve evaluation only, and so do
the context maps, which say whose context each background pixel is (to measure how much of an
object's context a CAM marks as the object).

A second, captioned set pretrains the tiny CLIP. It holds context-only scenes, so that CLIP learns
what "water" looks like, and captions that often name only the object of an object-on-context
scene, which builds into CLIP the same co-occurrence bias the real one has.

Every scene is a pure function of (seed, split, index): a reader can regenerate any item alone,
in any order, in any process. Contexts are kept bright and textured, never like a dimmed or black
image, because SemPLES feeds CLIP masked images and a dark context attracts collapsed prompts.
"""

from __future__ import annotations

import colorsys
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from pydantic import ConfigDict, with_config

from semples.data.classes import indefinite_article

TOY_CLASSES: tuple[str, ...] = ("aeroplane", "boat", "train", "cow", "car", "sheep")

TOY_CONTEXTS: dict[str, str] = {
    "aeroplane": "sky",
    "boat": "water",
    "train": "rails",
    "cow": "grass",
    "car": "road",
    "sheep": "snow",
}

_CONTEXT_OWNERS: dict[str, str] = {context: name for name, context in TOY_CONTEXTS.items()}

CAPTION_PREFIX = "a photo of "
# The caption of a masked view in which neither an object nor a context stays visible.
NOTHING = "nothing"
# Share of an object's (or context's) pixels a masked view must show for its caption to name it.
_VISIBLE_SHARE = 0.5

# Longest side of an object as a share of the image side.
_MIN_OBJECT_SHARE = 0.18
_MAX_OBJECT_SHARE = 0.40
# Narrowest horizontal slot (px) in which an object is still drawn recognisably.
_MIN_SLOT = 10
# Not a plausible split name, so no labelled split can share the captioned set's random streams.
_CAPTIONED_STREAM = "__captioned__"


# Unknown keys in its parameter section are errors (semples.parameters validates with it).
@with_config(ConfigDict(extra="forbid"))
@dataclass(frozen=True)
class ToyWorldConfig:
    """Size and statistics of the toy world; one value of it fixes every scene."""

    image_size: int = 96
    num_train: int = 3000
    num_val: int = 500
    num_captioned: int = 3000
    co_occurrence: float = 0.8
    min_objects: int = 1
    max_objects: int = 3
    # Relative weights of min_objects .. max_objects objects per scene; empty: uniform.
    object_count_weights: tuple[float, ...] = ()
    context_only_fraction: float = 0.2
    object_only_caption: float = 0.5
    object_cutout_fraction: float = 0.2
    masked_view_fraction: float = 0.0
    context_cutout_fraction: float = 0.0
    context_fill: float = 0.0
    # The objects' colours (``PALETTES``): "pale" the first world's, byte for byte.
    palette: str = "pale"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.image_size < 32:
            raise ValueError(f"image_size must be >= 32, got {self.image_size}")
        for name in ("num_train", "num_val", "num_captioned", "seed"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        probabilities = ("co_occurrence", "context_only_fraction", "object_only_caption")
        fractions = (
            "object_cutout_fraction", "masked_view_fraction", "context_cutout_fraction",
            "context_fill",
        )  # fmt: skip
        for name in (*probabilities, *fractions):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.palette not in PALETTES:
            raise ValueError(f"palette must be one of {list(PALETTES)}, got {self.palette!r}")
        if not 1 <= self.min_objects <= self.max_objects <= len(TOY_CLASSES):
            raise ValueError(
                f"need 1 <= min_objects <= max_objects <= {len(TOY_CLASSES)}, got "
                f"min_objects={self.min_objects}, max_objects={self.max_objects}"
            )
        weights = self.object_count_weights
        counts = self.max_objects - self.min_objects + 1
        if weights and (
            len(weights) != counts or min(weights) < 0 or not 0 < sum(weights) < float("inf")
        ):
            raise ValueError(
                f"object_count_weights must be {counts} non-negative weights (one per object "
                f"count {self.min_objects}..{self.max_objects}) with a positive finite sum, "
                f"got {list(weights)}"
            )
        object.__setattr__(self, "object_count_weights", tuple(float(w) for w in weights))
        if self.image_size < _MIN_SLOT * self.max_objects:
            raise ValueError(
                f"image_size={self.image_size} is too small for max_objects={self.max_objects}: "
                f"each object needs a slot of at least {_MIN_SLOT} px"
            )


@dataclass(frozen=True, eq=False)
class ToyScene:
    """One rendered scene. ``mask`` value k (1..6) is ``TOY_CLASSES[k - 1]``, 0 is background
    (contexts included); ``labels`` are the sorted 0-based classes present. ``context`` (for
    evaluation only) is k where the context of the object of class k shows (painted there and
    not covered by an object; a later context covers an earlier one as on the canvas), else 0."""

    image: np.ndarray
    mask: np.ndarray
    labels: tuple[int, ...]
    contexts: tuple[str, ...]
    context: np.ndarray


def split_sizes(config: ToyWorldConfig) -> dict[str, int]:
    """Number of scenes per labelled split."""
    return {"train": config.num_train, "val": config.num_val}


def scene_id(split: str, index: int) -> str:
    """Stable image id of a labelled scene, e.g. ``train_000042``."""
    return f"{split}_{index:06d}"


def captioned_id(index: int) -> str:
    """Stable image id of a captioned (CLIP-pretraining) scene, e.g. ``cap_000042``."""
    return f"cap_{index:06d}"


def render_scene(config: ToyWorldConfig, split: str, index: int) -> ToyScene:
    """The labelled scene ``index`` of ``split``; identical bytes for identical arguments."""
    rng = _scene_rng(config.seed, split, index)
    return _compose(config, rng, _draw_classes(rng, config))


def captioned_scene(config: ToyWorldConfig, index: int) -> tuple[ToyScene, str]:
    """Captioned scene ``index`` with its ground truth, so that captions can be checked."""
    rng = _scene_rng(config.seed, _CAPTIONED_STREAM, index)
    if rng.random() < config.context_only_fraction:
        context = TOY_CONTEXTS[TOY_CLASSES[rng.integers(len(TOY_CLASSES))]]
        return _compose_context_only(config, rng, context), CAPTION_PREFIX + context
    classes = _draw_classes(rng, config)
    scene = _compose(config, rng, classes)
    names = [TOY_CLASSES[k] for k in classes]
    if rng.random() < config.object_cutout_fraction:
        return _cut_out_objects(scene), _caption(names, ())
    # (no draw at fraction 0: the captioned set is then byte-identical to before these kinds)
    if scene.contexts and config.context_cutout_fraction:
        if rng.random() < config.context_cutout_fraction:
            cutout = _cut_out_contexts(scene)
            return cutout, CAPTION_PREFIX + _join(cutout.contexts)
    if config.masked_view_fraction and rng.random() < config.masked_view_fraction:
        scene = _masked_view(scene, rng)
        names = [TOY_CLASSES[k] for k in scene.labels]
        if not names:
            return scene, CAPTION_PREFIX + (_join(scene.contexts) if scene.contexts else NOTHING)
    named_contexts = scene.contexts if rng.random() >= config.object_only_caption else ()
    return scene, _caption(names, named_contexts)


def _masked_view(scene: ToyScene, rng: np.random.Generator) -> ToyScene:
    """The scene seen through a random soft mask, as SemPLES shows scenes to CLIP, labelled with
    what stays visible: an object when at least half of it shows, a context likewise.

    The mask is one of three kinds, a third each: some objects cut out (possibly cut in part,
    dilated), their complement (objects blacked out), or random blobs and bands. A CLIP that has
    only seen whole scenes scores such images arbitrarily, and the mask generator then learns
    whatever pattern it happens to score high (measured: masks of the object's area that reach a
    higher similarity to the class text than the object itself).
    """
    size = scene.mask.shape[0]
    kind = rng.integers(3)
    if kind == 2:
        soft = _random_blobs(rng, size)
    else:
        chosen = [k + 1 for k in scene.labels if rng.random() < 0.6] or [scene.labels[0] + 1]
        soft = np.isin(scene.mask, chosen).astype(np.float32)
        if kind == 0 and rng.random() < 0.5:
            soft *= _half_plane(rng, scene.mask, chosen)
        soft = _morph_blur(soft, dilate=int(rng.integers(0, 4)), sigma=rng.uniform(0.0, 2.0))
        if kind == 1:
            soft = 1.0 - soft
    image = np.round(scene.image * soft[..., None]).astype(np.uint8)
    visible_objects = tuple(
        k for k in scene.labels if soft[scene.mask == k + 1].mean() >= _VISIBLE_SHARE
    )
    visible_contexts = tuple(
        TOY_CONTEXTS[TOY_CLASSES[value - 1]]
        for value in np.unique(scene.context[scene.context > 0])
        if soft[scene.context == value].mean() >= _VISIBLE_SHARE
    )
    return ToyScene(image, scene.mask, visible_objects, visible_contexts, scene.context)


def _random_blobs(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth random blobs, or horizontal / vertical bands, covering 0.2-60 % of the image
    (log-uniform: a few-pixel spot is as likely as a tenth of the image; measured: a mask
    generator otherwise learns spots of a few pixels at fixed places that the toy CLIP, never
    having seen them, scores as close to the class text as the object itself)."""
    cells = int(rng.choice([3, 6, 12]))
    shape = [(cells, cells), (cells, 1), (1, cells)][int(rng.integers(3))]
    noise = rng.random(shape).astype(np.float32)
    field = np.asarray(
        Image.fromarray(noise).resize((size, size), Image.Resampling.BILINEAR), np.float32
    )
    keep = float(np.exp(rng.uniform(np.log(0.002), np.log(0.6))))
    hard = (field >= np.quantile(field, 1.0 - keep)).astype(np.float32)
    return _morph_blur(hard, dilate=0, sigma=rng.uniform(0.0, 2.0))


def _half_plane(rng: np.random.Generator, mask: np.ndarray, chosen: list[int]) -> np.ndarray:
    """Ones on one side of a vertical or horizontal cut through the chosen objects' box."""
    rows, cols = np.nonzero(np.isin(mask, chosen))
    axis = int(rng.integers(2))
    coords = (rows, cols)[axis]
    cut = rng.uniform(coords.min(), coords.max() + 1)
    grid = np.arange(mask.shape[axis], dtype=np.float32)
    side = grid < cut if rng.random() < 0.5 else grid >= cut
    return np.broadcast_to(side[:, None] if axis == 0 else side[None, :], mask.shape).astype(
        np.float32
    )


def _morph_blur(hard: np.ndarray, dilate: int, sigma: float) -> np.ndarray:
    """Dilate a [0, 1] mask by ``dilate`` px and soften its edges with a Gaussian blur."""
    image = Image.fromarray((hard * 255).astype(np.uint8))
    if dilate:
        image = image.filter(ImageFilter.MaxFilter(2 * dilate + 1))
    if sigma > 0.1:
        image = image.filter(ImageFilter.GaussianBlur(sigma))
    return np.asarray(image, np.float32) / 255.0


def on_black(image: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """The pixels of an H x W x 3 uint8 ``image`` where ``keep`` (H x W bool), black elsewhere."""
    return np.where(keep[..., None], image, 0).astype(np.uint8)


def _cut_out_objects(scene: ToyScene) -> ToyScene:
    """The objects alone on black: what a CLIP trained on web data knows (an object is itself
    without its usual context), and what SemPLES's masked foregrounds look like."""
    image = on_black(scene.image, scene.mask > 0)
    return ToyScene(
        image=image,
        mask=scene.mask,
        labels=scene.labels,
        contexts=(),
        context=np.zeros_like(scene.context),
    )


def _cut_out_contexts(scene: ToyScene) -> ToyScene:
    """The contexts alone on black, with holes where their objects stood: what SemPLES shows CLIP
    of a context, named as the context. Without them every mostly-black image in the captioned
    set is an object cut-out, and the toy CLIP names a context on black after its object
    (measured: the grass of a cow scene on black scored 0.68 with "a photo of a cow." and 0.63
    with "a photo of grass.")."""
    image = on_black(scene.image, scene.context > 0)
    shown = set(np.unique(scene.context).tolist())
    contexts = tuple(
        context for context in scene.contexts
        if TOY_CLASSES.index(_CONTEXT_OWNERS[context]) + 1 in shown
    )  # fmt: skip
    return ToyScene(image, np.zeros_like(scene.mask), (), contexts, scene.context)


def render_captioned_scene(config: ToyWorldConfig, index: int) -> tuple[np.ndarray, str]:
    """Image and caption of captioned scene ``index`` (its own random stream, not a split's)."""
    scene, caption = captioned_scene(config, index)
    return scene.image, caption


# --- scene composition -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Placement:
    """Where one object goes: its slot (x range it owns) and its box (x0, y0, x1, y1)."""

    class_index: int
    slot: tuple[int, int]
    box: tuple[int, int, int, int]


def _scene_rng(seed: int, stream: str, index: int) -> np.random.Generator:
    """A generator owned by one scene; crc32 because Python's ``hash`` of a str is salted."""
    if index < 0:
        raise ValueError(f"scene index must be >= 0, got {index}")
    key = np.random.SeedSequence([seed, zlib.crc32(stream.encode("utf-8")), index])
    return np.random.default_rng(key)


def _draw_classes(rng: np.random.Generator, config: ToyWorldConfig) -> list[int]:
    """Distinct classes, in left-to-right slot order."""
    if config.object_count_weights:
        weights = np.asarray(config.object_count_weights)
        count = config.min_objects + int(rng.choice(len(weights), p=weights / weights.sum()))
    else:  # (the uniform draw as before weights existed: its worlds stay byte-identical)
        count = int(rng.integers(config.min_objects, config.max_objects + 1))
    return [int(k) for k in rng.choice(len(TOY_CLASSES), size=count, replace=False)]


def _compose(config: ToyWorldConfig, rng: np.random.Generator, classes: list[int]) -> ToyScene:
    """Background, then contexts, then objects, so that no context ever covers an object."""
    size = config.image_size
    canvas = _background(rng, size)
    mask = np.zeros((size, size), np.uint8)
    context_map = np.zeros((size, size), np.uint8)
    placements = _place_objects(rng, classes, size)
    contexts = []
    for placement in placements:
        if rng.random() < config.co_occurrence:
            context = TOY_CONTEXTS[TOY_CLASSES[placement.class_index]]
            _paint_context(canvas, context_map, rng, context, placement, config.context_fill)
            contexts.append(context)
    drawn = [
        _paste_object(canvas, mask, rng, placement, config.palette) for placement in placements
    ]
    _check_visible(mask, placements, drawn)
    context_map[mask > 0] = 0
    return ToyScene(
        _finish(canvas, rng), mask, tuple(sorted(classes)), tuple(contexts), context_map
    )


def _compose_context_only(
    config: ToyWorldConfig, rng: np.random.Generator, context: str
) -> ToyScene:
    """A context where its object would stand, the object left out, for CLIP to learn contexts."""
    size = config.image_size
    canvas = _background(rng, size)
    owner = _CONTEXT_OWNERS[context]
    (placement,) = _place_objects(rng, [TOY_CLASSES.index(owner)], size)
    context_map = np.zeros((size, size), np.uint8)
    _paint_context(canvas, context_map, rng, context, placement, config.context_fill)
    mask = np.zeros((size, size), np.uint8)
    return ToyScene(_finish(canvas, rng), mask, (), (context,), context_map)


def _place_objects(rng: np.random.Generator, classes: list[int], size: int) -> list[_Placement]:
    """One equal horizontal slot per object: objects never overlap, so every label stays visible."""
    edges = np.linspace(0, size, len(classes) + 1).round().astype(int)
    placements = []
    for class_index, left, right in zip(classes, edges[:-1], edges[1:]):
        shape = _SHAPES[TOY_CLASSES[class_index]]
        room = int(right - left) - 2
        high = min(_MAX_OBJECT_SHARE * size, room / min(1.0, shape.aspect))
        longest = rng.uniform(min(_MIN_OBJECT_SHARE * size, high), high)
        width = max(4, min(room, round(longest * min(1.0, shape.aspect))))
        height = max(4, round(longest / max(1.0, shape.aspect)))
        x0 = int(left) + 1 + int(rng.integers(0, room - width + 1))
        if shape.airborne:
            centre = rng.uniform(height / 2 + 2, max(height / 2 + 2, 0.42 * size))
            y0 = round(centre - height / 2)
        else:
            y0 = round(rng.uniform(max(height + 2, 0.6 * size), 0.88 * size)) - height
        placements.append(
            _Placement(class_index, (int(left), int(right)), (x0, y0, x0 + width, y0 + height))
        )
    return placements


def _paint_context(
    canvas: np.ndarray,
    context_map: np.ndarray,
    rng: np.random.Generator,
    context: str,
    placement: _Placement,
    fill: float,
) -> None:
    """Paint ``context`` over the object's slot (a little wider), at the rows where it belongs
    (grown by ``fill``, see ``_fill_rows``), and mark those pixels with the object's label value
    in ``context_map``."""
    size = canvas.shape[0]
    left = max(0, placement.slot[0] - int(rng.integers(0, 4)))
    right = min(size, placement.slot[1] + int(rng.integers(0, 4)))
    top, bottom = _context_rows(rng, context, placement.box, size)
    top, bottom = _fill_rows(context, top, bottom, size, fill)
    canvas[top:bottom, left:right] = _TEXTURES[context](rng, bottom - top, right - left)
    context_map[top:bottom, left:right] = placement.class_index + 1


def _context_rows(
    rng: np.random.Generator, context: str, box: tuple[int, int, int, int], size: int
) -> tuple[int, int]:
    """Sky around and above an aeroplane; water, grass, road and snow from the object's lower
    part to the image bottom; rails as a band under the train's wheels."""
    _, y0, _, y1 = box
    height = y1 - y0
    if context == "sky":
        return 0, min(size, round(y1 + rng.uniform(0.1, 0.35) * size))
    if context == "rails":
        top = y1 - 1
        return top, min(size, max(top + 6, round(y1 + rng.uniform(0.12, 0.25) * size)))
    sink = {"water": (0.2, 0.3), "grass": (0.3, 0.6), "road": (0.2, 0.35), "snow": (0.3, 0.6)}
    return round(y1 - rng.uniform(*sink[context]) * height), size


def _fill_rows(context: str, top: int, bottom: int, size: int, fill: float) -> tuple[int, int]:
    """Grow a context's rows by ``fill`` of the slot it leaves free: ground contexts up towards
    the top, sky and rails down towards the bottom. In a photo the context is most of an
    object's background; at 0 (no growth) the toy world's neutral pastel is, and SemPLES's
    stage 2, which fits each prompt to the image minus the object, learns the pastel instead."""
    if context in ("sky", "rails"):
        return top, bottom + round(fill * (size - bottom))
    return top - round(fill * top), bottom


def _paste_object(
    canvas: np.ndarray,
    mask: np.ndarray,
    rng: np.random.Generator,
    placement: _Placement,
    palette: str,
) -> int:
    """Draw the object, maybe mirrored, into canvas and mask; return its pixel count."""
    x0, y0, x1, y1 = placement.box
    pen = _Pen(x1 - x0, y1 - y0)
    name = TOY_CLASSES[placement.class_index]
    draw = _PALETTE_DRAWS[palette].get(name, _SHAPES[name].draw)
    draw(pen, rng, _tone(rng))
    rgba = np.asarray(pen.patch)
    if rng.random() < 0.5:
        rgba = rgba[:, ::-1]
    inside = rgba[..., 3] > 0
    canvas[y0:y1, x0:x1][inside] = rgba[..., :3][inside]
    mask[y0:y1, x0:x1][inside] = placement.class_index + 1
    return int(inside.sum())


def _check_visible(mask: np.ndarray, placements: list[_Placement], drawn: list[int]) -> None:
    """Image-level labels are only honest if every labelled object can be seen."""
    visible = np.bincount(mask.ravel(), minlength=len(TOY_CLASSES) + 1)
    for placement, pixels in zip(placements, drawn):
        shown = int(visible[placement.class_index + 1])
        if pixels == 0 or shown < 0.5 * pixels:
            name = TOY_CLASSES[placement.class_index]
            raise AssertionError(f"{name} shows {shown} of {pixels} pixels")
    present = [int(k) for k in np.flatnonzero(visible[1:])]
    expected = sorted(p.class_index for p in placements)
    if present != expected:
        raise AssertionError(f"mask holds classes {present}, labels say {expected}")


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A warm or lilac pastel with soft shading: far from every context and object colour."""
    hue = (rng.uniform(270.0, 390.0) % 360.0) / 360.0
    rgb = colorsys.hsv_to_rgb(hue, rng.uniform(0.15, 0.3), rng.uniform(0.82, 0.93))
    knots = np.linspace(0.0, size - 1, 4)
    pixels = np.arange(size)
    rows = np.interp(pixels, knots, rng.uniform(-6.0, 6.0, 4)).astype(np.float32)
    cols = np.interp(pixels, knots, rng.uniform(-6.0, 6.0, 4)).astype(np.float32)
    shading = (rows[:, None] + cols[None, :])[..., None]
    return shading + np.array(rgb, np.float32) * 255.0


def _finish(canvas: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Mild per-pixel luminance noise, so no region is a flat colour, then back to uint8."""
    canvas += rng.standard_normal(canvas.shape[:2] + (1,), dtype=np.float32) * 3.0
    return np.clip(canvas, 0, 255, out=canvas).astype(np.uint8)


# --- context textures: each returns an (h, w, 3) float32 patch ---------------------------------


def _jitter(rng: np.random.Generator, rgb: Sequence[float], spread: float) -> np.ndarray:
    return np.asarray(rgb, np.float32) + rng.uniform(-spread, spread, 3).astype(np.float32)


def _sky(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Light blue, deeper at the top: a smooth vertical gradient."""
    top = _jitter(rng, (100, 160, 232), 10)
    bottom = _jitter(rng, (188, 218, 246), 6)
    t = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    return np.broadcast_to(top + (bottom - top) * t, (h, w, 3)).copy()


def _water(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Blue with wavy lighter crests, darkening with depth."""
    y = np.arange(h, dtype=np.float32)[:, None]
    x = np.arange(w, dtype=np.float32)[None, :]
    phase = rng.uniform(0.0, 2 * np.pi)
    wave = np.sin(1.1 * y + 1.3 * np.sin(0.3 * x + phase) + phase)
    base = _jitter(rng, (45, 115, 195), 10) * (1.0 - 0.15 * y / max(h, 1))[..., None]
    crest = _jitter(rng, (145, 198, 240), 6)
    return np.where((wave > 0.7)[..., None], crest, base).astype(np.float32)


def _rails(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Grey-brown speckled gravel, regular dark-brown sleepers, two dark rails."""
    image = _jitter(rng, (150, 128, 102), 8) + rng.integers(-28, 29, (h, w, 1)).astype(np.float32)
    y = np.arange(h)[:, None]
    x = np.arange(w)[None, :]
    near, far = round(0.3 * h), round(0.7 * h)
    period = int(rng.integers(6, 9))
    sleepers = ((x + int(rng.integers(period))) % period < 3) & (y >= near - 2) & (y <= far + 2)
    image[sleepers] = _jitter(rng, (100, 68, 42), 6)
    thickness = max(1, h // 12)
    rails = ((y >= near) & (y < near + thickness)) | ((y >= far) & (y < far + thickness))
    image[np.broadcast_to(rails, (h, w))] = _jitter(rng, (62, 62, 70), 5)
    return image


def _grass(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Green with staggered vertical blade streaks of lighter and darker green."""
    blade = 4
    values = rng.random((h // blade + 2, w)).astype(np.float32)
    offsets = rng.integers(0, blade, w)
    rows = (np.arange(h)[:, None] + offsets[None, :]) // blade
    streaks = values[rows, np.arange(w)[None, :]] - 0.5
    base = _jitter(rng, (78, 158, 62), 10)
    return base + streaks[..., None] * np.array([40, 80, 30], np.float32)


def _road(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Mid-grey fine-grained asphalt with a yellow dashed centre line."""
    grey = rng.uniform(118.0, 140.0)
    image = grey + rng.normal(0.0, 6.0, (h, w, 1)).astype(np.float32)
    image = np.repeat(image, 3, axis=2) + np.array([0, 0, 3], np.float32)
    row, thickness = round(0.65 * h), max(1, h // 14)
    period = int(rng.integers(12, 17))
    dashes = (np.arange(w) + int(rng.integers(period))) % period < 0.55 * period
    image[row : row + thickness, dashes] = _jitter(rng, (236, 202, 52), 8)
    return image


def _snow(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Near-white with blue-grey speckles and a faint bluish shade towards the top."""
    t = np.linspace(1.0, 0.0, h, dtype=np.float32)[:, None, None]
    image = _jitter(rng, (238, 242, 250), 4) - t * np.array([14, 10, 2], np.float32)
    image = np.broadcast_to(image, (h, w, 3)).copy()
    image[rng.random((h, w)) < 0.08] = _jitter(rng, (178, 190, 212), 6)
    return image


_TEXTURES: dict[str, Callable[[np.random.Generator, int, int], np.ndarray]] = {
    "sky": _sky,
    "water": _water,
    "rails": _rails,
    "grass": _grass,
    "road": _road,
    "snow": _snow,
}


# --- objects: drawn facing right in unit coordinates, mirrored at paste time ------------------

_Rgb = tuple[int, int, int]
_Tone = Callable[[_Rgb], _Rgb]
_Box = tuple[float, float, float, float]


class _Pen:
    """Draws shapes in unit coordinates onto an RGBA patch whose alpha is the object's mask, so
    that colour and mask come from the same call and can never disagree."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.patch = Image.new("RGBA", (width, height))
        self._draw = ImageDraw.Draw(self.patch)

    def _xy(self, points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
        return [(x * (self.width - 1), y * (self.height - 1)) for x, y in points]

    def polygon(self, points: Sequence[tuple[float, float]], colour: _Rgb) -> None:
        self._draw.polygon(self._xy(points), fill=(*colour, 255))

    def ellipse(self, box: _Box, colour: _Rgb) -> None:
        self._draw.ellipse(self._xy([box[:2], box[2:]]), fill=(*colour, 255))

    def rectangle(self, box: _Box, colour: _Rgb) -> None:
        self._draw.rectangle(self._xy([box[:2], box[2:]]), fill=(*colour, 255))

    def circle(self, cx: float, cy: float, radius: float, colour: _Rgb) -> None:
        """A round circle whatever the patch's aspect; ``radius`` in units of the height."""
        rx = radius * self.height / self.width
        self.ellipse((cx - rx, cy - radius, cx + rx, cy + radius), colour)


def _tone(rng: np.random.Generator) -> _Tone:
    """One brightness and tint per object, applied to all its colours."""
    gain = float(rng.uniform(0.88, 1.08))
    shift = [int(s) for s in rng.integers(-12, 13, 3)]

    def tone(rgb: _Rgb) -> _Rgb:
        r, g, b = (max(0, min(255, int(c * gain + s))) for c, s in zip(rgb, shift))
        return r, g, b

    return tone


def _draw_aeroplane(
    pen: _Pen,
    rng: np.random.Generator,
    tone: _Tone,
    colours: tuple[_Rgb, _Rgb, _Rgb] = ((165, 170, 182), (208, 210, 216), (165, 170, 182)),
) -> None:
    """Seen from above: a fuselage crossed by swept wings and a small tailplane; ``colours``
    are (wings, fuselage, tailplane), by default a pale grey close to the sky's."""
    wing, body, tail = (tone(colour) for colour in colours)
    sweep = rng.uniform(-0.04, 0.04)
    for side in (1, -1):
        root, tip = 0.5 + side * 0.05, 0.5 + side * 0.5
        pen.polygon([(0.38, root), (0.60, root), (0.44 + sweep, tip), (0.33 + sweep, tip)], wing)
        tail_tip = 0.5 + side * 0.26
        pen.polygon([(0.03, root), (0.15, root), (0.07, tail_tip), (0.01, tail_tip)], tail)
    pen.ellipse((0.0, 0.39, 1.0, 0.61), body)
    pen.ellipse((0.80, 0.44, 0.93, 0.56), tone((45, 65, 110)))


def _draw_boat(pen: _Pen, rng: np.random.Generator, tone: _Tone) -> None:
    """Sailing boat from the side: brown trapezoid hull, mast, white main sail and jib."""
    sail = tone((246, 246, 238))
    boom = rng.uniform(0.85, 0.95)
    pen.rectangle((0.47, 0.02, 0.51, 0.72), tone((70, 50, 35)))
    pen.polygon([(0.53, 0.04), (0.53, 0.66), (boom, 0.66)], sail)
    pen.polygon([(0.45, 0.14), (0.45, 0.66), (0.14, 0.66)], tone((232, 232, 222)))
    pen.polygon([(0.0, 0.68), (1.0, 0.68), (0.80, 1.0), (0.20, 1.0)], tone((125, 72, 38)))
    pen.rectangle((0.02, 0.68, 0.98, 0.75), tone((82, 46, 25)))


def _draw_train(pen: _Pen, rng: np.random.Generator, tone: _Tone) -> None:
    """Long red carriage with a slanted nose, a row of windows, a yellow stripe, wheels."""
    pen.rectangle((0.02, 0.0, 0.92, 0.12), tone((75, 75, 82)))
    body = [(0.0, 0.1), (0.9, 0.1), (1.0, 0.45), (1.0, 0.84), (0.0, 0.84)]
    pen.polygon(body, tone((200, 40, 40)))
    glass = tone((205, 230, 245))
    count = max(3, pen.width // 7)
    step = 0.82 / count
    for i in range(count):
        left = 0.05 + i * step
        pen.rectangle((left, 0.24, left + 0.55 * step, 0.5), glass)
    pen.polygon([(0.91, 0.18), (0.97, 0.44), (0.91, 0.44)], glass)
    pen.rectangle((0.0, 0.6, 1.0, 0.68), tone((245, 215, 70)))
    for cx in (0.1, 0.24, 0.72, 0.86):
        pen.circle(cx, 0.88, 0.12, (35, 35, 38))


def _draw_cow(
    pen: _Pen, rng: np.random.Generator, tone: _Tone, coat: _Rgb = (245, 243, 236)
) -> None:
    """Body and head in ``coat`` (by default white) with black spots, on four black legs, pink
    muzzle."""
    body, black, pink = tone(coat), tone((28, 28, 30)), tone((232, 160, 165))
    for x in (0.16, 0.28, 0.60, 0.72):
        pen.rectangle((x, 0.55, x + 0.07, 1.0), black)
    pen.polygon([(0.08, 0.3), (0.11, 0.3), (0.04, 0.68), (0.01, 0.68)], black)
    pen.ellipse((0.06, 0.18, 0.84, 0.74), body)
    for _ in range(int(rng.integers(3, 6))):
        cx, cy = rng.uniform(0.22, 0.66), rng.uniform(0.32, 0.56)
        rx, ry = rng.uniform(0.05, 0.1), rng.uniform(0.06, 0.11)
        pen.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), black)
    pen.ellipse((0.50, 0.66, 0.60, 0.80), pink)
    pen.polygon([(0.77, 0.16), (0.70, 0.06), (0.82, 0.10)], black)
    pen.ellipse((0.76, 0.10, 0.98, 0.46), body)
    pen.ellipse((0.79, 0.12, 0.88, 0.26), black)
    pen.ellipse((0.86, 0.30, 1.0, 0.50), pink)


def _draw_car(
    pen: _Pen, rng: np.random.Generator, tone: _Tone, paint_colour: _Rgb = (45, 95, 205)
) -> None:
    """Saloon from the side in ``paint_colour`` (by default blue): body, cabin with two
    windows, two dark wheels."""
    paint = tone(paint_colour)
    glass = tone((195, 225, 248))
    roof = rng.uniform(0.04, 0.1)
    pen.polygon([(0.22, 0.42), (0.33, roof), (0.68, roof), (0.82, 0.42)], paint)
    pen.polygon(
        [(0.0, 0.48), (0.06, 0.40), (0.94, 0.40), (1.0, 0.52), (1.0, 0.80), (0.0, 0.80)], paint
    )
    pen.polygon([(0.30, 0.40), (0.37, roof + 0.08), (0.49, roof + 0.08), (0.49, 0.40)], glass)
    pen.polygon([(0.53, 0.40), (0.53, roof + 0.08), (0.65, roof + 0.08), (0.74, 0.40)], glass)
    pen.rectangle((0.94, 0.52, 1.0, 0.60), tone((250, 222, 90)))
    for cx in (0.22, 0.78):
        pen.circle(cx, 0.78, 0.22, (28, 28, 30))
        pen.circle(cx, 0.78, 0.09, (160, 160, 165))


def _draw_sheep(
    pen: _Pen,
    rng: np.random.Generator,
    tone: _Tone,
    wool_colours: tuple[_Rgb, _Rgb] = ((238, 229, 202), (205, 193, 160)),
) -> None:
    """Woolly body (scalloped rim of curls) on dark legs, with a dark head; ``wool_colours``
    are (wool, its shadow), by default a cream close to the snow's white."""
    wool, shadow = (tone(colour) for colour in wool_colours)
    dark = tone((48, 42, 42))
    for x in (0.18, 0.30, 0.55, 0.66):
        pen.rectangle((x, 0.6, x + 0.06, 1.0), dark)
    angles = np.linspace(0.0, 2 * np.pi, 11, endpoint=False) + rng.uniform(0.0, 0.6)
    for radius, colour in ((0.13, shadow), (0.1, wool)):
        for a in angles:
            pen.circle(0.425 + 0.34 * np.cos(a), 0.45 + 0.26 * np.sin(a), radius, colour)
    pen.ellipse((0.08, 0.2, 0.77, 0.70), wool)
    for _ in range(4):
        pen.circle(rng.uniform(0.2, 0.65), rng.uniform(0.3, 0.6), 0.04, shadow)
    pen.ellipse((0.70, 0.16, 0.80, 0.28), dark)
    pen.ellipse((0.74, 0.18, 0.98, 0.55), dark)


_Draw = Callable[[_Pen, np.random.Generator, _Tone], None]


@dataclass(frozen=True)
class _Shape:
    """How to draw a class: ``aspect`` is width / height, ``airborne`` puts it in the upper part."""

    draw: _Draw
    aspect: float
    airborne: bool = False


_SHAPES: dict[str, _Shape] = {
    "aeroplane": _Shape(_draw_aeroplane, 1.2, airborne=True),
    "boat": _Shape(_draw_boat, 0.9),
    "train": _Shape(_draw_train, 2.6),
    "cow": _Shape(_draw_cow, 1.45),
    "car": _Shape(_draw_car, 1.8),
    "sheep": _Shape(_draw_sheep, 1.3),
}

_CONTRASTING: dict[str, _Draw] = {
    "aeroplane": partial(_draw_aeroplane, colours=((88, 96, 112), (236, 236, 240), (232, 122, 40))),
    "sheep": partial(_draw_sheep, wool_colours=((214, 194, 150), (178, 156, 114))),
}
# What each palette repaints (README, "The toy world"). "contrasting": the aeroplane (white
# fuselage, dark wings, orange tailplane) and the sheep (beige wool), whose pale colours let a
# 12 px patch of sky or snow on black look like the object. "distinct": also no object in a
# context's colour (yellow fuselage, chestnut cow, purple car), because a thin ring of a context
# on black read as the object of its colour (a sheep's snow as the white cow); the boat keeps
# its white sails.
_PALETTE_DRAWS: dict[str, dict[str, _Draw]] = {
    "pale": {},
    "contrasting": _CONTRASTING,
    "distinct": {
        **_CONTRASTING,
        "aeroplane": partial(
            _draw_aeroplane, colours=((88, 96, 112), (240, 200, 50), (232, 122, 40))
        ),
        "cow": partial(_draw_cow, coat=(160, 82, 45)),
        "car": partial(_draw_car, paint_colour=(130, 50, 160)),
    },
}
PALETTES: tuple[str, ...] = tuple(_PALETTE_DRAWS)


def _caption(objects: Sequence[str], contexts: Sequence[str]) -> str:
    """'a photo of a cow and a train on grass and rails'; the contexts part only when given."""
    caption = CAPTION_PREFIX + _join([_with_article(name) for name in objects])
    return caption + (" on " + _join(contexts) if contexts else "")


def _with_article(name: str) -> str:
    return f"{indefinite_article(name)} {name}"


def _join(words: Sequence[str]) -> str:
    """'x', 'x and y', 'x, y and z'."""
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]
