"""Write the measured figures into the docs, from the committed ``summary.json`` files.

    .cache/venv-dev/bin/python -m benchmarks.records.figures            # rewrite the blocks
    .cache/venv-dev/bin/python -m benchmarks.records.figures --check    # exit 1 if a doc is stale

A doc holds a block per figure set, between ``<!-- figures:NAME -->`` and
``<!-- /figures:NAME -->``; everything between the two markers is this command's.  No
figure from a benchmark or a test run is typed into the docs by hand: a new result is a new
``summary.json``, then this command (a unit test runs ``--check``).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

from benchmarks.records.suite import run_table
from benchmarks.speed.inputs import parse_size
from d2_triton.cache import CHECKOUT
from d2_triton.commands import Parser, command

RESULTS = CHECKOUT / "benchmarks" / "results"
DOCS = CHECKOUT / "docs"
PERFORMANCE = RESULTS / "cpu-2core-default" / "summary.json"
ACCURACY = RESULTS / "accuracy" / "summary.json"
SUITE = RESULTS / "suite" / "summary.json"
BLOCK = re.compile(r"(<!-- figures:(\w+) -->\n)(.*?)(<!-- /figures:\2 -->)", re.S)


def load(path: Path) -> dict:
    """A committed summary."""
    return json.loads(path.read_text(encoding="utf-8"))


def performance() -> str:
    """Throughput and lone-request latency against eager Detectron2, per image size."""
    summary = load(PERFORMANCE)
    lines = [
        f"Measured {summary['when']} on {summary['machine']}: a fresh export with no options "
        "against Detectron2's own `DefaultPredictor` in the same run, on the same photos and "
        f"weights (`{summary['command']}`; perf_analyzer, raw JPEG in, labelled detections "
        "with RLE masks out).",
        "",
        "| size | throughput, best concurrency | one request alone (p50) |",
        "|---|---|---|",
    ]
    for size, ratio in sorted(summary["against_eager"].items(), key=lambda item: _pixels(item[0])):
        lines.append(
            f"| {size} | **{ratio['throughput_ratio']:.2f}x** "
            f"({ratio['ensemble_img_per_s']:.3f} vs {ratio['eager_img_per_s']:.3f} img/s) "
            f"| **{ratio['latency_ratio']:.2f}x** "
            f"({ratio['ensemble_p50_ms_alone']:.0f} vs {ratio['eager_ms_per_image']:.0f} ms) |"
        )
    return "\n".join(lines)


def accuracy() -> str:
    """COCO AP of Detectron2 and of each served variant on the shapes val split."""
    summary = load(ACCURACY)
    metrics = ("bbox_AP", "bbox_AP50", "segm_AP", "segm_AP50")
    rows = [("Detectron2 `DefaultPredictor`", summary["detectron2"])] + [
        (f"served, {name} export ({' '.join(figures['export_options']) or 'no options'})", figures)
        for name, figures in summary["served"].items()
    ]
    lines = [
        f"| {summary['val_images']} val images | bbox AP | bbox AP50 | segm AP | segm AP50 |",
        "| --- | --- | --- | --- | --- |",
        *(f"| {name} | " + " | ".join(f"{f[m]:.2f}" for m in metrics) + " |" for name, f in rows),
        "",
        f"Model: {summary['model']}; {summary['weights']}, trained in "
        f"{summary['train_seconds'] / 60:.1f} minutes on a 2-core machine "
        "(`benchmarks/results/accuracy/summary.json`).",
    ]
    return "\n".join(lines)


def suite() -> str:
    """How long a fresh clone's ``.ci/run`` took, and its slowest tests."""
    summary = load(SUITE)
    lines = [
        *run_table(summary["runs"]),
        "",
        f"The slowest tests of the last run (`{summary['command']}`):",
        "",
        "| seconds | test |",
        "| --- | --- |",
        *(f"| {test['seconds']:.1f} | `{test['test']}` |" for test in summary["slowest"]),
    ]
    return "\n".join(lines)


RENDERERS: dict[str, Callable[[], str]] = {
    "performance": performance,
    "accuracy": accuracy,
    "suite": suite,
}


def _pixels(size: str) -> int:
    width, height = parse_size(size)
    return width * height


def rendered(text: str) -> str:
    """``text`` with every figures block rewritten."""

    def block(match: re.Match) -> str:
        name = match.group(2)
        if name not in RENDERERS:
            raise KeyError(f"no figures named {name!r} (known: {', '.join(RENDERERS)})")
        return f"{match.group(1)}{RENDERERS[name]()}\n{match.group(4)}"

    return BLOCK.sub(block, text)


def stale_docs(docs: list[Path]) -> list[Path]:
    """The docs whose blocks differ from what the summaries say."""
    return [path for path in docs if rendered(path.read_text()) != path.read_text()]


@command("python -m benchmarks.records.figures", expected=(KeyError,))
def main(argv: list[str] | None = None) -> int:
    """Rewrite (or, with --check, compare) every figures block of the docs."""
    parser = Parser(
        prog="python -m benchmarks.records.figures", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--check", action="store_true", help="only say which docs are stale")
    args = parser.parse_args(argv)
    docs = [*sorted(DOCS.glob("*.md")), CHECKOUT / "README.md"]
    stale = stale_docs(docs)
    if args.check:
        for path in stale:
            print(f"stale figures in {path.relative_to(CHECKOUT)}", file=sys.stderr)
        return 1 if stale else 0
    for path in stale:
        path.write_text(rendered(path.read_text()))
        print(f"rewrote {path.relative_to(CHECKOUT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
