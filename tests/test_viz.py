"""Tests of semples.viz: figure structure and the VOC palette."""

import io

import numpy as np
import pandas as pd
import pytest
from matplotlib.container import BarContainer

from semples.reporting import ReportSpec, ablation_table, comparison_table, per_class_frame
from semples.viz import (
    cam_overlay_figure,
    loss_history_figure,
    plot_ablation,
    plot_headline_across_runs,
    plot_per_class_latest_runs,
    voc_palette,
)

SPECS = {
    "cam_metrics": ReportSpec("miou", "per_class_iou"),
    "ingestion_report": ReportSpec("num_images", "class_frequency"),
}
OLD, NEW = "2026-11-25T08.01.02.345Z", "2026-11-26T08.01.02.345Z"
HISTORY = {
    "cam_metrics": {
        OLD: {"miou": 0.4, "per_class_iou": {"background": 0.8, "cat": None}},
        NEW: {"miou": 0.5, "per_class_iou": {"background": 0.9, "cat": 0.1}},
    },
    "ingestion_report": {OLD: {"num_images": 3, "class_frequency": {"cat": 2}}},
}


def assert_renders(figure):
    figure.savefig(io.BytesIO(), format="png")


def assert_no_reports(figure):
    assert figure.axes == [] and [t.get_text() for t in figure.texts] == ["no reports yet"]
    assert_renders(figure)


def test_headline_across_runs():
    figure = plot_headline_across_runs(comparison_table(HISTORY, SPECS))
    assert [ax.get_title() for ax in figure.axes] == [
        "cam_metrics: miou",
        "ingestion_report: num_images",
    ]
    labels = [label.get_text() for label in figure.axes[0].get_xticklabels()]
    assert labels == [OLD, NEW]
    assert_renders(figure)


def test_ablation_bars_with_error_bars():
    specs = {"cam_metrics": ReportSpec("miou", "per_class_iou", {"stage1_miou": "stage1"})}
    history = {
        "cam_metrics": {
            OLD: {"miou": 0.4, "stage1": 0.3, "params": {"seed": 0, "ablation": "all"}},
            NEW: {"miou": 0.5, "stage1": 0.2, "params": {"seed": 1, "ablation": "all"}},
            "2026-11-27T00.00.00.000Z": {"miou": 0.2, "params": {"seed": 0, "ablation": "none"}},
        },
        "ingestion_report": HISTORY["ingestion_report"],
    }
    figure = plot_ablation(ablation_table(comparison_table(history, {**SPECS, **specs})))
    assert [ax.get_title() for ax in figure.axes] == ["cam_metrics", "ingestion_report"]
    cam = figure.axes[0]
    assert [t.get_text() for t in cam.get_xticklabels()] == [
        "ablation=all\n(n=2)",
        "ablation=none\n(n=1)",
    ]
    assert len(cam.patches) == 2 * 2  # 2 configurations x (miou, stage1_miou)
    assert [t.get_text() for t in cam.get_legend().get_texts()] == ["miou", "stage1_miou"]
    miou_bars = next(c for c in cam.containers if isinstance(c, BarContainer))
    (low, high), _ = [segment[:, 1] for segment in miou_bars.errorbar.lines[2][0].get_segments()]
    assert high - low == pytest.approx(2 * np.std([0.4, 0.5], ddof=1))  # mean +- sample sd
    assert len(figure.axes[1].patches) == 1  # ingestion_report: its headline only
    assert_renders(figure)
    assert_no_reports(plot_ablation(ablation_table(comparison_table({}, SPECS))))


def test_per_class_latest_runs():
    frames = {name: per_class_frame(HISTORY, SPECS, name) for name in SPECS}
    figure = plot_per_class_latest_runs(frames)
    assert [ax.get_title() for ax in figure.axes] == ["cam_metrics", "ingestion_report"]
    assert [t.get_text() for t in figure.axes[0].get_yticklabels()] == ["background", "cat"]
    assert len(figure.axes[0].patches) == 2 * 2  # 2 classes x 2 runs
    assert_renders(figure)


def test_empty_inputs_give_the_placeholder():
    assert_no_reports(plot_headline_across_runs(comparison_table({}, SPECS)))
    assert_no_reports(plot_per_class_latest_runs({}))
    no_runs = {"cam_metrics": per_class_frame({}, SPECS, "cam_metrics")}
    assert_no_reports(plot_per_class_latest_runs(no_runs))


def test_voc_palette():
    palette = voc_palette()
    assert len(palette) == 768 and all(0 <= v <= 255 for v in palette)
    colour = {k: tuple(palette[3 * k : 3 * k + 3]) for k in (0, 1, 15, 255)}
    assert colour == {0: (0, 0, 0), 1: (128, 0, 0), 15: (192, 128, 128), 255: (224, 224, 192)}


