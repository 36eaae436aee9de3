"""Serve a batch of exported zoo configs and compare each answer with Detectron2's own.

Each pipeline's answers on the photos are kept (``Answers``, pickled in the work folder) so
that ``run --rejudge`` can compare them again under a changed rule without serving anything.
"""

from __future__ import annotations

import pickle
import shutil
import statistics
import time
from pathlib import Path

from benchmarks.zoo.rows import Row
from d2_triton.names import PipelineNames

# A server's wait for its models to load (with their warm-up): TritonServer's own wait plus
# this a pipeline. On 2 AVX2-only cores the X152 cascade's detector was still loading after
# 300 s, in a batch (the other four pipelines loaded in 2.5 min) and alone; its row then said
# only that.
READY_S_PER_PIPELINE = 300


def compare_served(rows: list[Row], repository: Path, photos: list[Path]) -> None:
    """Serve ``repository``; each row's pipeline answers ``photos``, compared and timed.

    A model that fails to load stops the whole server: then each row is served alone, from
    a repository of its own pipeline's folders (links), so the failure is that row's.
    """
    from d2_triton.server import ServerEnvironment, TritonServer
    from d2_triton.server.tritonserver import READY_TIMEOUT_S
    from d2_triton.testing.gateway import SERVER_ENV
    from d2_triton.testing.ports import loopback_server_settings

    environment = ServerEnvironment.inspect(SERVER_ENV)
    server_settings = loopback_server_settings(repository)
    log = repository / "tritonserver.log"
    try:
        ready_timeout = READY_TIMEOUT_S + READY_S_PER_PIPELINE * len(rows)
        server = TritonServer(
            server_settings, environment, log_path=log, ready_timeout=ready_timeout
        )
        server.__enter__()
    except Exception as error:
        if len(rows) == 1:
            rows[0].fail(f"serving: {load_failure(log) or str(error).splitlines()[0]}")
            return
        for row in rows:
            compare_served([row], pipeline_alone(repository, row.name), photos)
        return
    try:
        for row in rows:
            try:
                compare_one(row, repository, server.http_url, photos)
            except Exception as error:  # one model's failure is its row's, not the run's
                row.fail(f"serving: {type(error).__name__}: {error}".splitlines()[0])
    finally:
        server.__exit__(None, None, None)


def fresh_repository(repository: Path) -> Path:
    """``repository`` emptied, with its one-pipeline neighbours (``pipeline_alone``).

    An earlier run's batch left there would be served along with this one's.
    """
    for folder in [repository, *repository.parent.glob(f"{repository.name}-*")]:
        shutil.rmtree(folder, ignore_errors=True)
    return repository


def pipeline_alone(repository: Path, name: str) -> Path:
    """A repository beside ``repository`` with links to pipeline ``name``'s four models."""
    alone = repository.with_name(f"{repository.name}-{name}")
    alone.mkdir(parents=True, exist_ok=True)
    for folder in PipelineNames(name).models().values():
        link = alone / folder
        if not link.exists():
            link.symlink_to(repository / folder, target_is_directory=True)
    return alone


def load_failure(log: Path) -> str | None:
    """The first model-load error in a tritonserver log, shortened, if there is one."""
    if not log.is_file():
        return None
    for line in log.read_text(errors="replace").splitlines():
        if "failed to load '" in line:
            message = line.split("failed to load ", 1)[1]
            return message.replace("\\n", " ").replace('\\"', "'")[:300]
    return None


def compare_one(row: Row, repository: Path, http_url: str, photos: list[Path]) -> None:
    """Served vs Detectron2's answer on each photo, timed; the answers kept for ``judge``."""
    from benchmarks.speed.eager import predictor_for
    from d2_triton.client import DetectionClient
    from export_tools.repository.writer import read_export_info

    pipeline = PipelineNames(row.name)
    info = read_export_info(repository, pipeline)
    predictor = predictor_for(repository, threads=0, pipeline=pipeline)
    answers, served_ms, eager_ms = [], [], []
    with DetectionClient(http_url, model=pipeline.name, timeout=600) as client:
        client.detect(photos[0].read_bytes())  # the first request of a shape pays profiling
        for photo in photos:
            started = time.perf_counter()
            result = client.detect(photo.read_bytes())
            served_ms.append(1000 * (time.perf_counter() - started))
            reference, took = eager_prediction(predictor, photo, result)
            eager_ms.append(took)
            answers.append((result, reference))
    row.served_ms = round(statistics.mean(served_ms), 1)
    row.eager_ms = round(statistics.mean(eager_ms), 1)
    timings = [row.export_s, row.served_ms, row.eager_ms]
    kept = Answers(info | {"timings": timings, "staged_refused": row.staged_refused}, answers)
    kept.save(repository.parent / "answers" / f"{row.name}.pkl")
    kept.judge(row)


class Answers:
    """One config's answers, served and Detectron2's, per photo, and the export's info.

    Kept in the work folder (pickled) so that ``--rejudge`` can compare them again under
    the current parity rule without exporting and serving again.
    """

    def __init__(self, info: dict, answers: list):
        self.info, self.answers = info, answers

    def judge(self, row: Row) -> None:
        """Compare each photo's pair under the export's rule; the figures into ``row``."""
        from d2_triton.parity.detections import ParityFigures, compare, rule_for

        figures = ParityFigures()
        for result, reference in self.answers:
            figures.merge(compare(result, reference, rule_for(self.info)))
        row.record(figures)
        if "timings" in self.info:  # the run that served them (older files lack them)
            row.export_s, row.served_ms, row.eager_ms = self.info["timings"]
        row.staged_refused = self.info.get("staged_refused")

    def save(self, path: Path) -> None:
        """Pickle to ``path`` (written whole, then renamed)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        partial.write_bytes(pickle.dumps((self.info, self.answers)))
        partial.replace(path)

    @classmethod
    def load(cls, path: Path) -> Answers:
        """What ``save`` wrote (a file of this tool's own work folder)."""
        return cls(*pickle.loads(path.read_bytes()))


def eager_prediction(predictor, photo: Path, served):
    """(Prediction, ms) of Detectron2's predictor on ``photo``, timed after a warm-up.

    Its masks and keypoints for the ``served`` answer's boxes come with it (untimed).
    """
    from detectron2.data.detection_utils import read_image

    from benchmarks.speed.eager import with_served_heads
    from d2_triton.parity.prediction import Prediction

    image = read_image(str(photo), format="BGR")
    predictor(image)
    started = time.perf_counter()
    output = predictor(image)
    took = 1000 * (time.perf_counter() - started)
    prediction = Prediction.from_output(output, image.shape[:2])
    return with_served_heads(prediction, predictor, image, served), took
