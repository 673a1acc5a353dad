"""Ingestion of the configured dataset in two steps, so that generated files are versioned.

1. :func:`generate_files` returns what the dataset needs written: the toy world's images,
   masks, context maps (evaluation only) and captions; COCO's semantic masks rendered from
   instance annotations (lazily, one at a time); nothing for VOC, whose files already exist.
2. :func:`build_index` reads the saved files back (their paths are only known once saved) and
   the dataset's own files, validates every item and returns the image index.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from semples.data.classes import VOC_CLASSES
from semples.data.coco import CocoSplit, coco_mask_renderers, scan_coco
from semples.data.index import IndexRecord, ItemPolicy, records_to_frame
from semples.data.toy_world import (
    TOY_CLASSES,
    ToyWorldConfig,
    captioned_id,
    render_captioned_scene,
    render_scene,
    scene_id,
    split_sizes,
)
from semples.data.voc import scan_voc
from semples.parameters import FolderDataset, Ingestion, parse_section

ANNOTATION_COLUMNS = ("id", "split", "labels", "caption")


@dataclass
class GeneratedFiles:
    """Files a dataset needs written before it can be indexed, plus their annotations."""

    images: dict[str, np.ndarray | Callable[[], np.ndarray]] = field(default_factory=dict)
    masks: dict[str, np.ndarray | Callable[[], np.ndarray]] = field(default_factory=dict)
    contexts: dict[str, np.ndarray] = field(default_factory=dict)
    annotations: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=list(ANNOTATION_COLUMNS))
    )


@dataclass
class IngestedDataset:
    image_index: pd.DataFrame
    caption_index: pd.DataFrame
    class_names: list[str]
    skipped: list[dict[str, str]]


def dataset_params(run: Ingestion) -> dict[str, Any]:
    """The configured dataset's own section as JSON-ready values (the toy world's or the root
    and splits), which every report carries so that runs on other data are told apart."""
    section = getattr(run, run.dataset)
    return asdict(section) if run.dataset == "toy" else section.model_dump(mode="json")


@functools.lru_cache(maxsize=4)
def load_coco_split(root: Path, split: str) -> CocoSplit:
    """COCO's instance json takes seconds to parse; both ingestion steps share one parse."""
    return CocoSplit.load(root, split)


def _coco_splits(coco: FolderDataset) -> list[CocoSplit]:
    return [load_coco_split(Path(coco.root), split) for split in coco.splits]


def _toy_files(config: ToyWorldConfig) -> GeneratedFiles:
    files = GeneratedFiles()
    rows = []
    for split, size in split_sizes(config).items():
        for index in range(size):
            scene = render_scene(config, split, index)
            item_id = scene_id(split, index)
            files.images[item_id] = scene.image
            files.masks[item_id] = scene.mask
            files.contexts[item_id] = scene.context
            rows.append((item_id, split, list(scene.labels), None))
    for index in range(config.num_captioned):
        image, caption = render_captioned_scene(config, index)
        item_id = captioned_id(index)
        files.images[item_id] = image
        rows.append((item_id, "captioned", [], caption))
    files.annotations = pd.DataFrame(rows, columns=list(ANNOTATION_COLUMNS))
    return files


def generate_files(run: Ingestion) -> GeneratedFiles:
    """What the configured dataset needs written (see the module docstring)."""
    if run.dataset == "toy":
        return _toy_files(run.toy)
    if run.dataset == "coco":
        return GeneratedFiles(masks=coco_mask_renderers(_coco_splits(run.coco)))
    return GeneratedFiles()


def _paths(files: Mapping[str, Any]) -> dict[str, str]:
    """Absolute paths of the items of a loaded mask set."""
    return {item_id: Path(files.path(item_id)).resolve().as_posix() for item_id in files}


def _toy_records(
    config: ToyWorldConfig,
    images: Mapping,
    masks: Mapping,
    contexts: Mapping,
    annotations: pd.DataFrame,
) -> tuple[list[IndexRecord], pd.DataFrame]:
    image_paths, mask_paths, context_paths = _paths(images), _paths(masks), _paths(contexts)
    scenes = annotations[annotations["split"] != "captioned"]
    records = [
        IndexRecord(
            id=row.id,
            split=row.split,
            image_path=image_paths[row.id],
            mask_path=mask_paths[row.id],
            context_path=_context_path(context_paths, row.id),
            width=config.image_size,
            height=config.image_size,
            labels=tuple(int(k) for k in row.labels),
        )
        for row in scenes.itertuples(index=False)
    ]
    captioned = annotations[annotations["split"] == "captioned"]
    caption_index = pd.DataFrame(
        {
            "id": captioned["id"].to_list(),
            "caption": captioned["caption"].to_list(),
            "image_path": [image_paths[i] for i in captioned["id"]],
        }
    )
    return records, caption_index


