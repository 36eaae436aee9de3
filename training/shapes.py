"""A synthetic instance-segmentation dataset: coloured shapes over real photographs.

    python -m training.shapes --out .cache/shapes          # writes train/ and val/ once

Five classes (circle, triangle, square, star, ring) of varied size, colour and rotation,
overlapping and occluding each other, drawn over random crops of the photographs that
scikit-image ships (no download).  Deterministic for a seed.  Written as COCO JSON with RLE
masks (a ring has a hole, which polygons cannot express), so Detectron2's own
``register_coco_instances`` reads it and ``pycocotools`` scores against it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_util

from d2_triton.commands import Parser, command

CLASSES = ("circle", "triangle", "square", "star", "ring")
# Photographs and textures that scikit-image ships in its data folder, used as backgrounds.
BACKGROUNDS = (
    "astronaut.png",
    "coffee.png",
    "chelsea.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "brick.png",
    "grass.png",
    "gravel.png",
    "hubble_deep_field.jpg",
    "retina.jpg",
    "ihc.png",
    "color.png",
    "camera.png",
    "moon.png",
)
SPLITS = ("train", "val")
# Bump when the drawing code changes what it draws: it is part of the dataset's fingerprint.
GENERATOR_VERSION = 1
INFO_FILE = "dataset.json"


@dataclass(frozen=True)
class ShapesSpec:
    """What the dataset holds; the same spec and seed always give the same files.

    Attributes:
        seed: seeds every random choice.
        train_images: images in the train split.
        val_images: images in the val split (drawn from a different stream).
        image_size: images are square, this many pixels a side.
        max_shapes: each image holds 1 to this many shapes.
        min_extent: smallest shape, in pixels across.
        max_extent: largest shape, in pixels across.
        min_visible: a shape stays at least this share visible when others cover it.
    """

    seed: int = 0
    train_images: int = 800
    val_images: int = 100
    image_size: int = 160
    max_shapes: int = 4
    min_extent: int = 20
    max_extent: int = 62
    min_visible: float = 0.6

    def fingerprint(self) -> str:
        """A short hash of the spec and the generator's version, naming the cached dataset."""
        content = {**dataclasses.asdict(self), "generator": GENERATOR_VERSION}
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class DatasetFiles:
    """Where a split lives: its COCO JSON and its image folder."""

    name: str
    json_file: Path
    image_root: Path


def shape_mask(kind: str, size: int, centre: tuple[float, float], extent: float, angle: float):
    """A ``size`` x ``size`` uint8 mask (0/1) of one shape.

    Args:
        kind: one of CLASSES.
        size: side of the image.
        centre: x, y of the shape's centre.
        extent: the shape's diameter, in pixels.
        angle: rotation in radians.
    """
    mask = np.zeros((size, size), np.uint8)
    cx, cy = centre
    radius = extent / 2
    if kind in ("circle", "ring"):
        cv2.circle(mask, (round(cx), round(cy)), round(radius), 1, -1)
        if kind == "ring":
            cv2.circle(mask, (round(cx), round(cy)), round(radius * 0.55), 0, -1)
        return mask
    if kind == "star":
        radii = [radius if i % 2 == 0 else radius * 0.45 for i in range(10)]
        angles = [angle + i * math.pi / 5 for i in range(10)]
    else:
        corners = 3 if kind == "triangle" else 4
        radii = [radius] * corners
        angles = [angle + i * 2 * math.pi / corners for i in range(corners)]
    points = np.array(
        [[cx + r * math.cos(a), cy + r * math.sin(a)] for r, a in zip(radii, angles, strict=True)]
    )
    cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 1)
    return mask


def load_backgrounds() -> list[np.ndarray]:
    """The background photographs as BGR uint8 arrays (grey ones as three equal channels)."""
    import skimage.data

    folder = Path(skimage.data.__file__).parent
    photos = []
    for name in BACKGROUNDS:
        photo = cv2.imread(str(folder / name), cv2.IMREAD_COLOR)
        if photo is None:
            raise FileNotFoundError(f"scikit-image's data folder has no {name}")
        photos.append(photo)
    return photos


def random_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    """A saturated BGR colour."""
    hsv = np.array([[[rng.integers(0, 180), rng.integers(150, 256), rng.integers(110, 256)]]])
    return tuple(int(v) for v in cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR)[0, 0])


