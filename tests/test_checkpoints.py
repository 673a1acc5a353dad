"""Atomic checkpoint writes and the fingerprint that names a run's scratch checkpoint."""

import pytest
import torch

from semples.checkpoints import fingerprint, load_state, save_atomic, scratch_checkpoint


def test_the_fingerprint_follows_the_content_not_the_key_order():
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})
    assert len(fingerprint({"path": object()})) == 12  # non-JSON values hash by their str


def test_save_atomic_leaves_only_the_checkpoint(tmp_path):
    save_atomic({"w": torch.ones(2)}, tmp_path / "sub" / "c.pt")
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["c.pt"]
    assert torch.load(tmp_path / "sub" / "c.pt", weights_only=True)["w"].sum() == 2


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_a_damaged_checkpoint_names_its_file(tmp_path, damage):
    path = tmp_path / "stage1.pt"
    save_atomic({"weight": torch.arange(10_000.0)}, path)
    data = path.read_bytes()
    damaged = {"truncated": data[: len(data) // 2], "garbage": b"x" * 100, "empty": b""}
    path.write_bytes(damaged[damage])
    with pytest.raises(ValueError, match=rf"{path} is not a readable checkpoint"):
        load_state(path)


def test_scratch_checkpoints_are_named_by_everything_that_defines_the_run(tmp_path):
    one = scratch_checkpoint(tmp_path, "stage1", config={"lr": 1e-3}, images=["a"])
    assert one.parent == tmp_path and one.name.startswith("stage1-") and one.suffix == ".pt"
    assert one == scratch_checkpoint(str(tmp_path), "stage1", config={"lr": 1e-3}, images=["a"])
    assert one != scratch_checkpoint(tmp_path, "stage1", config={"lr": 1e-3}, images=["b"])
    assert one != scratch_checkpoint(tmp_path, "stage1", config={"lr": 2e-3}, images=["a"])
    assert one != scratch_checkpoint(tmp_path, "stage3", config={"lr": 1e-3}, images=["a"])
    assert scratch_checkpoint(None, "stage1", config={}) is None
