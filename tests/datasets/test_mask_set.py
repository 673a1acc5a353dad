import base64
import io

import numpy as np
import pytest
from kedro.io.core import DatasetError, Version
from PIL import Image

from semples.datasets import MaskSet, MaskSetDataset


def _label_map(seed: int, shape=(7, 9)) -> np.ndarray:
    values = np.random.default_rng(seed).integers(0, 21, size=shape).astype(np.uint8)
    values[0, 0] = 255
    return values


def _versioned(tmp_path, load=None, save=None) -> MaskSetDataset:
    return MaskSetDataset(path=str(tmp_path / "masks"), version=Version(load, save))


def _versions(tmp_path) -> list[str]:
    return sorted(p.name for p in (tmp_path / "masks").iterdir())


def test_round_trip_of_every_format(tmp_path):
    label = _label_map(0)
    rgb = np.random.default_rng(1).integers(0, 256, size=(5, 6, 3), dtype=np.uint8)
    cam = np.random.default_rng(2).random((3, 5, 6)).astype(np.float32)
    bundle = {"cam": cam, "keys": np.array([1, 4, 7])}
    dataset = _versioned(tmp_path)
    dataset.save({"label": label, "rgb": rgb, "cam": cam, "bundle": lambda: bundle})

    loaded = dataset.load()
    assert isinstance(loaded, MaskSet)
    assert sorted(loaded) == ["bundle", "cam", "label", "rgb"]
    np.testing.assert_array_equal(loaded["label"](), label)
    np.testing.assert_array_equal(loaded.read("rgb"), rgb)
    np.testing.assert_array_equal(loaded.read("cam"), cam)
    assert loaded.read("cam").dtype == np.float32
    restored = loaded.read("bundle")
    np.testing.assert_array_equal(restored["cam"], cam)
    np.testing.assert_array_equal(restored["keys"], [1, 4, 7])
    assert loaded.path("label").suffix == ".png"
    with Image.open(loaded.path("label")) as image:
        assert image.mode == "P"
        assert image.getpalette()[3:6] == [128, 0, 0]


def test_callables_are_called_one_at_a_time(tmp_path):
    produced = []

    def make(i):
        def produce():
            produced.append(i)
            return _label_map(i)

        return produce

    _versioned(tmp_path).save({f"m{i}": make(i) for i in range(3)})
    assert produced == [0, 1, 2]


def test_each_save_keeps_its_own_version_and_old_versions_load(tmp_path):
    _versioned(tmp_path, save="2026-01-01T00.00.00.000Z").save({"a": _label_map(0)})
    _versioned(tmp_path, save="2026-01-02T00.00.00.000Z").save({"b": _label_map(1)})

    assert _versions(tmp_path) == ["2026-01-01T00.00.00.000Z", "2026-01-02T00.00.00.000Z"]
    assert list(_versioned(tmp_path).load()) == ["b"]
    assert list(_versioned(tmp_path, load="2026-01-01T00.00.00.000Z").load()) == ["a"]


@pytest.mark.parametrize("failure", [RuntimeError("render failed"), KeyboardInterrupt()])
def test_failed_or_interrupted_save_leaves_no_partial_version(tmp_path, failure):
    _versioned(tmp_path, save="2026-01-01T00.00.00.000Z").save({"a": _label_map(0)})

    def broken():
        raise failure

    dataset = _versioned(tmp_path, save="2026-01-02T00.00.00.000Z")
    with pytest.raises((DatasetError, KeyboardInterrupt)):
        dataset.save({"b": _label_map(1), "c": broken})

    assert _versions(tmp_path) == ["2026-01-01T00.00.00.000Z"]
    assert list(_versioned(tmp_path).load()) == ["a"]
    np.testing.assert_array_equal(_versioned(tmp_path).load().read("a"), _label_map(0))


def test_unversioned_save_replaces_the_folder_whole(tmp_path):
    dataset = MaskSetDataset(path=str(tmp_path / "plain"))
    dataset.save({"a": _label_map(0), "b": _label_map(1)})
    dataset.save({"c": _label_map(2)})
    assert list(dataset.load()) == ["c"]
    assert [p.name for p in tmp_path.iterdir()] == ["plain"]


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (
            {"x": np.zeros((2, 2), dtype=np.int32) + 300},
            "mask 'x': label values must lie in 0..255",
        ),
        (
            {"y": np.zeros((2, 2, 4), dtype=np.uint8)},
            "mask 'y': cannot save an array of dtype uint8",
        ),
        ({"a/b": np.zeros((2, 2), np.uint8)}, "mask id 'a/b' must be a non-empty string"),
        ({".hidden": np.zeros((2, 2), np.uint8)}, "mask id '.hidden' must not start with '.'"),
    ],
)
def test_bad_items_are_rejected_with_their_id(tmp_path, items, message):
    with pytest.raises(DatasetError, match=message):
        _versioned(tmp_path).save(items)
    assert not (tmp_path / "masks").exists() or _versions(tmp_path) == []


def test_save_needs_a_mapping(tmp_path):
    with pytest.raises(DatasetError, match="saved from a mapping id -> array or callable"):
        _versioned(tmp_path).save([np.zeros((2, 2), np.uint8)])


def test_missing_item_and_missing_version_errors(tmp_path):
    _versioned(tmp_path).save({"a": _label_map(0)})
    with pytest.raises(KeyError, match="no item 'zz' in mask set"):
        _versioned(tmp_path).load().path("zz")
    with pytest.raises(DatasetError, match="does not exist"):
        _versioned(tmp_path, load="1999-01-01T00.00.00.000Z").load()


def test_preview_is_a_png_row_of_thumbnails(tmp_path):
    rgb = np.full((4, 4, 3), 200, np.uint8)
    _versioned(tmp_path).save({"a": _label_map(0), "b": rgb, "c": np.ones((2, 4, 4))})
    preview = _versioned(tmp_path).preview(num_items=3, size=16)
    with Image.open(io.BytesIO(base64.b64decode(preview))) as image:
        assert image.size == (48, 16)
