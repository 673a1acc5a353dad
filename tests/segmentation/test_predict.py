"""Test-time inference: whole images, averaged over scales and flips, optional dense CRF."""

import numpy as np
import pytest
import torch
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS

from layouts import PAIR_CLASSES
from semples.segmentation.config import training_config
from semples.segmentation.predict import (
    build_segmentor,
    class_probabilities,
    predict_labels,
    prediction_jobs,
)  # fmt: skip

TOY = "deeplabv2_r18-d8_1xb10-3k_toy-64x64"


@pytest.fixture(scope="module")
def trained():
    """A randomly initialised toy model as the pipeline stores it: weights and model config."""
    init_default_scope("mmseg")
    cfg = training_config(TOY, classes=PAIR_CLASSES, train_pairs=[("a", "b")])
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    return {"state_dict": model.state_dict(), "model_config": cfg.model.to_dict()}


@pytest.fixture(scope="module")
def model(trained):
    return build_segmentor(trained["model_config"], trained["state_dict"])


def _image(height=30, width=41):
    return np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_probabilities_cover_the_whole_image_and_sum_to_one(model):
    probs = class_probabilities(model, _image(), scales=(0.75, 1.0, 1.5), flip=True)
    assert probs.shape == (3, 30, 41)
    torch.testing.assert_close(probs.sum(0), torch.ones(30, 41))


def test_flip_averaging_is_flip_equivariant(model):
    image = _image()
    probs = class_probabilities(model, image, flip=True)
    mirrored = class_probabilities(model, image[:, ::-1], flip=True)
    torch.testing.assert_close(mirrored, probs.flip(-1), atol=1e-5, rtol=1e-5)


def test_single_scale_is_the_models_own_prediction(model):
    image = _image(32, 32)
    bgr = torch.from_numpy(image[..., ::-1].copy()).permute(2, 0, 1)
    inputs = model.data_preprocessor(dict(inputs=[bgr]), False)["inputs"]
    with torch.no_grad():
        logits = model.encode_decode(inputs, [dict(img_shape=(32, 32))])
    torch.testing.assert_close(class_probabilities(model, image), logits.softmax(1)[0])


def test_labels_with_and_without_crf(model):
    image = _image()
    plain = predict_labels(model, image, flip=True)
    crf = predict_labels(model, image, flip=True, crf={"iterations": 2})
    assert plain.dtype == crf.dtype == np.uint8 and plain.shape == crf.shape == (30, 41)
    assert plain.max() < len(PAIR_CLASSES) and crf.max() < len(PAIR_CLASSES)


def test_jobs_read_each_image_when_called(model, tiny_pairs):
    import pandas as pd

    rows = pd.DataFrame({"id": ["a", "b"], "image_path": [p[0] for p in tiny_pairs[:2]]})
    jobs = prediction_jobs(model, rows, scales=(1.0,), flip=False)
    assert list(jobs) == ["a", "b"] and jobs["b"]().shape == (32, 32)


def test_a_mismatched_checkpoint_is_an_error(trained):
    state = dict(trained["state_dict"])
    state.pop("decode_head.branches.0.bias")
    with pytest.raises(RuntimeError, match="branches.0.bias"):
        build_segmentor(trained["model_config"], state)
    with pytest.raises(ValueError, match="must be positive"):
        class_probabilities(build_segmentor(trained["model_config"], trained["state_dict"]),
                            _image(), scales=())  # fmt: skip
