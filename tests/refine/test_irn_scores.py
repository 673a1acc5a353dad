import numpy as np
import pytest

from semples.refine.irn_scores import (
    BoundaryScores,
    boundary_cells,
    gt_edge_walks,
    ir_label_scores,
    irn_diagnostics,
)

NAMES = ["background", "cat", "dog"]


def _loaders(arrays: dict) -> dict:
    return {key: (lambda value=value: value) for key, value in arrays.items()}


def _square_gt(size: int = 16, value: int = 1) -> np.ndarray:
    gt = np.zeros((size, size), dtype=np.uint8)
    gt[4:12, 4:12] = value
    return gt


def test_ir_label_scores_count_every_pixel_once():
    gt = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 255, 255], [2, 2, 0, 0]], np.uint8)
    label = np.array([[0, 255, 1, 1], [1, 255, 255, 1], [2, 255, 1, 0], [0, 2, 0, 0]], np.uint8)
    scores = ir_label_scores(_loaders({"a": label}), _loaders({"a": gt}), NAMES)
    # 14 scored pixels: 4 given background (3 right), 4 cat (3 right), 2 dog (2 right), 4 ignored
    assert scores["shares"] == pytest.approx(
        {"background": 4 / 14, "foreground": 6 / 14, "ignored": 4 / 14}
    )
    assert scores["precision"] == pytest.approx(8 / 10)
    assert scores["per_class"]["background"] == pytest.approx(
        {"precision": 3 / 4, "recall": 3 / 6, "ignored": 2 / 6}
    )
    assert scores["per_class"]["cat"] == pytest.approx(
        {"precision": 3 / 4, "recall": 3 / 4, "ignored": 1 / 4}
    )
    assert scores["per_class"]["dog"] == pytest.approx(
        {"precision": 2 / 2, "recall": 2 / 4, "ignored": 1 / 4}
    )
    assert scores["num_images"] == 1


def test_ir_label_scores_name_the_image_and_the_problem():
    gt = _loaders({"a": np.zeros((4, 4), np.uint8)})
    with pytest.raises(ValueError, match=r"'a'.*shape \(4, 5\)"):
        ir_label_scores(_loaders({"a": np.zeros((4, 5), np.uint8)}), gt, NAMES)
    with pytest.raises(ValueError, match=r"IR label of 'a' has values \[7\] outside 0..2"):
        ir_label_scores(_loaders({"a": np.full((4, 4), 7, np.uint8)}), gt, NAMES)
    with pytest.raises(KeyError, match="'b'"):
        ir_label_scores(_loaders({"b": np.zeros((4, 4), np.uint8)}), gt, NAMES)
    with pytest.raises(ValueError, match="no IR labels"):
        ir_label_scores({}, gt, NAMES)


def test_boundary_cells_mark_the_stride_cells_on_an_object_outline_and_skip_ignored_pixels():
    cells = boundary_cells(_square_gt(), stride=4)
    assert cells.shape == (4, 4)
    # the outline's pixels are rows / columns 3, 4, 11 and 12 along the square: every cell but
    # the grid's corners, the square's inside too (its cells touch the outline)
    expected = np.ones((4, 4), bool)
    expected[[0, 0, 3, 3], [0, 3, 0, 3]] = False
    assert (cells == expected).all()
    ignored = _square_gt()
    ignored[3, :] = 255
    ignored[:, 3] = 255
    ignored[12, :] = 255
    ignored[:, 12] = 255  # the square ringed by ignored pixels: no boundary is scored
    assert not boundary_cells(ignored).any()
    odd = boundary_cells(np.pad(_square_gt(), ((0, 3), (0, 1))), stride=4)
    assert odd.shape == (5, 5)  # ceil(19 / 4) x ceil(17 / 4), as IRNet's edge map


