"""Per-image jobs over a CAM set: lazy, named errors, IRNet config from parameters."""

from functools import partial

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from semples.parameters import Irnet
from semples.refine.irnet import IRNet
from semples.refine.jobs import (
    fit_irnet,
    ir_label_jobs,
    irnet_config,
    pseudo_mask_jobs,
    trained_irnet,
    walk_jobs,
)
from toy_runs import toy_run


@pytest.fixture()
def scene(tmp_path):
    """Two 32 x 32 images with a bright square, their CAM records and index rows."""
    rows, cams = [], {}
    for i in range(2):
        image = np.full((32, 32, 3), 30, np.uint8)
        image[8:24, 8:24] = 220
        path = tmp_path / f"img{i}.png"
        Image.fromarray(image).save(path)
        cam = np.zeros((1, 32, 32), np.float32)
        cam[0, 6:26, 6:26] = 0.9
        record = {"keys": np.array([2]), "cam": cam, "cam_stride4": cam[:, ::4, ::4].copy()}
        cams[f"img{i}"] = lambda record=record: record
        rows.append({"id": f"img{i}", "image_path": str(path)})
    return pd.DataFrame(rows), cams


def test_jobs_are_lazy_and_label_the_square(scene):
    rows, cams = scene
    labels = ir_label_jobs(cams, rows, {"fg_threshold": 0.3, "bg_threshold": 0.05}, {})
    masks = pseudo_mask_jobs(cams, rows, "crf", {"cam_threshold": 0.3})
    assert set(labels) == set(masks) == {"img0", "img1"}
    label, mask = labels["img0"](), masks["img1"]()
    assert label[16, 16] == 2 and label[1, 1] == 0
    assert mask[16, 16] == 2 and mask[1, 1] == 0 and mask.dtype == np.uint8


def test_missing_cams_and_missing_irnet_are_named(scene):
    rows, cams = scene
    with pytest.raises(KeyError, match=r"no CAMs for 1 image\(s\), e.g. \['img1'\]"):
        pseudo_mask_jobs({"img0": cams["img0"]}, rows, "none", {"cam_threshold": 0.3})
    with pytest.raises(ValueError, match="'irn' needs a trained IRNet"):
        pseudo_mask_jobs(cams, rows, "irn", {"cam_threshold": 0.3})


def test_irnet_config_takes_the_run_seed_and_step_cap():
    settings = Irnet(backbone="small", epochs=2, batch_size=4)
    config = irnet_config(settings, seed=3, max_steps=5)
    assert (config.seed, config.max_steps, config.epochs, config.batch_size) == (3, 5, 2, 4)
    assert irnet_config(settings, seed=0, max_steps=None).max_steps is None


@pytest.mark.parametrize("image_scale", [1, 2])
def test_fit_irnet_trains_resumably_and_the_state_loads(scene, tmp_path, image_scale):
    rows, cams = scene
    labels = ir_label_jobs(cams, rows, {"fg_threshold": 0.3, "bg_threshold": 0.05}, {})
    settings = Irnet(backbone="small", batch_size=2, crop_size=None, image_scale=image_scale)
    train = toy_run(max_steps=2, checkpoint_dir=str(tmp_path / "resume")).train
    state, history = fit_irnet(labels, rows, settings, train, 0, torch.device("cpu"))
    assert len(history) == 2 and np.isfinite(history["total"]).all()
    assert not any((tmp_path / "resume").glob("*.pt"))  # the epoch checkpoint is removed
    model = trained_irnet(settings, state, torch.device("cpu"))
    assert isinstance(model, IRNet) and not model.training
    assert model.stride == 4 // image_scale
    masks = pseudo_mask_jobs(cams, rows, "irn", {"cam_threshold": 0.3}, model)
    assert masks["img0"]().shape == (32, 32)
    edge = walk_jobs(cams, rows, {}, model)["img0"]()["edge"]
    assert edge.shape == (32 // model.stride,) * 2
    with pytest.raises(ValueError, match="no IR labels for the images"):
        fit_irnet({}, rows, settings, train, 0, torch.device("cpu"))


def test_fit_irnet_in_two_ddp_processes(scene, tmp_path):
    rows, cams = scene
    jobs = ir_label_jobs(cams, rows, {"fg_threshold": 0.3, "bg_threshold": 0.05}, {})
    labels = {key: partial(np.copy, job()) for key, job in jobs.items()}  # picklable loaders
    settings = Irnet(backbone="small", batch_size=1, epochs=2, crop_size=None)
    train = toy_run(max_steps=None, checkpoint_dir=str(tmp_path), processes=2).train
    state, history = fit_irnet(labels, rows, settings, train, 0, torch.device("cpu"))
    # 2 images dealt to 2 processes, batch 1: one synchronised step per epoch.
    assert history["step"].tolist() == [1, 2] and np.isfinite(history["total"]).all()
    assert trained_irnet(settings, state, torch.device("cpu"))
    assert not list(tmp_path.glob("*.pt"))


def test_walk_jobs_give_the_scores_and_edge_map_that_irn_thresholds(scene):
    rows, cams = scene
    torch.manual_seed(0)
    model = IRNet("small").eval()
    walk = {"bg_threshold": 0.25, "beta": 10, "exp_times": 8, "radius": 5}
    records = walk_jobs(cams, rows, walk, model)
    masks = pseudo_mask_jobs(cams, rows, "irn", {"cam_threshold": 0.3, "walk": walk}, model)
    record = records["img0"]()
    assert set(record) == {"keys", "cam", "edge"} and record["edge"].shape == (8, 8)
    assert record["cam"].shape == (1, 32, 32) and record["keys"].tolist() == [2]
    labels = np.where(record["cam"][0] > walk["bg_threshold"], 2, 0)
    assert (labels == masks["img0"]()).all()
