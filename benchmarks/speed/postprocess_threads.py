"""postprocess with numpy's BLAS and OpenCV on their default threads vs on one thread.

    .cache/venv/bin/python -m benchmarks.speed.postprocess_threads --rounds 5

``steps.postprocess`` (what the postprocess model runs) on 100 masked instances of a
1920x1080 image, RLE masks; each round times it 15 times per setting (median wall and CPU
ms), alternating the settings.  Meant to run while the cores are busy (as beside the
detector), where a BLAS worker that waits for a busy core shows up.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from d2_triton.commands import Parser, command
from d2_triton.serving import steps
from d2_triton.serving.options import PostprocessOptions
from d2_triton.vision.detections import Detections
from d2_triton.vision.labels import LabelMap


def detections(count: int = 100, seed: int = 0) -> Detections:
    """``count`` random boxes with confident random 28x28 masks, in 750x1333 model pixels."""
    rng = np.random.default_rng(seed)
    corner = rng.uniform(0, [1300, 700], size=(count, 2))
    size = rng.uniform(20, 400, size=(count, 2))
    logits = rng.normal(0, 4, (count, 28, 28))
    return Detections(
        boxes=np.concatenate([corner, corner + size], axis=1).astype(np.float32),
        scores=rng.uniform(0.05, 1, count).astype(np.float32),
        classes=rng.integers(0, 80, count),
        mask_probs=(1 / (1 + np.exp(-logits))).astype(np.float32),
    )


def time_postprocess(raw: Detections, repeats: int = 15) -> tuple[float, float]:
    """Median wall and CPU milliseconds of one postprocess call."""
    labels = LabelMap.from_names([f"class{i}" for i in range(80)])
    options = PostprocessOptions(score_threshold=0.0, mask_format="rle")
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        steps.postprocess(raw, (750, 1333), (1080, 1920), options, labels)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return 1000 * statistics.median(walls), 1000 * statistics.median(cpus)


@command("python -m benchmarks.speed.postprocess_threads")
def main(argv: list[str] | None = None) -> int:
    """Alternate the two settings for ``--rounds`` rounds and print each round's figures."""
    import cv2
    from threadpoolctl import threadpool_limits

    parser = Parser(
        prog="python -m benchmarks.speed.postprocess_threads", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    raw = detections()
    default_cv2_threads = cv2.getNumThreads()
    for round_ in range(args.rounds):
        for name, threads in (("default threads", None), ("one thread", 1)):
            cv2.setNumThreads(threads or default_cv2_threads)
            with threadpool_limits(limits=threads):  # None: leave the libraries as they are
                wall, cpu = time_postprocess(raw)
            print(f"round {round_ + 1}, {name}: wall {wall:.1f} ms, cpu {cpu:.1f} ms", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
