"""What a Detectron2 user does without this project: ``DefaultPredictor`` in a loop.

Runs in the dev environment (it needs Detectron2).  Same photos, same weights as the
exported repository (rebuilt from its export_info.json: the checkpoint file, or the same
seeded random initialisation), end to end per image: decode (Detectron2's ``read_image``),
resize, eager model, ``detector_postprocess`` with pasted masks.

    python -m benchmarks.eager --repository R --photos DIR --out DIR --repeats 2
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from d2_triton.commands import Parser, command
from export_tools.detectron2_setup.shims import import_detectron2
from export_tools.repository.writer import read_export_info


def predictor_for(repository: Path, threads: int, pipeline=None):
    """Detectron2's own predictor for an exported pipeline (default: the default one), with
    the export's weights."""
    import_detectron2()
    from detectron2.checkpoint import DetectionCheckpointer

    from export_tools.detector_config import load_config
    from export_tools.predictors import predictor
    from export_tools.random_init import build_random_model

    info = read_export_info(repository, pipeline)
    config = load_config(info["config"], info["config_options"], info["score_thresh_test"])
    if threads > 0:
        torch.set_num_threads(threads)
    if info["weights"]["source"] == "random":
        return predictor(config, build_random_model(config, info["weights"]["seed"]))
    model = config.build_model()
    DetectionCheckpointer(model).load(info["weights"]["location"])
    return predictor(config, model)


@contextmanager
def recording_mask_probs() -> Iterator[list[np.ndarray]]:
    """Record the M x M mask probabilities Detectron2 pastes, while the block runs.

    Yields a list; each ``detector_postprocess`` call inside the block appends its instances'
    probabilities (N x M x M, in the order of the instances it returns).  Detectron2 drops
    them once pasted, so they are taken where it pastes: ``ROIMasks.to_bitmasks``.
    """
    from detectron2.structures.masks import ROIMasks

    recorded: list[np.ndarray] = []
    original = ROIMasks.to_bitmasks

    def to_bitmasks(self, *args, **kwargs):
        recorded.append(self.tensor.detach().float().numpy().copy())
        return original(self, *args, **kwargs)

    ROIMasks.to_bitmasks = to_bitmasks
    try:
        yield recorded
    finally:
        ROIMasks.to_bitmasks = original


@command("python -m benchmarks.eager")
def main(argv: list[str] | None = None) -> int:
    parser = Parser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", type=Path, required=True)
    parser.add_argument("--photos", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args(argv)
    predictor = predictor_for(args.repository, args.threads)
    from detectron2.data.detection_utils import read_image

    results = {"threads": torch.get_num_threads(), "sizes": {}}
    for folder in sorted(p for p in args.photos.iterdir() if p.is_dir()):
        photos = sorted(folder.glob("*.jpg"))
        predictor(read_image(str(photos[0]), format="BGR"))  # warm-up
        times = []
        for _ in range(args.repeats):
            for photo in photos:
                started = time.perf_counter()
                predictor(read_image(str(photo), format="BGR"))
                times.append(time.perf_counter() - started)
        results["sizes"][folder.name] = {
            "wall_ms": 1000 * statistics.mean(times),
            "throughput": 1.0 / statistics.mean(times),
        }
        print(f"{folder.name}: {json.dumps(results['sizes'][folder.name])}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "eager.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
