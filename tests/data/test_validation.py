"""Image / mask checks shared by the dataset readers: every failure names the file and why."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from semples.data.index import BadItemError, IndexRecord, ItemPolicy
from semples.data.validation import (
    absolute_posix,
    check_sizes_match,
    collect_records,
    read_image_size,
    read_label_mask,
)

PALETTE = list(np.random.default_rng(1).integers(0, 256, 256 * 3, dtype=np.uint8))


def save_jpeg(path: Path, width: int, height: int) -> Path:
    pixels = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="JPEG")
    return path


def save_palette_mask(path: Path, mask: np.ndarray) -> Path:
    image = Image.fromarray(mask.astype(np.uint8))
    image.putpalette(PALETTE)  # L -> P keeping the raw indices
    image.save(path)
    return path


def truncate(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def test_read_image_size_decodes_and_returns_width_height(tmp_path):
    assert read_image_size(save_jpeg(tmp_path / "a.jpg", 50, 40)) == (50, 40)


def test_read_image_size_truncated_file_fails_only_when_decoding(tmp_path):
    path = truncate(save_jpeg(tmp_path / "t.jpg", 50, 40))
    assert read_image_size(path, decode=False) == (50, 40)
    expected = f"{path}: cannot read image: image file is truncated"
    with pytest.raises(BadItemError, match="^" + re.escape(expected)):
        read_image_size(path)


def test_read_label_mask_returns_raw_palette_indices(tmp_path):
    mask = np.array([[0, 1, 20], [255, 7, 0]], dtype=np.uint8)
    path = save_palette_mask(tmp_path / "m.png", mask)
    with Image.open(path) as image:
        assert image.mode == "P"
    result = read_label_mask(path, 20)
    assert result.dtype == np.uint8
    np.testing.assert_array_equal(result, mask)


def test_read_label_mask_accepts_grayscale(tmp_path):
    mask = np.array([[0, 3], [255, 20]], dtype=np.uint8)
    Image.fromarray(mask).save(tmp_path / "m.png")
    np.testing.assert_array_equal(read_label_mask(tmp_path / "m.png", 20), mask)


def test_read_label_mask_truncated_file(tmp_path):
    mask = np.random.default_rng(0).integers(0, 21, (64, 64), dtype=np.uint8)
    path = truncate(save_palette_mask(tmp_path / "m.png", mask))
    with pytest.raises(BadItemError, match="^" + re.escape(f"{path}: cannot read mask: ")):
        read_label_mask(path, 20)


def test_read_label_mask_rejects_rgb(tmp_path):
    path = tmp_path / "rgb.png"
    Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save(path)
    with pytest.raises(BadItemError) as info:
        read_label_mask(path, 20)
    assert str(info.value) == (
        f"{path}: mask has mode 'RGB'; expected a single-channel label map (PIL mode 'P' or 'L')"
    )


def test_read_label_mask_rejects_values_outside_class_list(tmp_path):
    path = save_palette_mask(tmp_path / "m.png", np.array([[0, 21, 255, 30]]))
    with pytest.raises(BadItemError) as info:
        read_label_mask(path, 20, item_id="x")
    assert str(info.value) == f"{path}: mask has values outside 0..20 and 255: 21, 30"
    assert info.value.item_id == "x"


def test_read_label_mask_lists_only_the_first_offending_values(tmp_path):
    path = save_palette_mask(tmp_path / "m.png", np.arange(0, 30).reshape(3, 10))
    with pytest.raises(BadItemError) as info:
        read_label_mask(path, 20)
    assert str(info.value) == (
        f"{path}: mask has values outside 0..20 and 255: 21, 22, 23, 24, 25 (+4 more)"
    )


def test_check_sizes_match_names_both_files_and_sizes(tmp_path):
    check_sizes_match("a.jpg", (5, 3), "a.png", np.zeros((3, 5), dtype=np.uint8))
    with pytest.raises(BadItemError) as info:
        check_sizes_match(
            tmp_path / "a.jpg", (375, 500), tmp_path / "a.png", np.zeros((375, 500)), item_id="a"
        )
    assert str(info.value) == (
        f"{tmp_path / 'a.png'}: mask 500x375 does not match image 375x500 ({tmp_path / 'a.jpg'})"
    )
    assert info.value.item_id == "a"


def test_absolute_posix_resolves(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert absolute_posix("sub/../a.jpg") == (tmp_path / "a.jpg").resolve().as_posix()


def _record(split: str, key: str) -> IndexRecord:
    if key == "bad":
        raise BadItemError("/data/bad.jpg", "image file not found", key)
    return IndexRecord(key, split, f"/data/{key}.jpg", None, 1, 1, ())


def test_collect_records_skips_and_counts_bad_items():
    policy = ItemPolicy("skip")
    items = [("train", "a"), ("train", "bad"), ("val", "b")]
    records = collect_records(items, _record, policy, "t")
    assert [(r.split, r.id) for r in records] == [("train", "a"), ("val", "b")]
    assert policy.skipped == [
        {"id": "bad", "split": "train", "path": "/data/bad.jpg", "reason": "image file not found"}
    ]


def test_collect_records_raises_by_default():
    with pytest.raises(BadItemError, match="image file not found"):
        collect_records([("train", "bad")], _record, ItemPolicy(), "t")


READERS = {
    "image": (lambda path, **kw: read_image_size(path, **kw), "bad.jpg", b"not an image"),
    "mask": (lambda path, **kw: read_label_mask(path, 20, **kw), "bad.png", b"\x89PNG garbage"),
}


@pytest.mark.parametrize("kind", READERS)
def test_missing_file_is_named_with_its_id(tmp_path, kind):
    read, name, _ = READERS[kind]
    path = tmp_path / name
    with pytest.raises(BadItemError) as info:
        read(path, item_id="x")
    assert str(info.value) == f"{path}: {kind} file not found"
    assert info.value.item_id == "x"


@pytest.mark.parametrize("kind", READERS)
def test_corrupt_file_is_named_with_the_reader_error(tmp_path, kind):
    read, name, content = READERS[kind]
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(BadItemError) as info:
        read(path)
    assert str(info.value) == f"{path}: cannot read {kind}: cannot identify image file '{path}'"
