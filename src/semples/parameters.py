"""The typed schema of every pipeline's parameters, checked before the first node runs.

Kedro passes parameters as plain dictionaries, so a mistyped key (``max_step``) is silently
ignored and a wrong value surfaces hours later, deep in a node. These models mirror
``conf/base/parameters_*.yml``: unknown keys are rejected (with the nearest known key), types,
ranges and enumerations are checked, and files the run must read have to exist. The
enumerations are the library's own constants, so the schema cannot drift from what the code
accepts. ``semples.hooks`` runs :func:`validate_parameters` in ``before_pipeline_run``.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from semples.clip.model import check_clip_weights
from semples.clip.pretrain import PretrainConfig
from semples.data.toy_world import ToyWorldConfig
from semples.models.cam_networks import (
    GENERATOR_ARCHITECTURES,
    MASK_ACTIVATIONS,
    check_generator_options,
)
from semples.refine.irnet import IMAGE_SCALES as IRNET_IMAGE_SCALES
from semples.refine.irnet import IRNET_BACKBONES
from semples.refine.pseudo_masks import REFINE_MODES
from semples.training.cam_classifier import CamClassifierConfig
from semples.training.config import LOSS_ABLATIONS, TRAINABLE_PARTS

PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]
PositiveFloat = Annotated[float, Field(gt=0.0)]
NonNegativeFloat = Annotated[float, Field(ge=0.0)]
Device = Annotated[str, Field(pattern=r"^(auto|cpu|cuda(:\d+)?)$")]


def _existing_file(value: str | None) -> str | None:
    if value is not None and not Path(value).is_file():
        raise ValueError(f"no such file: {value}")
    return value


# A file the run reads (weights): it must exist before the run starts, not when a node loads it.
ExistingFile = Annotated[str | None, AfterValidator(_existing_file)]


class Strict(BaseModel):
    """A parameter section: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --- ingestion ------------------------------------------------------------------------------


class FolderDataset(Strict):
    root: str | None = None
    splits: list[str]
    mask_dirs: list[str] | None = None
    decode_images: bool = True


class Ingestion(Strict):
    dataset: Literal["toy", "voc", "coco"]
    on_bad_item: Literal["raise", "skip"] = "raise"
    toy: ToyWorldConfig = ToyWorldConfig()
    voc: FolderDataset | None = None
    coco: FolderDataset | None = None

    @model_validator(mode="after")
    def _root_exists(self) -> Ingestion:
        if self.dataset != "toy":
            folder = getattr(self, self.dataset)
            root = None if folder is None else folder.root
            if root is None or not Path(root).is_dir():
                raise ValueError(
                    f"{self.dataset}.root must be an existing folder, got {root!r} "
                    f"(set it with --params={self.dataset}_root=PATH or in conf/local)"
                )
        return self


# --- pseudo_labels --------------------------------------------------------------------------


class Clip(Strict):
    name: str
    pretrained: str | None = None
    weights: ExistingFile = None
    precision: Literal["fp32", "fp16", "bf16"] = "fp32"

    @model_validator(mode="after")
    def _weights_fit(self) -> Clip:
        if self.weights is not None:
            check_clip_weights(self.name, self.weights)
        return self


class ToyClip(Strict):
    pretraining: PretrainConfig
    zero_shot_images: NonNegativeInt


class Generator(Strict):
    arch: Literal[GENERATOR_ARCHITECTURES]  # type: ignore[valid-type]
    weights: ExistingFile = None
    options: dict[str, Any] = {}
    cam_pretraining: CamClassifierConfig | None = None

    @model_validator(mode="after")
    def _options_fit(self) -> Generator:
        check_generator_options(self.arch, self.options)
        return self


class Prompts(Strict):
    length: PositiveInt
    prefix: str


class Augmentation(Strict):
    resize_long: Annotated[list[PositiveInt], Field(min_length=2, max_length=2)] | None = None
    hflip: bool = False
    crop_size: PositiveInt | None = None


