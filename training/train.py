"""Train a Mask R-CNN on the shapes dataset with Detectron2's own trainer, on the CPU.

    python -m training.train --out .cache/trained/shapes      # data, training, checkpoint

The model is the model zoo's ``Misc/scratch_mask_rcnn_R_50_FPN_3x_gn.yaml`` (GroupNorm,
made for training without pretrained weights: Detectron2's frozen BatchNorm starts as an
identity, so a random ResNet with it explodes), made small enough for two CPU cores: a
ResNet-18, 64 FPN channels, 160-pixel images, lighter heads (a two-layer box head of 256,
mask convolutions of 64 channels) and fewer proposals while training.
``DefaultTrainer`` runs it with its hooks (LR schedule, checkpoints, the metric printer's
progress and ETA), seeded.  Writes ``config.yaml`` (what the exporter takes as
``--config``), ``model_final.pth`` and ``training.json`` (iterations, seconds, data spec)
under ``--out``; a second run with the same settings finds them and trains nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

from d2_triton.commands import Parser, command, positive_float, positive_int
from training import shapes

BASE_CONFIG = "Misc/scratch_mask_rcnn_R_50_FPN_3x_gn.yaml"
CONFIG_FILE = "config.yaml"
CHECKPOINT_FILE = "model_final.pth"
INFO_FILE = "training.json"


@dataclass(frozen=True)
class TrainingSpec:
    """How the model is trained; the same spec gives the same checkpoint key.

    Attributes:
        max_iter: training iterations.
        images_per_batch: images per iteration.
        base_lr: peak learning rate (after warm-up), divided by 10 at 75 % and 90 %.
        seed: Detectron2's SEED (weights, data order, augmentation).
        threads: torch threads (0: torch's default).  Not part of the checkpoint's key, as
            the CPU is not: either changes how sums round, not what is trained.
    """

    max_iter: int = 1500
    images_per_batch: int = 4
    base_lr: float = 0.02
    seed: int = 0
    threads: int = 0


def config_options(data: dict[str, shapes.DatasetFiles], spec: TrainingSpec) -> list[str]:
    """The Detectron2 options layered on the zoo config, as KEY VALUE pairs."""
    size = shapes.ShapesSpec().image_size
    steps = (int(spec.max_iter * 0.75), int(spec.max_iter * 0.9))
    options = {
        "MODEL.RESNETS.DEPTH": 18,
        "MODEL.RESNETS.RES2_OUT_CHANNELS": 64,  # what ResNet-18/34 need
        # 64 FPN channels, 64-channel mask convolutions, a 256-wide box head and fewer
        # training proposals took an iteration from 1.18 s to 0.68 s on 2 cores, 160-pixel
        # images (ShapesSpec) to 0.41 s; benchmarks/results/accuracy has what it scores.
        "MODEL.FPN.OUT_CHANNELS": 64,
        "MODEL.ANCHOR_GENERATOR.SIZES": [[16], [32], [64], [128], [256]],
        "MODEL.RPN.BATCH_SIZE_PER_IMAGE": 128,
        "MODEL.RPN.PRE_NMS_TOPK_TRAIN": 1000,
        "MODEL.RPN.POST_NMS_TOPK_TRAIN": 250,
        "MODEL.RPN.POST_NMS_TOPK_TEST": 500,
        "MODEL.ROI_HEADS.NUM_CLASSES": len(shapes.CLASSES),
        "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE": 64,
        # Two fully connected layers (Base-RCNN-FPN's box head) instead of the GN config's
        # four convolutions on every proposal: those doubled the cost of an iteration.
        "MODEL.ROI_BOX_HEAD.NUM_CONV": 0,
        "MODEL.ROI_BOX_HEAD.NUM_FC": 2,
        "MODEL.ROI_BOX_HEAD.FC_DIM": 256,
        "MODEL.ROI_MASK_HEAD.CONV_DIM": 64,
        "MODEL.PIXEL_STD": [57.375, 57.12, 58.395],  # from scratch: normalise the spread too
        "INPUT.MASK_FORMAT": "bitmask",  # RLE masks (rings have holes)
        "INPUT.MIN_SIZE_TRAIN": (size,),
        "INPUT.MAX_SIZE_TRAIN": size,
        "INPUT.MIN_SIZE_TEST": size,
        "INPUT.MAX_SIZE_TEST": size,
        "DATASETS.TRAIN": (data["train"].name,),
        "DATASETS.TEST": (data["val"].name,),
        "DATALOADER.NUM_WORKERS": 1,
        "SOLVER.IMS_PER_BATCH": spec.images_per_batch,
        "SOLVER.BASE_LR": spec.base_lr,
        "SOLVER.MAX_ITER": spec.max_iter,
        "SOLVER.STEPS": steps,
        "SOLVER.WARMUP_ITERS": min(200, spec.max_iter // 5),
        # Only model_final.pth: a period equal to MAX_ITER saved the same weights twice.
        "SOLVER.CHECKPOINT_PERIOD": spec.max_iter + 1,
        # A high learning rate for a short schedule, with clipping as the guard against a
        # diverging step early on (from scratch, GroupNorm).
        "SOLVER.CLIP_GRADIENTS.ENABLED": True,
        "SOLVER.CLIP_GRADIENTS.CLIP_TYPE": "norm",
        "SOLVER.CLIP_GRADIENTS.CLIP_VALUE": 10.0,
        "TEST.EVAL_PERIOD": 0,
        "SEED": spec.seed,
        "MODEL.DEVICE": "cpu",
    }
    return [str(item) for key, value in options.items() for item in (key, value)]


def training_key(
    data: dict[str, shapes.DatasetFiles], data_spec: shapes.ShapesSpec, spec: TrainingSpec
) -> str:
    """Names the checkpoint: the data, the zoo config and every option layered on it."""
    digest = hashlib.sha256(data_spec.fingerprint().encode())
    digest.update(BASE_CONFIG.encode())
    digest.update(json.dumps(config_options(data, spec)).encode())
    return digest.hexdigest()[:12]


def default_data_dir(out: Path) -> Path:
    """Where the dataset goes by default: beside the model folder, as ``<out>-data``."""
    return out.with_name(f"{out.name}-data")


def trainer_class():
    """DefaultTrainer without evaluation (``benchmarks.accuracy.run``'s job) or TensorBoard.

    Its writers are the progress printer (losses, iteration time and ETA every 20 iterations)
    and metrics.json; TensorBoard is not a dependency of this project.
    """
    from detectron2.engine import DefaultTrainer, hooks
    from detectron2.utils.events import CommonMetricPrinter, JSONWriter

    class ShapesTrainer(DefaultTrainer):
        def build_hooks(self):
            return [hook for hook in super().build_hooks() if not isinstance(hook, hooks.EvalHook)]

        def build_writers(self):
            metrics = str(Path(self.cfg.OUTPUT_DIR) / "metrics.json")
            return [CommonMetricPrinter(self.max_iter), JSONWriter(metrics)]

    return ShapesTrainer


def train(out: Path, data_dir: Path, spec: TrainingSpec = TrainingSpec()) -> Path:
    """Make the data, train, write config.yaml and model_final.pth; returns ``out``."""
    import torch
    from detectron2 import model_zoo
    from detectron2.config import get_cfg
    from detectron2.utils.env import seed_all_rng
    from detectron2.utils.logger import setup_logger

    data_spec = shapes.ShapesSpec()
    key = training_key(shapes.splits(data_dir), data_spec, spec)
    info_path = out / INFO_FILE
    if info_path.is_file() and json.loads(info_path.read_text()).get("key") == key:
        return out
    data = shapes.make_dataset(data_dir, data_spec)
    shapes.register(data)
    if spec.threads > 0:
        torch.set_num_threads(spec.threads)
    cfg = get_cfg()
    cfg.merge_from_file(model_zoo.get_config_file(BASE_CONFIG))
    cfg.merge_from_list(config_options(data, spec))
    cfg.OUTPUT_DIR = str(out)
    out.mkdir(parents=True, exist_ok=True)
    setup_logger(str(out / "log.txt"), name="detectron2")
    seed_all_rng(spec.seed)
    started = time.monotonic()
    trainer = trainer_class()(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    seconds = time.monotonic() - started
    (out / CONFIG_FILE).write_text(cfg.dump())
    info_path.write_text(
        json.dumps(
            {
                "key": key,
                "base_config": BASE_CONFIG,
                "train_seconds": seconds,
                "iterations": spec.max_iter,
                "training": dataclasses.asdict(spec),
                "data": dataclasses.asdict(data_spec),
                "data_dir": str(data_dir),
                "torch_threads": torch.get_num_threads(),
            },
            indent=2,
        )
    )
    return out


@command("python -m training.train")
def main(argv: list[str] | None = None) -> int:
    """Train (or find the cached model) and say where it is."""
    from export_tools.detectron2_setup.shims import import_detectron2

    parser = Parser(
        prog="python -m training.train",
        description=__doc__,
    )
    parser.add_argument("--out", type=Path, required=True, help="checkpoint folder")
    parser.add_argument("--data", type=Path, help="dataset folder (default: OUT-data)")
    parser.add_argument("--max-iter", type=positive_int, default=TrainingSpec.max_iter)
    parser.add_argument(
        "--images-per-batch", type=positive_int, default=TrainingSpec.images_per_batch
    )
    parser.add_argument("--base-lr", type=positive_float, default=TrainingSpec.base_lr)
    parser.add_argument("--seed", type=int, default=TrainingSpec.seed)
    parser.add_argument("--threads", type=positive_int, help="torch threads (default: torch's)")
    args = parser.parse_args(argv)
    import_detectron2()
    threads = args.threads or TrainingSpec.threads
    spec = TrainingSpec(args.max_iter, args.images_per_batch, args.base_lr, args.seed, threads)
    out = train(args.out, args.data or default_data_dir(args.out), spec)
    info = json.loads((out / INFO_FILE).read_text())
    print(
        f"trained in {info['train_seconds']:.0f} s: {out / CHECKPOINT_FILE}, "
        f"config {out / CONFIG_FILE}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
