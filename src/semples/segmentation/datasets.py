"""An MMSegmentation dataset over explicit (image, label map) pairs.

The segmentation stage trains on one saved version of the ``pseudo_masks`` mask set and
validates on ground truth; both are lists of files the pipeline already knows (the image index
and a mask-set folder), not a dataset layout with split files, so the pairs are passed in.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS

from semples.viz import voc_palette


@DATASETS.register_module()
class LabelMapPairs(BaseSegDataset):
    """``pairs``: (image path, label-map path) per item; ``classes``: background first.

    Label maps hold class indices (0 = background, 255 = ignored), as the project's mask sets
    and VOC's palette PNGs do. A missing file is reported by name when the dataset is built,
    not in the middle of training.
    """

    def __init__(
        self, pairs: Sequence[Sequence[str]] = (), classes: Sequence[str] = (), **kwargs
    ) -> None:
        if not classes:
            raise ValueError("LabelMapPairs needs the class names (background first)")
        self._pairs = [(str(image), str(label)) for image, label in pairs]
        palette = [list(voc_palette()[3 * i : 3 * i + 3]) for i in range(len(classes))]
        metainfo = dict(classes=tuple(classes), palette=palette)
        super().__init__(metainfo=metainfo, **kwargs)

    def load_data_list(self) -> list[dict]:
        if not self._pairs:
            raise ValueError("LabelMapPairs has no (image, label map) pairs")
        missing = [p for pair in self._pairs for p in pair if not Path(p).is_file()]
        if missing:
            raise FileNotFoundError(f"{len(missing)} file(s) missing, e.g. {missing[:3]}")
        return [
            dict(
                img_path=image,
                seg_map_path=label,
                label_map=self.label_map,
                reduce_zero_label=False,
                seg_fields=[],
            )
            for image, label in self._pairs
        ]
