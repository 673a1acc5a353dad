"""CAM-classifier training: multi-label BCE on pooled class maps, seeded, stoppable."""

import pandas as pd
import pytest
import torch

from layouts import make_toy_index
from semples.data.images import LabelledImages
from semples.models import build_mask_generator
from semples.training.cam_classifier import (
    CamClassifierConfig,
    classification_logits,
    train_cam_classifier,
)


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> pd.DataFrame:
    return make_toy_index(tmp_path_factory.mktemp("toy"), num_train=8, num_val=0)


@pytest.fixture(scope="module")
def dataset(index) -> LabelledImages:
    return LabelledImages(index, "train", seed=0)


def _train(dataset, checkpoint=None, init_seed=0, **overrides):
    torch.manual_seed(init_seed)
    generator = build_mask_generator("small_fcn", 6)
    config = CamClassifierConfig(**{"epochs": 4, "batch_size": 4, "lr": 3e-3, **overrides})
    history = train_cam_classifier(generator, dataset, config, progress=False,
                                   checkpoint_path=checkpoint)  # fmt: skip
    return generator, history


def test_classification_logits_are_the_pooled_class_maps():
    maps = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2)
    assert torch.equal(classification_logits(maps), maps.mean(dim=(2, 3)))
    with pytest.raises(ValueError, match=r"expected class maps \[B, K, h, w\]"):
        classification_logits(maps[0])


def test_training_lowers_the_loss_and_is_deterministic(dataset):
    generator, history = _train(dataset)
    assert len(history) == 8 and list(history.columns) == ["epoch", "step", "lr", "bce"]
    assert history["bce"].iloc[-2:].mean() < history["bce"].iloc[:2].mean()
    again, _ = _train(dataset)
    for name, value in generator.state_dict().items():
        assert torch.equal(value, again.state_dict()[name]), name


def test_interrupted_run_resumes_to_the_uninterrupted_result(index, dataset, tmp_path):
    uninterrupted, full = _train(dataset)

    class KilledInEpoch2(LabelledImages):
        def set_epoch(self, epoch: int) -> None:
            if epoch == 2:
                raise KeyboardInterrupt
            super().set_epoch(epoch)

    killed = KilledInEpoch2(index, "train", seed=0)
    checkpoint = tmp_path / "cam.pt"
    with pytest.raises(KeyboardInterrupt):
        _train(killed, checkpoint)
    resumed, history = _train(dataset, checkpoint, init_seed=1)
    pd.testing.assert_frame_equal(history, full)
    for name, value in uninterrupted.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name


def test_max_steps_caps_training(dataset):
    _, history = _train(dataset, max_steps=3)
    assert history["step"].tolist() == [1, 2, 3]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("epochs", 0, "epochs must be >= 1"), ("lr", 0.0, "lr must be > 0"),
     ("weight_decay", -1.0, "weight_decay must be >= 0"),
     ("max_steps", 0, "max_steps must be None or >= 1")],
)  # fmt: skip
def test_bad_config_names_the_field(field, value, message):
    with pytest.raises(ValueError, match=message):
        CamClassifierConfig(**{field: value})


def test_nan_loss_is_reported(dataset, monkeypatch):
    monkeypatch.setattr(
        "semples.training.cam_classifier.classification_logits",
        lambda maps: torch.full(maps.shape[:2], float("nan")),
    )
    with pytest.raises(
        FloatingPointError, match=r"CAM classifier: non-finite loss at step 1 \(bce=nan\)"
    ):
        _train(dataset)