class StageSettings(Strict):
    """``train.common`` and ``train.stage1/2/3``: a stage's config is common, then its own."""

    epochs: PositiveInt | None = None
    batch_size: PositiveInt | None = None
    lr: PositiveFloat | None = None
    scale_lr_with_batch: bool | None = None
    weight_decay: NonNegativeFloat | None = None
    lambda_b: NonNegativeFloat | None = None
    lambda_t: NonNegativeFloat | None = None
    lam: NonNegativeFloat | None = None
    area_weight: NonNegativeFloat | None = None
    mask_eps: PositiveFloat | None = None
    mask_activation: Literal[MASK_ACTIVATIONS] | None = None  # type: ignore[valid-type]
    trainable: Literal[TRAINABLE_PARTS] | None = None  # type: ignore[valid-type]
    text_term: Literal["paper", "reference"] | None = None
    similarity_floor: Annotated[float, Field(gt=0, lt=0.9999)] | None = None
    amp: bool | None = None
    num_workers: NonNegativeInt | None = None


class Train(Strict):
    splits: list[str]
    augmentation: Augmentation = Augmentation()
    loss_ablation: Literal[(*LOSS_ABLATIONS, "none")] = "all"  # type: ignore[valid-type]
    stage3_init: Literal["stage1_initial", "stage1_final"] = "stage1_initial"
    prompt_images: Literal["all", "single_class"] = "all"
    max_steps: PositiveInt | None = None
    processes: PositiveInt = 1
    checkpoint_dir: str
    common: StageSettings
    stage1: StageSettings = StageSettings()
    stage2: StageSettings = StageSettings()
    stage3: StageSettings = StageSettings()


class Cams(Strict):
    splits: list[str]
    scales: Annotated[list[PositiveFloat], Field(min_length=1)]
    flip: bool


class Evaluation(Strict):
    split: str
    thresholds: Annotated[list[Probability], Field(min_length=1)]
    overlay_images: NonNegativeInt = 0
    stage_scales: Annotated[list[PositiveFloat], Field(min_length=1)] = [1.0]
    stage_flip: bool = True


class Crf(Strict):
    iterations: PositiveInt = 10
    gaussian_sxy: PositiveFloat = 3
    gaussian_compat: NonNegativeFloat = 3
    bilateral_sxy: PositiveFloat = 50
    bilateral_srgb: PositiveFloat = 5
    bilateral_compat: NonNegativeFloat = 10


class IrLabels(Strict):
    fg_threshold: Probability
    bg_threshold: Probability

    @model_validator(mode="after")
    def _ordered(self) -> IrLabels:
        if self.bg_threshold > self.fg_threshold:
            raise ValueError(
                f"bg_threshold ({self.bg_threshold}) must not exceed fg_threshold "
                f"({self.fg_threshold})"
            )
        return self


class Irnet(Strict):
    backbone: Literal[IRNET_BACKBONES]  # type: ignore[valid-type]
    weights: ExistingFile = None
    epochs: PositiveInt = 3
    batch_size: PositiveInt = 16
    lr: PositiveFloat = 0.1
    weight_decay: NonNegativeFloat = 1e-4
    crop_size: PositiveInt | None = None
    radius: PositiveInt = 10
    image_scale: Literal[IRNET_IMAGE_SCALES] = 1  # type: ignore[valid-type]


class Walk(Strict):
    radius: PositiveInt = 5
    beta: PositiveFloat = 10
    exp_times: NonNegativeInt = 8
    bg_threshold: Probability = 0.25


class PseudoMasks(Strict):
    refine: Literal[REFINE_MODES]  # type: ignore[valid-type]
    cam_threshold: Probability
    ir_labels: IrLabels
    crf: Crf
    irnet: Irnet
    walk: Walk


class PseudoLabels(Strict):
    device: Device = "auto"
    seed: NonNegativeInt = 0
    clip: Clip
    toy_clip: ToyClip
    generator: Generator
    prompts: Prompts
    text_template: str
    background_prompts: Literal["learned", "handwritten"] = "learned"
    handwritten_prompts: dict[str, str] = {}
    train: Train
    cams: Cams
    evaluation: Evaluation
    pseudo_masks: PseudoMasks

    @field_validator("text_template")
    @classmethod
    def _has_slot(cls, value: str) -> str:
        if "{}" not in value:
            raise ValueError(f"text_template needs a '{{}}' for the class name, got {value!r}")
        return value


# --- segmentation ---------------------------------------------------------------------------


class SegmentationTrain(Strict):
    crop_size: PositiveInt | None = None
    batch_size: PositiveInt | None = None
    max_iters: PositiveInt | None = None
    lr: PositiveFloat | None = None
    weight_decay: NonNegativeFloat | None = None
    loss: Literal["ce", "balanced_ce"] | None = None
    amp: bool = True
    num_workers: NonNegativeInt | None = None
    val_interval: PositiveInt | None = None
    checkpoint_interval: PositiveInt | None = None
    log_interval: PositiveInt | None = None
    processes: PositiveInt = 1
    work_dir: str
    cfg_options: dict[str, Any] = {}


