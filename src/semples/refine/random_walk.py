"""IRN's random walk (Ahn et al., CVPR'19): CAM scores propagated inside predicted boundaries.

Each pixel of the stride-4 feature map is linked to its neighbours at IRN's search directions
within ``radius``; the affinity of a pair is one minus the largest edge score on the pixel path
between them, so little score crosses a boundary. ``A ** beta`` with unit self-affinities,
column-normalised, is the transition matrix T, and the CAMs (damped by ``1 - edge``) become
``x @ T ** (2 ** exp_times)``.

IRN builds T densely and squares it ``exp_times`` times. For a 500 x 375 image at stride 4,
N = 125 * 94 = 11,750 pixels: a dense float32 N x N matrix takes 552 MB and each squaring costs
2 N^3 = 3.2e12 flops. T has at most 69 non-zeros per column at radius 5, so :func:`random_walk`
applies it ``2 ** exp_times`` times as a sparse CSR product instead: O(N * neighbours) memory and
2 * nnz * C flops per step. :func:`dense_random_walk` keeps IRN's formulation as the reference.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

Offset = tuple[int, int]

# Rows of the transition matrix converted to float64 and copied into its CSR arrays at a time.
_BUILD_BLOCK = 1024


@functools.cache
def search_paths(radius: int) -> tuple[tuple[Offset, tuple[Offset, ...]], ...]:
    """IRN's search directions within ``radius``, each with the pixel offsets its path crosses.

    The directions (dy, dx) fill a half-plane (dy > 0, or dy == 0 and dx > 0) with
    |dy|, |dx| < radius and dy^2 + dx^2 < radius^2, so each neighbour pair appears once. The path
    holds the pixels of the direction's bounding box closer than 1 to the line through the source
    (0, 0) and the destination (dy, dx), both included.
    """
    directions = [(0, dx) for dx in range(1, radius)] + [
        (dy, dx)
        for dy in range(1, radius)
        for dx in range(1 - radius, radius)
        if dy * dy + dx * dx < radius * radius
    ]
    paths = []
    for dy, dx in directions:
        length_sq = dy * dy + dx * dx
        path = tuple(
            (y, x)
            for y in range(min(0, dy), max(0, dy) + 1)
            for x in range(min(0, dx), max(0, dx) + 1)
            if (dy * x - dx * y) ** 2 < length_sq
        )
        paths.append(((dy, dx), path))
    return tuple(paths)


def _check_edge(edge: Tensor, radius: int) -> None:
    if edge.dim() != 2:
        raise ValueError(f"edge must be an h x w map, got shape {tuple(edge.shape)}")
    if not edge.is_floating_point():
        raise ValueError(f"edge must be a floating-point map, got dtype {edge.dtype}")
    if not bool(torch.isfinite(edge).all()) or bool((edge < 0).any() | (edge > 1).any()):
        raise ValueError(
            f"edge values must be finite and in [0, 1], got min {edge.min().item()} "
            f"and max {edge.max().item()}"
        )
    if radius < 1:
        raise ValueError(f"radius must be >= 1, got {radius}")


def _check_walk(cams: Tensor, edge: Tensor, radius: int, beta: float, exp_times: int) -> None:
    if cams.dim() != 3:
        raise ValueError(f"cams must be C x h x w, got shape {tuple(cams.shape)}")
    if not cams.is_floating_point():
        raise ValueError(f"cams must be floating point, got dtype {cams.dtype}")
    _check_edge(edge, radius)
    if cams.shape[1:] != edge.shape:
        raise ValueError(
            f"cams {tuple(cams.shape)} and edge {tuple(edge.shape)} differ in their h x w size"
        )
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    if exp_times < 0:
        raise ValueError(f"exp_times must be >= 0, got {exp_times}")


def _valid_box(dy: int, dx: int, h: int, w: int) -> tuple[slice, slice]:
    """The source pixels (y, x) whose neighbour (y + dy, x + dx) lies inside an h x w map."""
    top, left = max(0, -dy), max(0, -dx)
    return slice(top, max(top, h - max(0, dy))), slice(left, max(left, w - max(0, dx)))


@dataclass(frozen=True)
class EdgeAffinities:
    """Affinities of every pixel to its neighbours at the half-plane ``offsets``.

    ``values[k, y, x]`` is the affinity of pixels (y, x) and (y + dy, x + dx) for
    ``(dy, dx) = offsets[k]``, and 0 where that neighbour falls outside the map. The full affinity
    matrix is symmetric with a unit diagonal, so these D x h x w values describe it completely.
    """

    offsets: tuple[Offset, ...]
    values: Tensor


def edge_affinities(edge: Tensor, radius: int = 5) -> EdgeAffinities:
    """IRN's path affinities ``1 - max(edge on the path)`` of all pairs closer than ``radius``.

    Matches IRN's ``edge_to_affinity`` on its padded map restricted to in-image pairs (the
    1-valued padding only ever touches pairs IRN crops away).
    """
    _check_edge(edge, radius)
    h, w = edge.shape
    paths = search_paths(radius)
    values = edge.new_zeros(len(paths), h, w)
    for k, ((dy, dx), path) in enumerate(paths):
        rows, cols = _valid_box(dy, dx, h, w)
        peak = torch.stack(
            [edge[rows.start + y : rows.stop + y, cols.start + x : cols.stop + x] for y, x in path]
        ).amax(0)
        values[k, rows, cols] = 1 - peak
    return EdgeAffinities(tuple(offset for offset, _ in paths), values)


def _walk_matrix(affinities: EdgeAffinities, beta: float) -> Tensor:
    """IRN's transition matrix T, transposed: an N x N float64 sparse CSR matrix (row-major
    pixels).

    A is symmetric, so T^T = D^-1 A^beta: row p holds ``A(p, q) ** beta`` over p's degree, and
    ``x @ T`` is ``(T^T @ x^T)^T``, a CSR times dense product. Built as one N x K table of
    weights (K offsets, in column order, in the edge map's dtype) and 32-bit indices, copied into
    the CSR arrays a block of rows at a time, so that its peak memory is little more than the
    matrix's own. The values are float64: float32 rows sum to 1 only within ~4e-7 and float32
    steps round, and over 256 steps each drifts ~1e-4 from the exact walk.
    """
    half = affinities.values
    _, h, w = half.shape
    offsets = [(0, 0), *affinities.offsets, *((-dy, -dx) for dy, dx in affinities.offsets)]
    order = sorted(range(len(offsets)), key=offsets.__getitem__)  # column order within a row
    weights = half.new_zeros(h, w, len(offsets))
    for j, k in enumerate(order):
        if k == 0:
            weights[:, :, j] = 1
            continue
        source = (k - 1) % len(affinities.offsets)
        dy, dx = affinities.offsets[source]
        rows, cols = _valid_box(dy, dx, h, w)
        if k <= len(affinities.offsets):  # p sees p + d
            weights[rows, cols, j] = half[source, rows, cols]
        else:  # pixel p + d sees p at -d with the same affinity
            shifted = slice(rows.start + dy, rows.stop + dy), slice(cols.start + dx, cols.stop + dx)
            weights[(*shifted, j)] = half[source, rows, cols]
    weights = weights.reshape(h * w, len(offsets)).pow_(beta)
    keep = weights > 0  # pairs outside the map are dropped
    crow = F.pad(keep.sum(1, dtype=torch.int32).cumsum(0, dtype=torch.int32), (1, 0))
    values = weights.new_empty(int(crow[-1]), dtype=torch.float64)
    columns = torch.empty_like(values, dtype=torch.int32)
    shifts = torch.tensor(
        [offsets[k][0] * w + offsets[k][1] for k in order], dtype=torch.int32, device=weights.device
    )
    for start in range(0, h * w, _BUILD_BLOCK):  # in blocks of rows: no nnz-long temporaries
        stop = min(start + _BUILD_BLOCK, h * w)
        block = weights[start:stop].double()
        block /= block.sum(1, keepdim=True)
        kept = keep[start:stop]
        first, last = int(crow[start]), int(crow[stop])
        values[first:last] = block[kept]
        pixels = torch.arange(start, stop, dtype=torch.int32, device=weights.device)
        columns[first:last] = (pixels[:, None] + shifts)[kept]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(
            crow, columns, values, (h * w, h * w), check_invariants=False
        )


@torch.no_grad()
def random_walk(
    cams: Tensor, edge: Tensor, *, radius: int = 5, beta: float = 10.0, exp_times: int = 8
) -> Tensor:
    """IRN's ``propagate_to_edge``: C x h x w scores ``(cams * (1 - edge)) @ T ** 2**exp_times``.

    ``edge`` is the h x w boundary map in [0, 1] at the CAMs' resolution. T is applied one sparse
    step at a time; every step replaces a pixel's scores by an affinity-weighted average of its
    neighbours', so scores spread within regions and stop at boundaries. The steps run in
    float64 and return the CAMs' dtype: float32 steps drift ~1e-4 from the exact walk over 256
    steps (max-normalised), float64 ones stay within ~1e-7 for float32 input.
    """
    _check_walk(cams, edge, radius, beta, exp_times)
    edge = edge.to(cams)
    channels, h, w = cams.shape
    walk = _walk_matrix(edge_affinities(edge, radius), beta)
    scores = cams.new_empty(h * w, channels, dtype=torch.float64)
    scores.copy_((cams * (1 - edge)).reshape(channels, h * w).T)
    spare = torch.empty_like(scores)  # the steps alternate between two buffers: no allocation
    for _ in range(2**exp_times):
        scores, spare = torch.mm(walk, scores, out=spare), scores
    return scores.T.reshape(channels, h, w).to(cams.dtype)


@torch.no_grad()
def dense_random_walk(
    cams: Tensor, edge: Tensor, *, radius: int = 5, beta: float = 10.0, exp_times: int = 8
) -> Tensor:
    """:func:`random_walk` as IRN computes it: the dense N x N T squared ``exp_times`` times.

    The reference for tests and the benchmark only: two N x N matrices and 2 N^3 flops per
    squaring.
    """
    _check_walk(cams, edge, radius, beta, exp_times)
    edge = edge.to(cams)
    channels, h, w = cams.shape
    affinities = edge_affinities(edge, radius)
    pixels = torch.arange(h * w, device=cams.device).reshape(h, w)
    matrix = torch.eye(h * w, dtype=cams.dtype, device=cams.device)
    for (dy, dx), values in zip(affinities.offsets, affinities.values, strict=True):
        rows, cols = _valid_box(dy, dx, h, w)
        source = pixels[rows, cols]
        target = pixels[rows.start + dy : rows.stop + dy, cols.start + dx : cols.stop + dx]
        matrix[source, target] = values[rows, cols]
        matrix[target, source] = values[rows, cols]
    matrix.pow_(beta)
    matrix /= matrix.sum(0, keepdim=True)
    for _ in range(exp_times):
        matrix = matrix @ matrix
    return ((cams * (1 - edge)).reshape(channels, h * w) @ matrix).reshape(channels, h, w)


def walk_scores(rw: Tensor, image_size: tuple[int, int], stride: int = 4) -> Tensor:
    """Random-walk scores at pixel resolution, as IRN's ``make_sem_seg_labels`` prepares them.

    ``rw`` (C x h x w, one channel per kept class) is upsampled ``stride`` times (bilinear,
    ``align_corners=False``), cropped to ``image_size`` = (H, W) and divided by its overall max
    (one max for all channels, as IRN does), so a constant background score can be compared.
    """
    if rw.dim() != 3 or rw.shape[0] == 0:
        raise ValueError(f"rw must be C x h x w with C >= 1, got shape {tuple(rw.shape)}")
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    height, width = image_size
    if not (0 < height <= stride * rw.shape[1] and 0 < width <= stride * rw.shape[2]):
        raise ValueError(
            f"image size {tuple(image_size)} must be positive and fit in the upsampled "
            f"{stride * rw.shape[1]} x {stride * rw.shape[2]} scores"
        )
    scores = F.interpolate(rw[None], scale_factor=stride, mode="bilinear", align_corners=False)
    scores = scores[0, :, :height, :width]
    return scores / scores.max().clamp_min(torch.finfo(scores.dtype).tiny)  # all-zero stays 0


def labels_from_random_walk(
    rw: Tensor, image_size: tuple[int, int], bg_threshold: float = 0.25, stride: int = 4
) -> Tensor:
    """Pixel labels from random-walk scores (:func:`walk_scores`) against a constant background
    score ``bg_threshold``: the H x W argmax as a long tensor, 0 for background and i for the
    i-th channel of ``rw`` (1-based), which the caller maps to class ids.
    """
    scores = walk_scores(rw, image_size, stride)
    return F.pad(scores, (0, 0, 0, 0, 1, 0), value=bg_threshold).argmax(0)