def background(rng: np.random.Generator, photos: list[np.ndarray], size: int) -> np.ndarray:
    """A random crop of a random photograph, scaled to ``size`` x ``size``."""
    photo = photos[rng.integers(len(photos))]
    height, width = photo.shape[:2]
    side = int(rng.integers(min(height, width) // 3, min(height, width) + 1))
    y, x = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
    crop = photo[y : y + side, x : x + side]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)


def draw_image(rng: np.random.Generator, photos: list[np.ndarray], spec: ShapesSpec):
    """One image and its instances: (BGR image, [(class index, visible mask)])."""
    size = spec.image_size
    image = background(rng, photos, size)
    instances: list[tuple[int, np.ndarray, int]] = []  # (class, visible mask, full area)
    for _ in range(int(rng.integers(1, spec.max_shapes + 1))):
        for _attempt in range(20):
            kind = int(rng.integers(len(CLASSES)))
            extent = float(rng.uniform(spec.min_extent, spec.max_extent))
            margin = extent / 2
            centre = (rng.uniform(margin, size - margin), rng.uniform(margin, size - margin))
            mask = shape_mask(
                CLASSES[kind], size, centre, extent, float(rng.uniform(0, 2 * math.pi))
            )
            if all(
                (visible & ~mask.astype(bool)).sum() >= spec.min_visible * area
                for _, visible, area in instances
            ):
                break
        else:
            continue
        image[mask.astype(bool)] = random_colour(rng)
        instances = [(c, visible & ~mask.astype(bool), area) for c, visible, area in instances]
        instances.append((kind, mask.astype(bool), int(mask.sum())))
    return image, [(kind, visible) for kind, visible, _ in instances]


def annotation(index: int, image_id: int, kind: int, visible: np.ndarray) -> dict:
    """A COCO annotation with a compressed-RLE mask."""
    rle = mask_util.encode(np.asfortranarray(visible.astype(np.uint8)))
    x, y, w, h = (float(v) for v in mask_util.toBbox(rle))
    return {
        "id": index,
        "image_id": image_id,
        "category_id": kind + 1,
        "iscrowd": 0,
        "area": float(mask_util.area(rle)),
        "bbox": [x, y, w, h],
        "segmentation": {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")},
    }


def write_split(out: Path, split: str, count: int, spec: ShapesSpec, photos) -> None:
    """Draw ``count`` images of one split into ``out/split/`` and ``out/split.json``."""
    rng = np.random.default_rng([spec.seed, SPLITS.index(split)])
    folder = out / split
    folder.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for image_id in range(1, count + 1):
        image, instances = draw_image(rng, photos, spec)
        file_name = f"{image_id:05d}.jpg"
        cv2.imwrite(str(folder / file_name), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
        images.append(
            {
                "id": image_id,
                "file_name": file_name,
                "height": spec.image_size,
                "width": spec.image_size,
            }
        )
        for kind, visible in instances:
            annotations.append(annotation(len(annotations) + 1, image_id, kind, visible))
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(CLASSES)]
    document = {"images": images, "annotations": annotations, "categories": categories}
    (out / f"{split}.json").write_text(json.dumps(document))


def make_dataset(out: Path, spec: ShapesSpec = ShapesSpec()) -> dict[str, DatasetFiles]:
    """Write the dataset under ``out`` unless it is there for this spec; its splits."""
    info = out / INFO_FILE
    if not (
        info.is_file() and json.loads(info.read_text()).get("fingerprint") == spec.fingerprint()
    ):
        photos = load_backgrounds()
        write_split(out, "train", spec.train_images, spec, photos)
        write_split(out, "val", spec.val_images, spec, photos)
        info.write_text(
            json.dumps(
                {
                    "fingerprint": spec.fingerprint(),
                    "classes": CLASSES,
                    "spec": dataclasses.asdict(spec),
                },
                indent=2,
            )
        )
    return splits(out)


def splits(out: Path) -> dict[str, DatasetFiles]:
    """The splits of a dataset written under ``out``, named ``shapes_train``, ``shapes_val``."""
    return {
        split: DatasetFiles(f"shapes_{split}", out / f"{split}.json", out / split)
        for split in SPLITS
    }


def register(files: dict[str, DatasetFiles]) -> None:
    """Register the splits with Detectron2 (``register_coco_instances``) and name the classes."""
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.data.datasets import register_coco_instances

    for dataset in files.values():
        if dataset.name not in DatasetCatalog.list():
            register_coco_instances(
                dataset.name, {}, str(dataset.json_file), str(dataset.image_root)
            )
            MetadataCatalog.get(dataset.name).set(thing_classes=list(CLASSES))


@command("python -m training.shapes")
def main(argv: list[str] | None = None) -> int:
    """Write the dataset (or find it cached) and say where it is."""
    parser = Parser(
        prog="python -m training.shapes",
        description=__doc__,
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=ShapesSpec.seed)
    parser.add_argument("--train-images", type=int, default=ShapesSpec.train_images)
    parser.add_argument("--val-images", type=int, default=ShapesSpec.val_images)
    args = parser.parse_args(argv)
    spec = ShapesSpec(seed=args.seed, train_images=args.train_images, val_images=args.val_images)
    for split, dataset in make_dataset(args.out, spec).items():
        count = len(json.loads(dataset.json_file.read_text())["annotations"])
        print(f"{split}: {dataset.json_file} ({count} instances), images in {dataset.image_root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
