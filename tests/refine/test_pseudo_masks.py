"""IR labels and pseudo masks from CAM records: thresholds, modes, bad input."""

import numpy as np
import pytest

from semples.refine.pseudo_masks import (
    REFINE_MODES,
    ir_label,
    label_confidence,
    propagated_scores,
    pseudo_mask,
    with_background,
)


def _bands(values: list[float], width: int = 20, height: int = 40) -> tuple[np.ndarray, dict]:
    """An image of grey bands and one class (label value 3) whose CAM takes ``values`` per band."""
    cam = np.concatenate([np.full((height, width), v, np.float32) for v in values], axis=1)
    shades = np.concatenate(
        [np.full((height, width), 40 + 80 * i, np.uint8) for i in range(len(values))], axis=1
    )
    image = np.repeat(shades[..., None], 3, axis=2)
    record = {"keys": np.array([3]), "cam": cam[None], "cam_stride4": cam[None, ::4, ::4].copy()}
    return image, record


def test_with_background_normalises_and_keeps_the_threshold_argmax():
    scores = np.array([[[0.2, 0.6]], [[0.1, 0.3]]], dtype=np.float32)
    probs = with_background(scores, 0.25)
    assert probs.shape == (3, 1, 2) and np.allclose(probs.sum(0), 1.0)
    assert probs.argmax(0).tolist() == [[0, 1]]
    with pytest.raises(ValueError, match=r"background threshold must be in \(0, 1\]"):
        with_background(scores, 0.0)


def test_label_confidence_puts_the_confidence_on_the_label():
    probs = label_confidence(np.array([[0, 2]]), 3, 0.7)
    assert np.allclose(probs[:, 0, 0], [0.7, 0.15, 0.15])
    assert np.allclose(probs[:, 0, 1], [0.15, 0.15, 0.7])


def test_ir_label_thresholds_make_class_ignore_and_background_bands():
    image, record = _bands([0.6, 0.15, 0.01])
    label = ir_label(image, record, fg_threshold=0.30, bg_threshold=0.05)
    assert label.dtype == np.uint8 and label.shape == (40, 60)
    assert (label[:, 2:18] == 3).all()  # above fg_threshold: the class
    assert (label[:, 22:38] == 255).all()  # between the thresholds: ignored
    assert (label[:, 42:58] == 0).all()  # below bg_threshold: background


def test_ir_label_rejects_crossed_thresholds():
    image, record = _bands([0.5])
    with pytest.raises(ValueError, match="need 0 < bg_threshold < fg_threshold <= 1"):
        ir_label(image, record, fg_threshold=0.05, bg_threshold=0.30)


def test_mode_none_is_the_thresholded_cam_and_crf_keeps_clean_bands():
    image, record = _bands([0.6, 0.1])
    expected = np.where(record["cam"][0] > 0.3, 3, 0)
    assert np.array_equal(pseudo_mask(image, record, "none", cam_threshold=0.3), expected)
    assert np.array_equal(pseudo_mask(image, record, "crf", cam_threshold=0.3), expected)


def test_irn_modes_walk_the_stride4_cams_on_the_edge_map():
    image, record = _bands([0.9, 0.01])
    edge = np.zeros(record["cam_stride4"].shape[1:], np.float32)
    edge[:, 5] = 1.0  # a boundary between the two bands stops the walk
    for mode in ("irn", "irn+crf"):
        mask = pseudo_mask(image, record, mode, cam_threshold=0.3, edge=edge)
        assert mask.shape == (40, 40)
        assert (mask[:, :16] == 3).all() and (mask[:, 24:] == 0).all(), mode


def test_irn_at_a_finer_edge_stride_walks_the_cams_cell_means():
    image, record = _bands([0.9, 0.01])
    edge = np.zeros((20, 20), np.float32)  # stride 2 of the 40 px image
    edge[:, 10] = 1.0
    mask = pseudo_mask(image, record, "irn", cam_threshold=0.3, edge=edge, edge_stride=2)
    assert mask.shape == (40, 40)
    assert (mask[:, :18] == 3).all() and (mask[:, 22:] == 0).all()
    # the seeds come from the full-resolution CAMs (their 2 x 2 means), not the stride-4 ones
    record["cam_stride4"] = np.zeros_like(record["cam_stride4"])
    scores = propagated_scores(record, edge, (40, 40), edge_stride=2)
    assert scores.shape == (1, 40, 40)
    assert np.allclose(scores[0, :, :16], 1.0, atol=1e-5)
    assert np.allclose(scores[0, :, 24:], 0.01 / 0.9, atol=1e-5)


def test_bad_modes_and_missing_edges_are_named():
    image, record = _bands([0.5])
    assert REFINE_MODES == ("none", "crf", "irn", "irn+crf")
    with pytest.raises(ValueError, match="refine mode must be one of"):
        pseudo_mask(image, record, "affinity", cam_threshold=0.3)
    with pytest.raises(ValueError, match="'irn' needs the IRNet edge map"):
        pseudo_mask(image, record, "irn", cam_threshold=0.3)
