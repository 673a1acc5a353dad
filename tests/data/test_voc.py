"""PASCAL VOC reader on a tiny generated VOC-layout folder (4 images, 3 split files)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from layouts import AUG_ONLY, IMAGES, make_voc, save_mask, save_xml
from semples.data import voc
from semples.data.index import BadItemError, ItemPolicy
from semples.data.voc import scan_voc


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_voc(tmp_path / "VOC2012")


def posix(path: Path) -> str:
    return path.resolve().as_posix()


def split_file(root: Path, split: str) -> Path:
    return root / "ImageSets" / "Segmentation" / f"{split}.txt"


def error_of(root: Path, **kwargs) -> BadItemError:
    with pytest.raises(BadItemError) as info:
        scan_voc(root, **kwargs)
    return info.value


def test_records_per_split_and_id_with_mask_labels(root):
    records = scan_voc(root)
    assert [(r.split, r.id) for r in records] == [
        ("train_aug", "2007_000001"),
        ("train_aug", "2007_000002"),
        ("train_aug", AUG_ONLY),
        ("train", "2007_000001"),
        ("train", "2007_000002"),
        ("val", "2007_000003"),
        ("val", "2007_000004"),
    ]
    by_key = {(r.split, r.id): r for r in records}
    first = by_key["train", "2007_000001"]
    assert first.image_path == posix(root / "JPEGImages" / "2007_000001.jpg")
    assert first.mask_path == posix(root / "SegmentationClassAug" / "2007_000001.png")
    assert (first.width, first.height) == (32, 24)
    assert first.labels == (0, 14)  # from the Aug mask, which wins over SegmentationClass
    assert by_key["train_aug", "2007_000001"].labels == (0, 14)
    assert by_key["val", "2007_000003"].mask_path == posix(
        root / "SegmentationClass" / "2007_000003.png"
    )
    assert by_key["val", "2007_000003"].labels == (14,)
    assert by_key["val", "2007_000004"].labels == ()  # no object: kept, not an error
    assert by_key["train_aug", AUG_ONLY].labels == (19,)


def test_labels_from_annotations_when_present(tmp_path):
    root = make_voc(tmp_path / "VOC2012", annotations=True)
    labels = {(r.split, r.id): r.labels for r in scan_voc(root, splits=("train", "val"))}
    assert labels == {
        ("train", "2007_000001"): (0, 14),
        ("train", "2007_000002"): (7, 11),
        ("val", "2007_000003"): (14,),
        ("val", "2007_000004"): (),
    }


def test_image_in_two_splits_is_decoded_once(root, monkeypatch):
    decoded = []
    original = voc.read_image_size

    def counting(path, **kwargs):
        decoded.append(Path(path).stem)
        return original(path, **kwargs)

    monkeypatch.setattr(voc, "read_image_size", counting)
    scan_voc(root)
    assert sorted(decoded) == sorted([*IMAGES, AUG_ONLY])


def test_selected_splits_and_mask_dirs(root):
    records = scan_voc(root, splits=("train",), mask_dirs=("SegmentationClass",))
    assert [r.labels for r in records] == [(0,), (7, 11)]


# --- setup errors: raised at once, whatever the policy -------------------------------------


def test_missing_root(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        scan_voc(tmp_path / "nowhere", policy=ItemPolicy("skip"))
    assert str(info.value) == f"VOC root not found: {tmp_path / 'nowhere'}"


def test_root_is_a_file(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError) as info:
        scan_voc(tmp_path / "file")
    assert str(info.value) == f"VOC root is not a directory: {tmp_path / 'file'}"


def test_missing_split_file(root):
    with pytest.raises(FileNotFoundError) as info:
        scan_voc(root, splits=("train", "test"), policy=ItemPolicy("skip"))
    assert str(info.value) == f"split 'test': split file not found: {split_file(root, 'test')}"


def test_no_mask_folder(root):
    with pytest.raises(FileNotFoundError) as info:
        scan_voc(root, mask_dirs=("Nope", "Neither"))
    assert str(info.value) == f"no VOC mask folder under {root}: expected one of Nope, Neither"


def test_missing_image_folder(root):
    (root / "JPEGImages").rename(root / "Images")
    with pytest.raises(FileNotFoundError) as info:
        scan_voc(root)
    assert str(info.value) == f"VOC image folder not found: {root / 'JPEGImages'}"


# --- item errors: exact messages ------------------------------------------------------------


def test_id_without_image(root):
    split_file(root, "val").write_text("2007_000003\n2007_000099\n")
    err = error_of(root, splits=("val",))
    image = root / "JPEGImages" / "2007_000099.jpg"
    assert str(err) == (
        f"{image}: image for id '2007_000099' listed in {split_file(root, 'val')} not found"
    )
    assert err.item_id == "2007_000099"


def test_corrupt_image(root):
    image = root / "JPEGImages" / "2007_000003.jpg"
    image.write_bytes(b"garbage")
    err = error_of(root, splits=("val",))
    assert str(err) == f"{image}: cannot read image: cannot identify image file '{image}'"
    assert err.item_id == "2007_000003"


def test_truncated_image(root):
    image = root / "JPEGImages" / "2007_000003.jpg"
    image.write_bytes(image.read_bytes()[:-200])  # header intact, pixel data cut
    expected = f"{image}: cannot read image: image file is truncated"
    with pytest.raises(BadItemError, match="^" + re.escape(expected)):
        scan_voc(root, splits=("val",))


def test_missing_mask_names_every_path_tried(root):
    (root / "SegmentationClass" / "2007_000003.png").unlink()
    err = error_of(root, splits=("val",))
    aug = root / "SegmentationClassAug" / "2007_000003.png"
    plain = root / "SegmentationClass" / "2007_000003.png"
    assert str(err) == f"{aug}: no mask for id '2007_000003' (tried {aug}, {plain})"
    assert err.item_id == "2007_000003"


def test_corrupt_mask(root):
    mask = root / "SegmentationClass" / "2007_000003.png"
    mask.write_bytes(b"garbage")
    err = error_of(root, splits=("val",))
    assert str(err) == f"{mask}: cannot read mask: cannot identify image file '{mask}'"


def test_rgb_mask(root):
    mask = root / "SegmentationClass" / "2007_000003.png"
    Image.fromarray(np.zeros((20, 30, 3), dtype=np.uint8)).save(mask)
    err = error_of(root, splits=("val",))
    assert str(err) == (
        f"{mask}: mask has mode 'RGB'; expected a single-channel label map (PIL mode 'P' or 'L')"
    )


def test_mask_size_mismatch(root):
    mask = root / "SegmentationClass" / "2007_000003.png"
    save_mask(mask, 20, 30, [15])
    image = root / "JPEGImages" / "2007_000003.jpg"
    err = error_of(root, splits=("val",))
    assert str(err) == f"{mask}: mask 20x30 does not match image 30x20 ({image})"
    assert err.item_id == "2007_000003"


def test_mask_values_outside_voc_classes(root):
    mask = root / "SegmentationClass" / "2007_000003.png"
    save_mask(mask, 30, 20, [21, 40])
    err = error_of(root, splits=("val",))
    assert str(err) == f"{mask}: mask has values outside 0..20 and 255: 21, 40"


def test_unknown_class_name_in_xml(tmp_path):
    root = make_voc(tmp_path / "VOC2012", annotations=True)
    xml = root / "Annotations" / "2007_000003.xml"
    save_xml(xml, ["person", "unicorn"])
    err = error_of(root, splits=("val",))
    assert str(err) == f"{xml}: unknown class name 'unicorn' in <object>"
    assert err.item_id == "2007_000003"


def test_unparseable_xml(tmp_path):
    root = make_voc(tmp_path / "VOC2012", annotations=True)
    xml = root / "Annotations" / "2007_000003.xml"
    xml.write_text("<annotation><object>")
    err = error_of(root, splits=("val",))
    assert str(err) == f"{xml}: cannot parse annotation xml: no element found: line 1, column 20"


def test_missing_xml_when_annotations_exist(tmp_path):
    root = make_voc(tmp_path / "VOC2012", annotations=True)
    xml = root / "Annotations" / "2007_000003.xml"
    xml.unlink()
    assert str(error_of(root, splits=("val",))) == f"{xml}: annotation file not found"


# --- skip mode --------------------------------------------------------------------------------


def test_skip_mode_keeps_good_items_and_counts_each_split(root):
    mask = root / "SegmentationClassAug" / "2007_000002.png"
    Image.fromarray(np.zeros((32, 24, 3), dtype=np.uint8)).save(mask)
    split_file(root, "val").write_text("2007_000003\n2007_000099\n2007_000004\n")
    policy = ItemPolicy("skip")
    records = scan_voc(root, policy=policy)
    assert [(r.split, r.id) for r in records] == [
        ("train_aug", "2007_000001"),
        ("train_aug", AUG_ONLY),
        ("train", "2007_000001"),
        ("val", "2007_000003"),
        ("val", "2007_000004"),
    ]
    rgb_reason = "mask has mode 'RGB'; expected a single-channel label map (PIL mode 'P' or 'L')"
    missing = root / "JPEGImages" / "2007_000099.jpg"
    assert policy.skipped == [
        {"id": "2007_000002", "split": "train_aug", "path": str(mask), "reason": rgb_reason},
        {"id": "2007_000002", "split": "train", "path": str(mask), "reason": rgb_reason},
        {
            "id": "2007_000099",
            "split": "val",
            "path": str(missing),
            "reason": f"image for id '2007_000099' listed in {split_file(root, 'val')} not found",
        },
    ]