def _context_path(context_paths: Mapping[str, str], item_id: str) -> str:
    """A toy scene's context map; missing means the context set belongs to another run."""
    if item_id not in context_paths:
        raise ValueError(
            f"no context map for toy scene {item_id!r} in generated_context_masks "
            f"({len(context_paths)} maps): load the version written with generated_masks"
        )
    return context_paths[item_id]


def build_index(
    run: Ingestion,
    images: Mapping[str, Any],
    masks: Mapping[str, Any],
    contexts: Mapping[str, Any],
    annotations: pd.DataFrame,
) -> IngestedDataset:
    """Validate every item of the configured dataset and return the index (module docstring)."""
    policy = ItemPolicy(run.on_bad_item)
    caption_index = pd.DataFrame(columns=["id", "caption", "image_path"])
    if run.dataset == "toy":
        records, caption_index = _toy_records(run.toy, images, masks, contexts, annotations)
        class_names: Sequence[str] = TOY_CLASSES
    elif run.dataset == "voc":
        voc = run.voc
        records = scan_voc(Path(voc.root), splits=voc.splits, mask_dirs=voc.mask_dirs,
                           policy=policy)  # fmt: skip
        class_names = VOC_CLASSES
    else:
        splits = _coco_splits(run.coco)
        records = scan_coco(
            splits, mask_paths=_paths(masks), policy=policy, decode_images=run.coco.decode_images
        )
        class_names = splits[0].class_names
    return IngestedDataset(
        image_index=records_to_frame(records, class_names),
        caption_index=caption_index,
        class_names=list(class_names),
        skipped=policy.skipped,
    )


def ingestion_report(
    image_index: pd.DataFrame,
    class_names: Sequence[str],
    skipped: Sequence[Mapping[str, str]],
    run: Ingestion,
) -> dict[str, Any]:
    """Per-split image counts and class frequencies (images containing each class)."""
    name = run.dataset
    per_split = {str(k): int(v) for k, v in image_index.groupby("split").size().items()}
    if len(image_index):
        labels = np.array(image_index["labels"].to_list(), dtype=np.int64).reshape(
            len(image_index), len(class_names)
        )
    else:
        labels = np.zeros((0, len(class_names)), dtype=np.int64)
    by_split = {
        split: dict(
            zip(class_names, labels[(image_index["split"] == split).to_numpy()].sum(0).tolist())
        )
        for split in per_split
    }
    return {
        "dataset": name,
        "num_images": int(len(image_index)),
        "num_unique_images": int(image_index["id"].nunique()),
        "per_split": per_split,
        "class_names": list(class_names),
        "class_frequency": dict(zip(class_names, labels.sum(0).tolist())),
        "class_frequency_by_split": by_split,
        "num_skipped": len(skipped),
        "skipped": list(skipped),
        "params": {"dataset": name, name: dataset_params(run)},
    }


# --- the ingestion pipeline's steps: the section parsed once, results in the catalog's shapes


def _typed(params: Mapping[str, Any]) -> Ingestion:
    return parse_section("ingestion", params)


def dataset_files(params: Mapping[str, Any]) -> tuple[dict, dict, dict, pd.DataFrame]:
    """:func:`generate_files` as the catalog's four entries (images, masks, contexts,
    annotations)."""
    files = generate_files(_typed(params))
    return files.images, files.masks, files.contexts, files.annotations


def index_dataset(
    images: Mapping[str, Any],
    masks: Mapping[str, Any],
    contexts: Mapping[str, Any],
    annotations: pd.DataFrame,
    params: Mapping[str, Any],
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any], pd.DataFrame]:
    """:func:`build_index` as the image index, the caption index, the dataset's classes and the
    skipped items. The classes carry the dataset's own parameters into every run's report, so
    that runs on different toy worlds (or roots) are never grouped or compared as one series."""
    run = _typed(params)
    dataset = build_index(run, images, masks, contexts, annotations)
    classes = {
        "dataset": run.dataset, "dataset_params": dataset_params(run),
        "class_names": dataset.class_names,
    }  # fmt: skip
    skipped = pd.DataFrame(dataset.skipped, columns=["id", "split", "path", "reason"])
    return dataset.image_index, dataset.caption_index, classes, skipped


def report_ingestion(
    image_index: pd.DataFrame,
    classes: Mapping[str, Any],
    skipped: pd.DataFrame,
    params: Mapping[str, Any],
) -> dict[str, Any]:
    """:func:`ingestion_report` from the catalog's classes and skipped-items table."""
    records = skipped.to_dict("records")
    return ingestion_report(image_index, classes["class_names"], records, _typed(params))
