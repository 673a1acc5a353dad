"""Tests of semples.refine.crf: the dense CRF and its restriction to the present classes."""

import numpy as np
import pytest

from semples.refine.crf import crf_present_classes, dense_crf

HEIGHT, WIDTH = 64, 80


def disc_scene(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A noisy bright disc on a dark background (H x W x 3 uint8) and its 0/1 label map."""
    rows, cols = np.mgrid[:HEIGHT, :WIDTH]
    truth = ((rows - 30) ** 2 + (cols - 42) ** 2 < 18**2).astype(np.int64)
    noise = np.random.default_rng(seed).normal(0, 8, (HEIGHT, WIDTH, 3))
    image = np.where(truth[..., None] == 1, 200, 40) + noise
    return np.clip(image, 0, 255).astype(np.uint8), truth


def gaussian_blur(plane: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur with zero padding (enough for ratios of blurred planes)."""
    offsets = np.arange(-3 * int(sigma), 3 * int(sigma) + 1)
    kernel = np.exp(-(offsets**2) / (2 * sigma**2))
    kernel /= kernel.sum()
    for axis in (0, 1):
        plane = np.apply_along_axis(np.convolve, axis, plane, kernel, mode="same")
    return plane


def blurred_probs(truth: np.ndarray, sigma: float = 8, classes: int = 2) -> np.ndarray:
    """One-hot of ``truth`` blurred so strongly that its argmax shrinks the disc, mixed with
    uniform: a stand-in for a CAM that is right inside objects and wrong at their edges."""
    blurred = np.stack([gaussian_blur((truth == c).astype(float), sigma) for c in range(classes)])
    blurred /= blurred.sum(axis=0, keepdims=True)
    return 0.8 * blurred + 0.2 / classes


def random_probs(classes: int, seed: int = 1) -> np.ndarray:
    logits = np.random.default_rng(seed).normal(size=(classes, HEIGHT, WIDTH))
    exp = np.exp(logits)
    return exp / exp.sum(axis=0, keepdims=True)


def test_crf_snaps_a_blurred_unary_to_the_image_edges():
    image, truth = disc_scene()
    probs = blurred_probs(truth)
    unary_accuracy = (probs.argmax(axis=0) == truth).mean()
    crf_accuracy = (dense_crf(image, probs).argmax(axis=0) == truth).mean()
    print(f"pixel accuracy: unary {unary_accuracy:.4f}, CRF {crf_accuracy:.4f}")
    assert unary_accuracy < 0.97  # the blur really does misplace the boundary
    assert crf_accuracy > 0.99
    assert crf_accuracy > unary_accuracy + 0.025


def test_output_is_deterministic_float32_marginals():
    image, _ = disc_scene()
    probs = random_probs(4)
    marginals = dense_crf(image, probs, iterations=5)
    assert marginals.shape == probs.shape
    assert marginals.dtype == np.float32
    assert (marginals >= 0).all()
    np.testing.assert_allclose(marginals.sum(axis=0), 1.0, atol=1e-5)
    np.testing.assert_array_equal(marginals, dense_crf(image, probs, iterations=5))


def test_single_class_gives_certainty():
    image, _ = disc_scene()
    marginals = dense_crf(image, np.ones((1, HEIGHT, WIDTH)))
    np.testing.assert_allclose(marginals, 1.0)


def test_non_contiguous_inputs_give_the_same_result_as_contiguous_copies():
    image, truth = disc_scene()
    image, probs = image[:, ::-1], blurred_probs(truth)[:, :, ::-1]
    expected = dense_crf(np.ascontiguousarray(image), np.ascontiguousarray(probs))
    np.testing.assert_array_equal(dense_crf(image, probs), expected)


def test_read_only_images_as_pil_gives_them_are_accepted():
    image, truth = disc_scene()
    frozen = image.copy()
    frozen.setflags(write=False)  # np.asarray(PIL image) is read-only
    np.testing.assert_array_equal(
        dense_crf(frozen, blurred_probs(truth)), dense_crf(image, blurred_probs(truth))
    )


@pytest.mark.parametrize(
    ("image", "probs", "kwargs", "message"),
    [
        (np.zeros((HEIGHT, WIDTH, 3)), None, {}, r"uint8.*float64"),
        (np.zeros((HEIGHT, WIDTH), np.uint8), None, {}, r"H x W x 3.*\(64, 80\)"),
        (np.zeros((HEIGHT, WIDTH, 4), np.uint8), None, {}, r"H x W x 3.*\(64, 80, 4\)"),
        (None, np.full((2, HEIGHT, WIDTH), 0.6), {}, r"sum to 1.*deviation 0.2"),
        (None, np.full((2, HEIGHT, WIDTH - 1), 0.5), {}, r"\(64, 80\).*\(64, 79\)"),
        (None, np.full((HEIGHT, WIDTH), 1.0), {}, r"C x H x W.*\(64, 80\)"),
        (None, np.array([[[np.nan]], [[1.0]]]), {}, r"1 non-finite"),
        (
            None,
            np.stack([np.full((HEIGHT, WIDTH), -0.5), np.full((HEIGHT, WIDTH), 1.5)]),
            {},
            r"negative.*-0.5",
        ),
        (None, None, {"iterations": 0}, r"iterations must be >= 1, got 0"),
        (None, None, {"bilateral_srgb": 0}, r"positive.*bilateral_srgb"),
        (None, None, {"gaussian_sxy": -1}, r"positive.*gaussian_sxy"),
    ],
)
def test_bad_inputs_are_named(image, probs, kwargs, message):
    scene, _ = disc_scene()
    image = scene if image is None else image
    probs = random_probs(2) if probs is None else probs
    with pytest.raises(ValueError, match=message):
        dense_crf(image, probs, **kwargs)


def test_present_classes_matches_crf_on_the_selected_channels():
    image, _ = disc_scene()
    probs = random_probs(6)
    refined = crf_present_classes(image, probs, [4, 2], iterations=3)
    assert refined.shape == probs.shape
    assert refined.dtype == np.float32
    assert not refined[[1, 3, 5]].any()
    np.testing.assert_allclose(refined.sum(axis=0), 1.0, atol=1e-5)
    selected = probs[[0, 2, 4]]
    expected = dense_crf(image, selected / selected.sum(axis=0), iterations=3)
    np.testing.assert_allclose(refined[[0, 2, 4]], expected, atol=1e-6)


def test_present_classes_always_keeps_background():
    image, _ = disc_scene()
    probs = random_probs(4)
    without = crf_present_classes(image, probs, [3])
    np.testing.assert_array_equal(without, crf_present_classes(image, probs, [0, 3]))
    assert without[0].any() and without[3].any()
    only_background = np.broadcast_to(np.eye(4)[0][:, None, None], probs.shape)
    np.testing.assert_allclose(crf_present_classes(image, probs, []), only_background)


def test_present_classes_rejects_out_of_range_channels():
    image, _ = disc_scene()
    with pytest.raises(ValueError, match=r"\[0, 4\] out of range for 4 channels"):
        crf_present_classes(image, random_probs(4), [4])


def test_present_classes_rejects_probs_that_vanish_on_the_present_channels():
    image, _ = disc_scene()
    probs = np.zeros((3, HEIGHT, WIDTH))
    probs[1] = 1.0
    with pytest.raises(ValueError, match=r"zero over the present channels \[0, 2\] at 5120 pixels"):
        crf_present_classes(image, probs, [2])
