"""A versioned set of per-image arrays saved as one folder: label maps, images, CAMs.

``PartitionedDataset`` versions files one by one, so a later, smaller run mixes with an earlier
one on load. Here one version is one folder, written whole and atomically: the save writes into
a hidden temporary folder and renames it into place at the end, so an interrupted or failed save
leaves no partial version and never touches earlier ones.

Formats, chosen per item from what is saved:
* 2-D integer array with values 0..255 -> palette PNG (PASCAL VOC palette), read back as the
  raw label indices;
* H x W x 3 uint8 array -> RGB PNG;
* float array, or a mapping of name -> array -> compressed ``.npz``.
"""

from __future__ import annotations

import base64
import io
import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from kedro.io.core import AbstractVersionedDataset, DatasetError, Version
from kedro_datasets._typing import ImagePreview
from PIL import Image

from semples.progress import progress_bar
from semples.viz import voc_palette

MaskItem = np.ndarray | Mapping[str, np.ndarray]
MaskSource = MaskItem | Callable[[], MaskItem]

_NPZ_SINGLE_KEY = "array"


class MaskSet(Mapping[str, Callable[[], MaskItem]]):
    """A lazy, read-only view of one saved folder: id -> loader (nothing is read up front)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self._paths = {
            path.stem: path
            for path in sorted(self.folder.iterdir())
            if path.suffix in (".png", ".npz")
        }

    def __getitem__(self, item_id: str) -> Callable[[], MaskItem]:
        path = self.path(item_id)
        return partial(read_item, path)  # picklable: DDP workers get the loaders

    def __iter__(self) -> Iterator[str]:
        return iter(self._paths)

    def __len__(self) -> int:
        return len(self._paths)

    def path(self, item_id: str) -> Path:
        """The file that holds ``item_id``; KeyError names the id and the folder."""
        try:
            return self._paths[item_id]
        except KeyError:
            raise KeyError(f"no item {item_id!r} in mask set {self.folder}") from None

    def read(self, item_id: str) -> MaskItem:
        return read_item(self.path(item_id))


def read_item(path: Path) -> MaskItem:
    """Read one saved item: PNG -> label indices or RGB array; npz -> array or dict."""
    if path.suffix == ".png":
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB") if image.mode not in ("P", "L") else image)
    with np.load(path) as archive:
        arrays = {name: archive[name] for name in archive.files}
    return arrays[_NPZ_SINGLE_KEY] if list(arrays) == [_NPZ_SINGLE_KEY] else arrays


def write_item(folder: Path, item_id: str, item: MaskItem) -> Path:
    """Write one item in the format its type calls for; TypeError/ValueError name the id."""
    if isinstance(item, Mapping):
        path = folder / f"{item_id}.npz"
        np.savez_compressed(path, **{name: np.asarray(value) for name, value in item.items()})
        return path
    array = np.asarray(item)
    if array.ndim == 2 and (array.dtype == bool or np.issubdtype(array.dtype, np.integer)):
        if array.size and (array.min() < 0 or array.max() > 255):
            raise ValueError(
                f"mask {item_id!r}: label values must lie in 0..255, "
                f"got {int(array.min())}..{int(array.max())}"
            )
        image = Image.fromarray(array.astype(np.uint8), mode="P")
        image.putpalette(voc_palette())
    elif array.ndim == 3 and array.shape[2] == 3 and array.dtype == np.uint8:
        image = Image.fromarray(array, mode="RGB")
    elif np.issubdtype(array.dtype, np.floating):
        path = folder / f"{item_id}.npz"
        np.savez_compressed(path, **{_NPZ_SINGLE_KEY: array})
        return path
    else:
        raise TypeError(
            f"mask {item_id!r}: cannot save an array of dtype {array.dtype} and shape "
            f"{array.shape}; expected a 2-D integer label map, an HxWx3 uint8 image, "
            "a float array or a mapping of arrays"
        )
    path = folder / f"{item_id}.png"
    image.save(path, optimize=False)
    return path


def _check_item_id(item_id: Any) -> None:
    if not isinstance(item_id, str) or not item_id or "/" in item_id or "\\" in item_id:
        raise ValueError(f"mask id {item_id!r} must be a non-empty string without slashes")
    if item_id.startswith("."):
        raise ValueError(f"mask id {item_id!r} must not start with '.'")


def _preview_tile(item: MaskItem, size: int) -> np.ndarray:
    """An RGB thumbnail of any saved item: palette colours, the image, or a heat map."""
    if isinstance(item, Mapping):
        item = next(iter(item.values()))
    array = np.asarray(item)
    if array.ndim == 2 and np.issubdtype(array.dtype, np.integer):
        image = Image.fromarray(array.astype(np.uint8), mode="P")
        image.putpalette(voc_palette())
    elif array.ndim == 3 and array.shape[2] == 3 and array.dtype == np.uint8:
        image = Image.fromarray(array)
    else:
        heat = array.reshape(-1, *array.shape[-2:]).max(axis=0).astype(np.float32)
        span = float(heat.max() - heat.min()) or 1.0
        image = Image.fromarray(((heat - heat.min()) / span * 255).astype(np.uint8), mode="L")
    return np.asarray(image.convert("RGB").resize((size, size), Image.NEAREST))


class MaskSetDataset(AbstractVersionedDataset[Mapping[str, MaskSource], MaskSet]):
    """Kedro dataset of a whole mask set, saved at once; ``versioned: true`` keeps every run.

    Load returns a :class:`MaskSet` (lazy mapping id -> loader). Save accepts a mapping
    id -> array or id -> zero-argument callable returning the array, so a node can hand over
    callables and masks are produced and written one at a time.

    Example catalog entry::

        pseudo_masks:
          type: semples.datasets.MaskSetDataset
          path: data/07_model_output/pseudo_masks
          versioned: true
    """

    def __init__(
        self,
        *,
        path: str,
        version: Version | None = None,
        progress: bool = True,
        metadata: dict[str, Any] | None = None,
    ):
        super().__init__(filepath=PurePosixPath(Path(path).as_posix()), version=version)
        self._progress = progress
        self.metadata = metadata

    def load(self) -> MaskSet:
        folder = Path(self._get_load_path())
        if not folder.is_dir():
            raise DatasetError(f"mask set folder {folder} does not exist")
        return MaskSet(folder)

    def save(self, data: Mapping[str, MaskSource]) -> None:
        if not isinstance(data, Mapping):
            raise DatasetError(
                f"a mask set is saved from a mapping id -> array or callable, "
                f"got {type(data).__name__}"
            )
        target = Path(self._get_save_path())
        # The version folder (or, unversioned, the set's own folder) appears in one rename.
        final = target.parent if self._version else target
        staging = final.parent / f".{final.name}.partial-{uuid.uuid4().hex[:8]}"
        folder = staging / target.name if self._version else staging
        folder.mkdir(parents=True)
        try:
            for item_id, source in progress_bar(
                data.items(), total=len(data), desc=f"saving {target.name}", unit="item",
                enabled=self._progress, leave=False,
            ):  # fmt: skip
                _check_item_id(item_id)
                write_item(folder, item_id, source() if callable(source) else source)
            self._publish(staging, final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    def _publish(self, staging: Path, final: Path) -> None:
        if not self._version and final.exists():
            retired = final.parent / f".{final.name}.retired-{uuid.uuid4().hex[:8]}"
            os.rename(final, retired)
            os.rename(staging, final)
            shutil.rmtree(retired)
        else:
            os.rename(staging, final)

    def _exists(self) -> bool:
        return Path(self._get_load_path()).is_dir()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._filepath), "version": self._version}

    def preview(self, num_items: int = 6, size: int = 96) -> ImagePreview:
        """A row of thumbnails of the first items of the loaded version, for kedro-viz."""
        mask_set = self.load()
        tiles = [_preview_tile(mask_set.read(i), size) for i in list(mask_set)[:num_items]]
        row = np.concatenate(tiles, axis=1) if tiles else np.zeros((size, size, 3), np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(row).save(buffer, format="PNG")
        return ImagePreview(base64.b64encode(buffer.getvalue()).decode("ascii"))
