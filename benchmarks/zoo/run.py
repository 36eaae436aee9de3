"""Model-zoo coverage: every config Detectron2's sources ship, exported, served and compared.

    python -m benchmarks.zoo.run [--only GLOB ...] [--out benchmarks/results/zoo]

For each yaml and LazyConfig file under ``detectron2/model_zoo/configs`` (``common/`` holds
LazyConfig fragments, not models): what the config is (``benchmarks.zoo.rows.classify``; a
config that cannot be served says why, e.g. deformable convolution needs Detectron2's C++
ops), then the real export CLI with ``--weights random`` (the zoo's checkpoints cannot be
downloaded here) in its default mode, several exports per repository as pipelines of their
own, each repository served by the real tritonserver.  Two photos go to each pipeline over
HTTP; each answer is compared with Detectron2's own predictor on the same weights
(``benchmarks.speed.eager.predictor_for``) under the export's parity rule
(``d2_triton.parity.detections.rule_for``), and both are timed on one image.  It is long (about
a minute per config on 2 cores): it is not in the default suite, which serves one model of
each family (``tests/integration/test_families.py``).

Writes ``summary.json`` and ``report.md`` under ``--out`` after each batch
(``benchmarks.zoo.summary``): a run with ``--only`` replaces those configs' rows and keeps the
others, ``--resume`` skips the configs that have one; once every config has a row, the
table goes into ``docs/model-zoo.md`` between its markers.
"""

from __future__ import annotations

import fnmatch
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.speed import inputs
from benchmarks.zoo.compare import Answers, compare_served, fresh_repository
from benchmarks.zoo.rows import Row, classify, zoo_configs
from benchmarks.zoo.summary import ZooSummary
from benchmarks.zoo.twins import find_twins, refresh_twins, served_keys
from d2_triton.cache import CHECKOUT, cache_dir
from d2_triton.commands import Parser, command
from d2_triton.names import PipelineNames
from export_tools.progress import progress

OUT = CHECKOUT / "benchmarks" / "results" / "zoo"
PHOTO_SIZE = (640, 480)
PHOTOS = 2
# Random weights score low: the tests' threshold, so that every model has instances to compare.
SCORE_THRESH_TEST = 0.01
PIPELINES_PER_SERVER = 6  # ~1 GB each at rest for an R50; a server start costs ~15 s
EXPORT_TIMEOUT_S = 1200


def export(row: Row, repository: Path) -> None:
    """The real export CLI for ``row``'s config into ``repository``; fills the row.

    A staged export the exporter refuses because its stages do not answer as the eager model
    on its sample (``TraceMismatchError``, "stages: ...") is exported again with ``--exact``,
    as a user would; the row keeps the refusal (``Row.staged_refused``).
    """
    from export_tools.errors import STAGES_MISMATCH

    failure = _run_export(row, repository)
    if failure is not None and failure.startswith(STAGES_MISMATCH):
        row.staged_refused = failure
        failure = _run_export(row, repository, "--exact")
    if failure is not None:
        row.fail(failure)
        return
    from export_tools.repository.writer import read_export_info

    info = read_export_info(repository, PipelineNames(row.name))
    row.mode, row.meta_architecture = info["detector_mode"], info["meta_architecture"]


def _run_export(row: Row, repository: Path, *options: str) -> str | None:
    """Run the export CLI; the one line that says why it failed, or None."""
    command_line = [sys.executable, "-m", "export_tools.export", "--config", row.config]
    command_line += ["--weights", "random", "--repository", str(repository), "--name", row.name]
    command_line += ["--score-thresh-test", str(SCORE_THRESH_TEST), *options]
    started = time.perf_counter()
    try:
        done = subprocess.run(
            command_line, capture_output=True, text=True, timeout=EXPORT_TIMEOUT_S, cwd=CHECKOUT
        )
    except subprocess.TimeoutExpired:
        return f"export took over {EXPORT_TIMEOUT_S} s"
    finally:
        row.export_s = round(time.perf_counter() - started, 1)
    if done.returncode == 0:
        return None
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    failed = [line for line in lines if line.startswith("export failed: ")]
    return (failed or lines or ["no output"])[-1].removeprefix("export failed: ")