def test_boundary_scores_of_a_perfect_an_empty_and_a_misplaced_edge_map():
    gt = _square_gt(32)
    truth = boundary_cells(gt).astype(np.float32)
    perfect = BoundaryScores(thresholds=(0.5,))
    perfect.add(truth, gt)
    result = perfect.to_dict()
    assert result["best_f"] == 1.0 and result["sweep"][0]["precision"] == 1.0
    assert result["mean_on_boundary"] == 1.0 and result["mean_elsewhere"] == 0.0
    empty = BoundaryScores(thresholds=(0.5,))
    empty.add(np.zeros_like(truth), gt)
    assert empty.to_dict()["sweep"][0] == {
        "threshold": 0.5, "precision": None, "recall": 0.0, "f": None,
    }  # fmt: skip
    misplaced = np.zeros_like(truth)
    misplaced[7, 7] = 1.0  # 4 cells from the outline, beyond the 1-cell tolerance
    far = BoundaryScores(thresholds=(0.5,))
    far.add(misplaced, gt)
    assert far.to_dict()["sweep"][0] == {
        "threshold": 0.5,
        "precision": 0.0,
        "recall": 0.0,
        "f": 0.0,
    }
    with pytest.raises(ValueError, match=r"edge map \(3, 3\) does not match"):
        far.add(np.zeros((3, 3)), gt)


@pytest.mark.parametrize("stride", [4, 2])
def test_irn_diagnostics_score_a_perfect_walk_and_edge_map_at_one(stride):
    gts = {"a": _square_gt(32, 1), "b": _square_gt(32, 2)}
    walks = {
        key: {
            "keys": np.array([gt.max()]),
            "cam": (gt == gt.max()).astype(np.float32)[None],
            "edge": boundary_cells(gt, stride).astype(np.float32),
        }
        for key, gt in gts.items()
    }
    scores = irn_diagnostics(
        _loaders(gts), _loaders(walks), _loaders(gts), ["cat", "dog"],
        thresholds=[0.25, 0.5], walk_threshold=0.25, edge_stride=stride,
    )  # fmt: skip
    assert scores["ir_labels"]["precision"] == 1.0 and scores["ir_labels"]["shares"]["ignored"] == 0
    assert scores["edges"]["best_f"] == 1.0
    walk = scores["walk"]
    assert walk["miou"] == 1.0 and walk["miou_at_threshold"] == 1.0 and walk["threshold"] == 0.25
    assert [row["threshold"] for row in walk["sweep"]] == [0.25, 0.5]
    assert walk["context_leak"] is None
    assert "walk_on_gt_edges" not in scores


def test_walk_on_gt_edges_spreads_cams_inside_outlines_only_where_the_grid_allows():
    """A 16 px square's CAM covers its left half only; walked on the square's outline it fills
    the square's inside at stride 2, while at stride 4 (4 x 4 cells, 12 of them outline cells)
    it has almost nowhere to spread: the bound tells a coarse grid from a weak edge map."""
    gt = np.zeros((48, 48), np.uint8)
    gt[16:32, 16:32] = 1
    cam = np.zeros((1, 48, 48), np.float32)
    cam[0, 16:32, 16:24] = 1.0
    record = {"keys": np.array([1]), "cam": cam, "cam_stride4": cam[:, ::4, ::4].copy()}
    walk = {"radius": 5, "beta": 10, "exp_times": 8}
    bounds = {}
    for stride in (4, 2):
        walks = gt_edge_walks({"a": lambda: record}, {"a": lambda: gt}, walk, stride)
        scores = irn_diagnostics(
            {"a": lambda: gt}, {"a": lambda stride=stride: {**record, "edge": boundary_cells(
                gt, stride).astype(np.float32)}}, {"a": lambda: gt}, ["cat"],
            thresholds=[0.1, 0.25, 0.5], walk_threshold=0.25, edge_stride=stride,
            perfect_edge_walks=walks,
        )  # fmt: skip
        bounds[stride] = scores["walk_on_gt_edges"]["per_class_iou"]["cat"]
    assert bounds[2] > 0.7 and bounds[4] < 0.5


def test_irn_diagnostics_name_an_edge_map_of_the_wrong_size():
    gt = _square_gt(32)
    walk = {
        "keys": np.array([1]),
        "cam": np.ones((1, 32, 32), np.float32),
        "edge": np.zeros((4, 4)),
    }
    with pytest.raises(ValueError, match=r"'a': edge map \(4, 4\)"):
        irn_diagnostics(
            _loaders({"a": gt}), _loaders({"a": walk}), _loaders({"a": gt}), ["cat", "dog"],
            thresholds=[0.25], walk_threshold=0.25,
        )  # fmt: skip
