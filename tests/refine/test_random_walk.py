"""IRN's random walk: sparse propagation against the dense reference, and hand-checked cases."""

import pytest
import torch

from semples.refine.random_walk import (
    dense_random_walk,
    edge_affinities,
    labels_from_random_walk,
    random_walk,
)


def random_inputs(
    seed: int, channels: int, h: int, w: int, dtype: torch.dtype = torch.float64
) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    cams = torch.rand(channels, h, w, generator=generator, dtype=dtype)
    edge = torch.rand(h, w, generator=generator, dtype=dtype)
    return cams, edge


def max_normalised_gap(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a / a.max() - b / b.max()).abs().max().item()


def test_directions_are_irns_half_plane():
    assert edge_affinities(torch.zeros(6, 6), radius=2).offsets == ((0, 1), (1, -1), (1, 0), (1, 1))
    offsets = edge_affinities(torch.zeros(12, 12), radius=5).offsets
    assert len(offsets) == 34  # 4 to the right, then rows 1..4 of the disc: 9 + 9 + 7 + 5
    assert not set(offsets) & {(-dy, -dx) for dy, dx in offsets}  # each pair appears once
    assert all(dy * dy + dx * dx < 25 and abs(dx) < 5 for dy, dx in offsets)


def test_affinity_is_one_minus_the_largest_edge_on_the_path():
    edge = torch.rand(7, 9, generator=torch.Generator().manual_seed(0))
    affinities = edge_affinities(edge, radius=4)
    for (dy, dx), values in zip(affinities.offsets, affinities.values, strict=True):
        for y in range(7):
            for x in range(9):
                if not (0 <= y + dy < 7 and 0 <= x + dx < 9):
                    assert values[y, x] == 0
                    continue
                # Pixels of the pair's bounding box less than 1 away from the line through them.
                path = [
                    edge[y + py, x + px]
                    for py in range(min(0, dy), max(0, dy) + 1)
                    for px in range(min(0, dx), max(0, dx) + 1)
                    if abs(dy * px - dx * py) / (dy * dy + dx * dx) ** 0.5 < 1
                ]
                assert values[y, x] == 1 - max(path)


def test_a_single_edge_pixel_cuts_the_pairs_whose_path_crosses_it():
    edge = torch.zeros(5, 5)
    edge[2, 2] = 1.0
    affinities = edge_affinities(edge)
    values = dict(zip(affinities.offsets, affinities.values, strict=True))
    assert values[(0, 4)][2, 0] == 0  # (2, 0) -> (2, 4) crosses (2, 2)
    assert values[(0, 4)][0, 0] == 1  # (0, 0) -> (0, 4) does not
    assert values[(2, 2)][1, 1] == 0  # (1, 1) -> (3, 3) through the diagonal
    assert values[(1, -2)][1, 3] == 0  # (1, 3) -> (2, 1): the path holds (2, 2)


@pytest.mark.parametrize(
    ("seed", "channels", "size", "radius", "exp_times"),
    [
        (0, 3, (12, 15), 5, 8),
        (1, 2, (12, 15), 2, 8),
        (2, 2, (9, 7), 5, 3),
        (3, 3, (9, 7), 2, 0),
        (4, 2, (3, 2), 5, 4),  # smaller than the radius: most neighbours fall outside
    ],
)
def test_sparse_walk_equals_the_dense_reference(seed, channels, size, radius, exp_times):
    cams, edge = random_inputs(seed, channels, *size)
    sparse = random_walk(cams, edge, radius=radius, exp_times=exp_times)
    dense = dense_random_walk(cams, edge, radius=radius, exp_times=exp_times)
    assert sparse.shape == cams.shape
    assert max_normalised_gap(sparse, dense) <= 1e-10


def test_sparse_walk_equals_the_dense_reference_with_binary_edges():
    cams, edge = random_inputs(5, 2, 10, 11)
    edge = (edge > 0.7).double()
    gap = max_normalised_gap(random_walk(cams, edge), dense_random_walk(cams, edge))
    assert gap <= 1e-10


def test_float32_walks_agree_to_rounding():
    # The dense reference squares in float32 as IRN does (~1e-4 off the exact walk at VOC size).
    cams, edge = random_inputs(0, 3, 12, 15, dtype=torch.float32)
    assert random_walk(cams, edge).dtype == torch.float32
    assert max_normalised_gap(random_walk(cams, edge), dense_random_walk(cams, edge)) <= 5e-4


def test_float32_input_walks_in_float64():
    # 256 float32 steps drift ~1e-4 from the exact walk on a 94 x 125 map (benchmark); float64
    # steps leave only the float32 input's rounding (~1e-7).
    cams, edge = random_inputs(6, 3, 40, 50, dtype=torch.float32)
    exact = random_walk(cams.double(), edge.double())
    assert max_normalised_gap(random_walk(cams, edge).double(), exact) <= 1e-5


