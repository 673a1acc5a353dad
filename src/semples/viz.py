"""Plots of the run comparison, the CAM overlays and the loss curves.

Figures are built as ``matplotlib.figure.Figure`` objects (rendered by the Agg backend when
saved) and never through pyplot, so nothing registers global state or needs a display.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure


def _text_figure(message: str) -> Figure:
    """A placeholder that still saves as an image when there is nothing to plot."""
    figure = Figure(figsize=(4, 2))
    figure.text(0.5, 0.5, message, ha="center", va="center")
    return figure


def plot_headline_across_runs(table: pd.DataFrame) -> Figure:
    """One panel per report of its headline value in run order (a ``comparison_table``)."""
    if table.empty:
        return _text_figure("no reports yet")
    reports = list(dict.fromkeys(table["report"]))
    width = max(6.0, 0.5 * table.groupby("report").size().max())
    figure = Figure(figsize=(width, 3.5 * len(reports)), layout="constrained")
    for ax, report in zip(figure.subplots(len(reports), 1, squeeze=False)[:, 0], reports):
        runs = table[table["report"] == report]
        positions = np.arange(len(runs))
        ax.plot(positions, runs["value"].to_numpy(dtype=float), marker="o")
        ax.set_xticks(positions, labels=runs["run"], rotation=30, ha="right", fontsize="small")
        ax.set_title(f"{report}: {runs['metric'].iloc[0]}")
        ax.grid(alpha=0.3)
    return figure


def plot_per_class_latest_runs(frames: Mapping[str, pd.DataFrame]) -> Figure:
    """One panel per report of grouped horizontal bars: per-class values, one bar per run.

    ``frames`` are ``per_class_frame`` results (rows classes, columns runs); empty ones are
    skipped. Horizontal bars keep long class lists (81 for COCO) readable.
    """
    frames = {report: frame for report, frame in frames.items() if not frame.empty}
    if not frames:
        return _text_figure("no reports yet")
    most_classes = max(len(frame) for frame in frames.values())
    figure = Figure(
        figsize=(5.5 * len(frames), max(3.0, 0.3 * most_classes + 1.5)), layout="constrained"
    )
    axes = figure.subplots(1, len(frames), squeeze=False)[0]
    for ax, (report, frame) in zip(axes, frames.items()):
        rows = np.arange(len(frame))
        height = 0.8 / len(frame.columns)
        for i, run in enumerate(frame.columns):
            offset = (i - (len(frame.columns) - 1) / 2) * height
            ax.barh(rows + offset, frame[run].to_numpy(dtype=float), height=height, label=run)
        ax.set_yticks(rows, labels=frame.index, fontsize="small")
        ax.invert_yaxis()  # first class on top
        ax.set_title(report)
        ax.legend(fontsize="x-small")
    return figure


def plot_ablation(ablation: pd.DataFrame) -> Figure:
    """One panel per report of grouped bars: per configuration (x), each metric's mean with a
    sample-sd error bar (an ``ablation_table``), so a difference can be read against the
    spread over seeds. Metrics a report has no value for are left out of its panel."""
    if ablation.empty:
        return _text_figure("no reports yet")
    reports = list(dict.fromkeys(ablation["report"]))
    metrics = [c.removesuffix("_mean") for c in ablation.columns if c.endswith("_mean")]
    width = max(7.0, 1.5 + 1.2 * ablation.groupby("report").size().max())
    figure = Figure(figsize=(width, 4.0 * len(reports)), layout="constrained")
    for ax, report in zip(figure.subplots(len(reports), 1, squeeze=False)[:, 0], reports):
        groups = ablation[ablation["report"] == report]
        shown = [m for m in metrics if groups[f"{m}_mean"].notna().any()]
        positions = np.arange(len(groups))
        bar = 0.8 / max(1, len(shown))
        for i, metric in enumerate(shown):
            offset = (i - (len(shown) - 1) / 2) * bar
            ax.bar(
                positions + offset,
                groups[f"{metric}_mean"].to_numpy(dtype=float),
                width=bar,
                yerr=groups[f"{metric}_sd"].fillna(0.0).to_numpy(dtype=float),
                capsize=2,
                label=groups["metric"].iloc[0] if metric == "value" else metric,
            )
        labels = [f"{c}\n(n={n})" for c, n in zip(groups["configuration"], groups["n"])]
        ax.set_xticks(positions, labels=labels, rotation=20, ha="right", fontsize="small")
        ax.set_title(report)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return figure


def voc_palette() -> list[int]:
    """The PASCAL VOC colour map, flat (768 ints) as ``PIL.Image.putpalette`` takes it.

    Bit b of the label's three interleaved bit-planes sets bit 7 - b of red, green and blue.
    """
    labels = np.arange(256)
    colours = np.zeros((256, 3), dtype=np.int64)
    for bit in range(8):
        for channel in range(3):
            colours[:, channel] |= ((labels >> (3 * bit + channel)) & 1) << (7 - bit)
    return colours.ravel().tolist()


def _as_rgb(image: np.ndarray) -> np.ndarray:
    if image.dtype != np.uint8:
        raise ValueError(f"images must be uint8, got {image.dtype}")
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    raise ValueError(f"images must be H x W or H x W x 3, got shape {image.shape}")


def _colourise(mask: np.ndarray, colours: np.ndarray) -> np.ndarray:
    if not np.issubdtype(mask.dtype, np.integer) or mask.min() < 0 or mask.max() > 255:
        raise ValueError("masks must hold integer labels in [0, 255]")
    return colours[mask]


def _check_overlay_inputs(
    images: Sequence[np.ndarray], cams: Sequence[Mapping], gt_masks: Sequence[np.ndarray] | None
) -> None:
    if not images or len(cams) != len(images):
        raise ValueError(f"need one CAM record per image, at least one: {len(images)}, {len(cams)}")
    if gt_masks is not None and len(gt_masks) != len(images):
        raise ValueError(f"need one mask per image: {len(images)} images, {len(gt_masks)} masks")
    for row, (image, record) in enumerate(zip(images, cams)):
        if record["cam"].shape[1:] != image.shape[:2]:
            raise ValueError(f"CAM shape {record['cam'].shape[1:]} != image {image.shape[:2]}")
        if gt_masks is not None and gt_masks[row].shape != image.shape[:2]:
            raise ValueError(f"mask shape {gt_masks[row].shape} != image {image.shape[:2]}")


def _overlay_row(
    axes: Sequence,
    image: np.ndarray,
    record: Mapping[str, np.ndarray],
    class_names: Sequence[str],
    coloured_mask: np.ndarray | None,
) -> None:
    """Fill one row: image, one CAM heat map per class, the mask; hide the spare axes."""
    rgb = _as_rgb(image)
    panels = [("image", rgb, None)]
    panels += [
        (class_names[int(key) - 1], rgb, cam) for key, cam in zip(record["keys"], record["cam"])
    ]
    if coloured_mask is not None:
        panels.append(("ground truth", coloured_mask, None))
    for ax, (title, background, cam) in zip(axes, panels):
        ax.imshow(background)
        if cam is not None:
            ax.imshow(cam, cmap="jet", alpha=0.5, vmin=0.0, vmax=1.0)
        ax.set_title(title, fontsize="small")
        ax.set_axis_off()
    for ax in axes[len(panels) :]:
        ax.set_visible(False)


def cam_overlay_figure(
    images: Sequence[np.ndarray],
    cams: Sequence[Mapping[str, np.ndarray]],
    class_names: Sequence[str],
    gt_masks: Sequence[np.ndarray] | None = None,
) -> Figure:
    """One row per image: the image, each present class's CAM over it, then the GT mask.

    ``cams`` are :func:`semples.cams.multiscale_cams` records (``keys`` label values, ``cam``
    C x H x W in [0, 1]), so a reader sees where each class fires against where it is.
    """
    _check_overlay_inputs(images, cams, gt_masks)
    columns = 1 + max(len(record["keys"]) for record in cams) + (gt_masks is not None)
    figure = Figure(figsize=(2.5 * columns, 2.5 * len(images)), layout="constrained")
    axes = figure.subplots(len(images), columns, squeeze=False)
    colours = np.asarray(voc_palette(), dtype=np.uint8).reshape(256, 3)
    for row, (image, record) in enumerate(zip(images, cams)):
        mask = None if gt_masks is None else _colourise(gt_masks[row], colours)
        _overlay_row(axes[row], image, record, class_names, mask)
    return figure


def loss_history_figure(history: pd.DataFrame) -> Figure:
    """One panel per training stage, one line per loss term that stage logs, against step.

    ``history`` has ``stage``, ``step`` and one column per term, NaN where a term does not
    apply to a stage, so stages with different losses share one table.
    """
    missing = {"stage", "step"} - set(history.columns)
    if missing:
        raise ValueError(f"history lacks columns {sorted(missing)}")
    if history.empty:
        return _text_figure("no history")
    stages = list(dict.fromkeys(history["stage"]))
    terms = [column for column in history.columns if column not in ("stage", "step")]
    figure = Figure(figsize=(7, 3 * len(stages)), layout="constrained")
    for ax, stage in zip(figure.subplots(len(stages), 1, squeeze=False)[:, 0], stages):
        rows = history[history["stage"] == stage].sort_values("step")
        for term in terms:
            logged = rows[rows[term].notna()]
            if not logged.empty:
                ax.plot(logged["step"].to_numpy(), logged[term].to_numpy(dtype=float), label=term)
        ax.set_title(str(stage))
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize="small")
    return figure