def overlay_inputs():
    """Two 6 x 8 images: the first with two classes (cat 1, cow 3), the second with one."""
    images = [np.full((6, 8, 3), 50, np.uint8), np.full((6, 8, 3), 200, np.uint8)]
    ramp = np.linspace(0, 1, 48, dtype=np.float32).reshape(1, 6, 8)
    cams = [
        {"keys": np.array([1, 3]), "cam": np.concatenate([ramp, 1 - ramp])},
        {"keys": np.array([2]), "cam": ramp},
    ]
    masks = [np.zeros((6, 8), np.uint8), np.full((6, 8), 2, np.uint8)]
    return images, cams, masks


def titles_by_row(figure, columns):
    """Titles of the visible panels, row by row (``figure.axes`` runs row-major)."""
    rows = [figure.axes[i : i + columns] for i in range(0, len(figure.axes), columns)]
    return [[ax.get_title() for ax in row if ax.get_visible()] for row in rows]


def test_cam_overlay_figure_with_masks():
    images, cams, masks = overlay_inputs()
    figure = cam_overlay_figure(images, cams, ["cat", "dog", "cow"], masks)
    assert len(figure.axes) == 2 * 4  # 1 image + 2 CAMs + 1 mask
    assert titles_by_row(figure, 4) == [
        ["image", "cat", "cow", "ground truth"],
        ["image", "dog", "ground truth"],
    ]
    cat_panel = figure.axes[1]
    assert [im.get_array().shape[:2] for im in cat_panel.images] == [(6, 8), (6, 8)]
    assert cat_panel.images[1].get_alpha() == 0.5
    mask_panel = figure.axes[4 + 2]
    assert tuple(mask_panel.images[0].get_array()[0, 0]) == (0, 128, 0)  # VOC colour of label 2
    assert_renders(figure)


def test_cam_overlay_figure_without_masks():
    images, cams, _ = overlay_inputs()
    figure = cam_overlay_figure(images, cams, ["cat", "dog", "cow"])
    assert len(figure.axes) == 2 * 3
    assert titles_by_row(figure, 3) == [["image", "cat", "cow"], ["image", "dog"]]
    assert_renders(figure)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda images, cams, masks: (images, cams[:1], masks), "one CAM record per image"),
        (lambda images, cams, masks: (images, cams, masks[:1]), "one mask per image"),
        (lambda images, cams, masks: ([], [], None), "at least one"),
        (lambda images, cams, masks: ([i[:3] for i in images], cams, None), "CAM shape"),
        (lambda images, cams, masks: (images, cams, [m[:3] for m in masks]), "mask shape"),
        (lambda images, cams, masks: ([i / 255 for i in images], cams, masks), "must be uint8"),
        (lambda images, cams, masks: ([i[..., :2] for i in images], cams, None), "H x W x 3"),
        (lambda images, cams, masks: (images, cams, [m + 300.0 for m in masks]), "integer"),
    ],
)
def test_cam_overlay_figure_errors(change, message):
    images, cams, masks = change(*overlay_inputs())
    with pytest.raises(ValueError, match=message):
        cam_overlay_figure(images, cams, ["cat", "dog", "cow"], masks)


def test_loss_history_figure():
    nan = float("nan")
    history = pd.DataFrame(
        {
            "stage": ["stage1", "stage1", "stage2", "stage2", "stage2"],
            "step": [0, 10, 0, 10, 20],
            "loss_fg": [1.0, 0.5, nan, nan, nan],
            "loss_bg": [2.0, 1.0, 0.3, 0.2, 0.1],
            "loss_prompt": [nan, nan, 0.9, 0.8, 0.7],
        }
    )
    figure = loss_history_figure(history)
    assert [ax.get_title() for ax in figure.axes] == ["stage1", "stage2"]
    labels = [[line.get_label() for line in ax.lines] for ax in figure.axes]
    assert labels == [["loss_fg", "loss_bg"], ["loss_bg", "loss_prompt"]]
    np.testing.assert_array_equal(figure.axes[1].lines[1].get_xdata(), [0, 10, 20])
    assert all(ax.get_legend() is not None for ax in figure.axes)
    assert_renders(figure)


def test_loss_history_figure_empty_and_malformed():
    figure = loss_history_figure(pd.DataFrame(columns=["stage", "step", "loss"]))
    assert figure.axes == [] and [t.get_text() for t in figure.texts] == ["no history"]
    assert_renders(figure)
    with pytest.raises(ValueError, match="step"):
        loss_history_figure(pd.DataFrame({"stage": ["a"], "loss": [1.0]}))