def rejudge(summary: ZooSummary, work: Path, configs: list[str]) -> None:
    """Compare the kept answers of ``configs`` again; rows without kept answers stay.

    A config with kept answers but no row (its batch was cut short before the summary was
    written) gets its row from them, and a config without a row that is the same model at
    test time as a served one gets its row (``zoo_twins``).
    """
    known = {row.config: row for row in summary.ordered()}
    judged = []
    for config in configs:
        row = known.get(config) or classify(config)
        path = work / "answers" / f"{row.name}.pkl"
        if row.reason is None and not row.same_as and path.is_file():
            answers = Answers.load(path)
            row.mode = answers.info["detector_mode"]
            row.meta_architecture = answers.info["meta_architecture"]
            answers.judge(row)
            judged.append(row)
    summary.record(judged)
    unknown = [config for config in configs if config not in summary.rows]
    refresh_twins(summary, find_twins(unknown, served_keys(summary)))
    print(f"judged again: {len(judged)} rows with kept answers")


@command("python -m benchmarks.zoo.run")
def main(argv: list[str] | None = None) -> int:
    """Classify, export, serve and compare each config; write the summary and the table."""
    parser = Parser(prog="python -m benchmarks.zoo.run", description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=[], help="configs matching these globs")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--work", type=Path, default=cache_dir() / "zoo-work")
    parser.add_argument(
        "--resume", action="store_true", help="skip the configs the summary has a row for"
    )
    parser.add_argument(
        "--rejudge",
        action="store_true",
        help="compare the answers kept in --work again under the current rule; serve nothing",
    )
    args = parser.parse_args(argv)
    from export_tools.detectron2_setup.shims import import_detectron2

    import_detectron2()
    summary = ZooSummary(args.out, "python -m benchmarks.zoo.run " + " ".join(argv or sys.argv[1:]))
    configs = [c for c in zoo_configs() if not args.only or any_match(c, args.only)]
    if args.rejudge:
        rejudge(summary, args.work, configs)
        return 0
    if args.resume:
        configs = [config for config in configs if config not in summary.rows]
    rows = [classify(config) for config in configs]
    summary.record([row for row in rows if row.reason is not None])
    label = inputs.size_label(PHOTO_SIZE)
    photos = inputs.write_photos(args.work / "photos", [PHOTO_SIZE], PHOTOS)[label]
    candidates = [row for row in rows if row.reason is None]
    twins = find_twins([row.config for row in candidates], served_keys(summary))
    originals = [row for row in candidates if row.config not in twins]
    starts = range(0, len(originals), PIPELINES_PER_SERVER)
    for start in progress(starts, f"zoo batches of {PIPELINES_PER_SERVER} configs"):
        batch = originals[start : start + PIPELINES_PER_SERVER]
        repository = fresh_repository(args.work / f"repository-{start // PIPELINES_PER_SERVER}")
        for row in batch:
            print(f"== {row.config}", flush=True)
            export(row, repository)
        exported = [row for row in batch if row.reason is None]
        if exported:
            compare_served(exported, repository, photos)
        for row in batch:
            print(f"   {row.outcome}: {row.reason or row.figures_line()}", flush=True)
        summary.record(batch)  # after each batch: a run cut short keeps what it did
    refresh_twins(summary, twins)
    print(f"wrote {args.out / 'summary.json'}: {summary.counts()}")
    return 0


def any_match(config: str, patterns: list[str]) -> bool:
    """Whether ``config`` matches one of the globs."""
    return any(fnmatch.fnmatch(config, pattern) for pattern in patterns)


if __name__ == "__main__":
    raise SystemExit(main())
