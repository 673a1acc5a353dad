"""RandomRescale: deeplab-pytorch's rescale by a factor of the image's own size."""

import numpy as np
import pytest

from semples.segmentation.transforms import RandomRescale


def _results(height=20, width=30):
    labels = np.zeros((height, width), np.uint8)
    labels[:, width // 2 :] = 3
    image = np.zeros((height, width, 3), np.uint8)
    return dict(img=image, img_shape=(height, width), gt_seg_map=labels, seg_fields=["gt_seg_map"])


@pytest.mark.parametrize("ratio", [0.5, 1.5])
def test_image_and_labels_scale_by_the_drawn_factor(ratio):
    out = RandomRescale(ratios=(ratio,))(_results())
    expected = (round(20 * ratio), round(30 * ratio))
    assert out["img"].shape[:2] == expected and out["gt_seg_map"].shape == expected
    assert set(np.unique(out["gt_seg_map"])) == {0, 3}  # nearest: no blended label values


def test_factors_are_drawn_from_the_list_with_numpys_seeded_generator():
    np.random.seed(0)
    heights = {RandomRescale()(_results())["img"].shape[0] for _ in range(60)}
    assert heights == {10, 15, 20, 25, 30}


def test_needs_positive_ratios():
    with pytest.raises(ValueError, match="positive ratios"):
        RandomRescale(ratios=(0.0, 1.0))