class SegmentationTest(Strict):
    scales: Annotated[list[PositiveFloat], Field(min_length=1)]
    flip: bool
    crf: Crf | None = None


class Segmentation(Strict):
    device: Device = "auto"
    seed: NonNegativeInt = 0
    config: str
    train_splits: list[str]
    val_split: str
    max_images: PositiveInt | None = None
    backbone_weights: ExistingFile = None
    backbone_prefix: str | None = None
    train: SegmentationTrain
    test: SegmentationTest


# --- reporting ------------------------------------------------------------------------------


class ReportColumns(Strict):
    headline: str
    per_class: str | None = None
    columns: dict[str, str] = {}


class Ablation(Strict):
    reports: list[str]


class Reporting(Strict):
    reports: dict[str, ReportColumns]
    per_class_runs: PositiveInt = 2
    ablation: Ablation


SCHEMAS: dict[str, type[Strict]] = {
    "ingestion": Ingestion,
    "pseudo_labels": PseudoLabels,
    "segmentation": Segmentation,
    "reporting": Reporting,
}


class ParameterError(ValueError):
    """Parameters that do not fit the schema; the message lists every problem, one a line."""

    @classmethod
    def listing(cls, problems: list[str]) -> ParameterError:
        return cls("invalid parameters:\n  " + "\n  ".join(problems))


def validate_parameters(parameters: Mapping[str, Any], sections: set[str] | None = None) -> None:
    """Check each schema'd top-level section of ``parameters`` (those in ``sections`` if given);
    raise one ``ParameterError`` naming every bad key (dotted path), value and the reason."""
    problems = []
    for section, schema in SCHEMAS.items():
        if section not in parameters or (sections is not None and section not in sections):
            continue
        try:
            schema.model_validate(parameters[section])
        except ValidationError as error:
            problems += _described(section, schema, error)
    if problems:
        raise ParameterError.listing(problems)


def parse_section(section: str, values: Mapping[str, Any]) -> Strict:
    """``values`` (one top-level section of Kedro's parameters) as its typed config, defaults
    filled in; a ``ParameterError`` naming every problem otherwise."""
    schema = SCHEMAS[section]
    try:
        return schema.model_validate(values)
    except ValidationError as error:
        raise ParameterError.listing(_described(section, schema, error)) from None


def _described(section: str, schema: type[BaseModel], error: ValidationError) -> list[str]:
    return [_describe(section, schema, item) for item in error.errors()]


def _describe(section: str, schema: type[BaseModel], item: Mapping[str, Any]) -> str:
    location = [section, *map(str, item["loc"])]
    path = ".".join(location)
    if item["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
        known = _known_keys(schema, item["loc"][:-1])
        near = difflib.get_close_matches(str(item["loc"][-1]), known, n=1, cutoff=0.6)
        hint = f"; did you mean `{near[0]}`?" if near else f"; known keys: {', '.join(known)}"
        return f"{path}: unknown key{hint}"
    message = item["msg"].removeprefix("Value error, ")
    value = item.get("input")
    shown = "" if isinstance(value, (Mapping, list)) else f" = {value!r}"
    return f"{path}{shown}: {message}"


def _known_keys(schema: type, location: tuple) -> list[str]:
    """The keys of the (nested) model or library dataclass at ``location``, for "did you mean"."""
    model: Any = schema
    for key in location:
        field = _fields(model).get(str(key))
        if field is None:
            return []
        model = _section_type(field)
    return sorted(_fields(model))


def _fields(model: Any) -> dict[str, Any]:
    """Field name -> annotation of a pydantic model or a dataclass (else nothing)."""
    if isinstance(model, type) and issubclass(model, BaseModel):
        return {name: field.annotation for name, field in model.model_fields.items()}
    return {name: field.type for name, field in getattr(model, "__dataclass_fields__", {}).items()}


def _section_type(annotation: Any) -> Any:
    """The model or dataclass in an annotation such as ``Crf | None``."""
    for candidate in (annotation, *getattr(annotation, "__args__", ())):
        if _fields(candidate):
            return candidate
    return None
