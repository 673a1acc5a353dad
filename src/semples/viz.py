"""Plots of the run comparison and a label-mask montage for dataset previews.

Figures are built as ``matplotlib.figure.Figure`` objects (rendered by the Agg backend when
saved) and never through pyplot, so nothing registers global state or needs a display.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

_PALETTE_LENGTH = 256 * 3


def _no_reports_figure() -> Figure:
    """A placeholder that still saves as an image before any run has written a report."""
    figure = Figure(figsize=(4, 2))
    figure.text(0.5, 0.5, "no reports yet", ha="center", va="center")
    return figure


def plot_headline_across_runs(table: pd.DataFrame) -> Figure:
    """One panel per report of its headline value in run order (a ``comparison_table``)."""
    if table.empty:
        return _no_reports_figure()
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
        return _no_reports_figure()
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


def mask_montage(
    images: Sequence[np.ndarray], masks: Sequence[np.ndarray], palette: Sequence[int]
) -> np.ndarray:
    """uint8 RGB grid: one column per sample, its image above its colourised mask.

    Cells are as large as the largest sample; smaller ones sit top-left on black. ``palette`` is
    PIL's flat 768-int list, so the ignore label 255 takes the palette's entry 255.
    """
    if len(images) != len(masks) or not images:
        raise ValueError(f"need one mask per image, at least one: {len(images)}, {len(masks)}")
    if len(palette) != _PALETTE_LENGTH:
        raise ValueError(f"palette must have {_PALETTE_LENGTH} entries, got {len(palette)}")
    colours = np.asarray(palette, dtype=np.uint8).reshape(256, 3)
    height = max(image.shape[0] for image in images)
    width = max(image.shape[1] for image in images)
    grid = np.zeros((2 * height, len(images) * width, 3), dtype=np.uint8)
    for column, (image, mask) in enumerate(zip(images, masks)):
        if image.shape[:2] != mask.shape:
            raise ValueError(f"image shape {image.shape[:2]} != mask shape {mask.shape}")
        h, w = mask.shape
        left = column * width
        grid[:h, left : left + w] = _as_rgb(image)
        grid[height : height + h, left : left + w] = _colourise(mask, colours)
    return grid
