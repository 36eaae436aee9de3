"""The shapes dataset: deterministic, COCO-valid, masks that match what was drawn."""

from __future__ import annotations

import json

import cv2
import numpy as np
from pycocotools import mask as mask_util
from pycocotools.coco import COCO

from training import shapes

SMALL = shapes.ShapesSpec(train_images=6, val_images=4)


def test_the_same_spec_gives_the_same_files_and_another_seed_others(tmp_path):
    first = shapes.make_dataset(tmp_path / "a", SMALL)
    second = shapes.make_dataset(tmp_path / "b", SMALL)
    other = shapes.make_dataset(
        tmp_path / "c", shapes.ShapesSpec(seed=1, train_images=6, val_images=4)
    )
    for split in shapes.SPLITS:
        assert first[split].json_file.read_bytes() == second[split].json_file.read_bytes()
        assert first[split].json_file.read_bytes() != other[split].json_file.read_bytes()
    assert first["train"].json_file.read_bytes() != first["val"].json_file.read_bytes()


def test_a_cached_dataset_is_not_written_again(tmp_path):
    files = shapes.make_dataset(tmp_path, SMALL)
    stamp = files["val"].json_file.stat().st_mtime_ns
    shapes.make_dataset(tmp_path, SMALL)
    assert files["val"].json_file.stat().st_mtime_ns == stamp


def test_annotations_are_coco_and_describe_the_drawn_pixels(tmp_path):
    files = shapes.make_dataset(tmp_path, SMALL)
    coco = COCO(str(files["train"].json_file))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(shapes.CLASSES)
    for image_id in coco.getImgIds():
        info = coco.loadImgs(image_id)[0]
        image = cv2.imread(str(files["train"].image_root / info["file_name"]))
        assert image.shape == (SMALL.image_size, SMALL.image_size, 3)
        annotations = coco.loadAnns(coco.getAnnIds(imgIds=image_id))
        assert 1 <= len(annotations) <= SMALL.max_shapes
        union = np.zeros(image.shape[:2], bool)
        for annotation in annotations:
            mask = coco.annToMask(annotation).astype(bool)
            assert annotation["area"] == mask.sum() > 0
            assert not (union & mask).any()  # visible parts never overlap
            union |= mask
            rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
            np.testing.assert_allclose(annotation["bbox"], mask_util.toBbox(rle))
            # A shape is one flat colour (JPEG blurs only its edge).
            inner = cv2.erode(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
            if inner.sum() > 50:
                assert image[inner].std(axis=0).max() < 12


def test_a_ring_has_a_hole_and_a_star_is_not_convex():
    ring = shapes.shape_mask("ring", 100, (50, 50), 60, 0.0)
    assert ring[50, 50] == 0 and ring[50, 22] == 1
    star = shapes.shape_mask("star", 100, (50, 50), 60, 0.0)
    contour = cv2.findContours(star, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)[0][0]
    assert cv2.contourArea(cv2.convexHull(contour)) > 1.3 * cv2.contourArea(contour)


def test_the_info_file_records_the_spec(tmp_path):
    shapes.make_dataset(tmp_path, SMALL)
    info = json.loads((tmp_path / shapes.INFO_FILE).read_text())
    assert info["fingerprint"] == SMALL.fingerprint() and info["spec"]["train_images"] == 6