def test_a_boundary_line_stops_the_scores():
    edge = torch.zeros(10, 12, dtype=torch.float64)
    edge[:, 6] = 1.0
    cams = torch.zeros(1, 10, 12, dtype=torch.float64)
    cams[0, 3:7, 1:4] = 1.0
    rw = random_walk(cams, edge)[0]
    assert (rw[:, 6:] == 0).all()
    assert (rw[:, :6] > 0).all()


def test_without_edges_a_delta_spreads_to_uniform():
    edge = torch.zeros(8, 8, dtype=torch.float64)
    cams = torch.zeros(1, 8, 8, dtype=torch.float64)
    cams[0, 0, 0] = 1.0
    one_step = random_walk(cams, edge, exp_times=0)[0]
    assert one_step[0, 0] > 0 and one_step[7, 7] == 0
    rw = random_walk(cams, edge)[0]
    assert (rw.max() - rw.min()) / rw.max() < 1e-6


@pytest.mark.parametrize("exp_times", [0, 3])
def test_the_walk_averages_so_constants_stay_constant(exp_times):
    # (cams * (1 - edge)) is all ones; ones @ T is T's column sums, which must be 1.
    edge = 0.9 * torch.rand(9, 11, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    cams = (1 / (1 - edge))[None]
    rw = random_walk(cams, edge, exp_times=exp_times)
    torch.testing.assert_close(rw, torch.ones_like(rw))


def block_scores() -> torch.Tensor:
    rw = torch.zeros(2, 3, 4)
    rw[0, :, :2] = 1.0  # channel 1 strong on the left
    rw[1, :, 3] = 0.6  # channel 2 weaker on the right, nothing in column 2
    return rw


def test_labels_are_background_below_the_threshold_and_channels_above():
    labels = labels_from_random_walk(block_scores(), (11, 15))
    assert labels.shape == (11, 15) and labels.dtype == torch.long
    assert (labels[:, :6] == 1).all()
    assert (labels[:, 9:11] == 0).all()  # upsampled column 2: at most 0.125 of channel 1
    assert (labels[:, 14] == 2).all()
    assert torch.equal(labels_from_random_walk(10 * block_scores(), (11, 15)), labels)
    assert (labels_from_random_walk(block_scores(), (11, 15), bg_threshold=0.7)[:, 14] == 0).all()


def test_all_zero_scores_are_all_background():
    labels = labels_from_random_walk(torch.zeros(2, 3, 4), (12, 16))
    assert (labels == 0).all()


@pytest.mark.parametrize(
    ("cams", "edge", "options", "message"),
    [
        (torch.zeros(5, 6), torch.zeros(5, 6), {}, r"cams must be C x h x w, got shape \(5, 6\)"),
        (torch.zeros(1, 5, 6), torch.zeros(1, 5, 6), {}, r"edge must be an h x w map"),
        (torch.zeros(1, 5, 6), torch.zeros(6, 5), {}, r"\(1, 5, 6\) and edge \(6, 5\) differ"),
        (torch.zeros(1, 2, 2), torch.tensor([[0.0, 1.5], [0, 0]]), {}, r"in \[0, 1\].*max 1.5"),
        (torch.zeros(1, 1, 2), torch.tensor([[0.0, float("nan")]]), {}, r"finite"),
        (torch.zeros(1, 2, 2, dtype=torch.long), torch.zeros(2, 2), {}, r"floating point"),
        (torch.zeros(1, 2, 2), torch.zeros(2, 2), {"radius": 0}, r"radius must be >= 1, got 0"),
        (torch.zeros(1, 2, 2), torch.zeros(2, 2), {"beta": 0.0}, r"beta must be > 0, got 0.0"),
        (torch.zeros(1, 2, 2), torch.zeros(2, 2), {"exp_times": -1}, r"exp_times must be >= 0"),
    ],
)
@pytest.mark.parametrize("walk", [random_walk, dense_random_walk])
def test_bad_walk_inputs_are_refused(walk, cams, edge, options, message):
    with pytest.raises(ValueError, match=message):
        walk(cams, edge, **options)


@pytest.mark.parametrize(
    ("rw", "image_size", "options", "message"),
    [
        (torch.zeros(3, 4), (12, 16), {}, r"C x h x w with C >= 1, got shape \(3, 4\)"),
        (torch.zeros(0, 3, 4), (12, 16), {}, r"C >= 1"),
        (torch.zeros(1, 3, 4), (13, 16), {}, r"\(13, 16\) must be positive and fit in .* 12 x 16"),
        (torch.zeros(1, 3, 4), (0, 16), {}, r"must be positive"),
        (torch.zeros(1, 3, 4), (12, 16), {"stride": 0}, r"stride must be >= 1, got 0"),
    ],
)
def test_bad_label_inputs_are_refused(rw, image_size, options, message):
    with pytest.raises(ValueError, match=message):
        labels_from_random_walk(rw, image_size, **options)
