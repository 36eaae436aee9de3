"""The model-zoo coverage run's results: summary.json, report.md and the docs page's table.

Rows are kept across runs: a run replaces the rows of the configs it did and keeps the
others, each row saying which run (command, time, CPU) produced it, so a long run can be
done in parts (``--only``, ``--resume``) and a run cut short keeps what it finished.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from benchmarks import machine
from benchmarks.zoo.rows import Row, table, zoo_configs
from d2_triton.cache import CHECKOUT

DOCS_PAGE = CHECKOUT / "docs" / "model-zoo.md"
TABLE_BEGIN, TABLE_END = "<!-- zoo table -->", "<!-- end zoo table -->"


class ZooSummary:
    """The rows so far under ``out``, with this run's description added to the runs."""

    def __init__(self, out: Path, command: str):
        self.out = out
        self.runs, self.rows = earlier(out / "summary.json")
        self.run_index = len(self.runs)
        self.runs.append(
            {
                "when": time.strftime("%Y-%m-%d %H:%M"),
                "machine": machine.description(),
                "cpu_flags": machine.cpu_flags(),
                "cpu_class": machine.cpu_class(),
                "command": command,
            }
        )

    def record(self, rows: list[Row]) -> None:
        """Put ``rows`` in (replacing earlier rows of their configs) and write everything."""
        for row in rows:
            self.rows[row.config] = row.as_dict() | {"run": self.run_index}
        self.write()

    def ordered(self) -> list[Row]:
        """The rows, in the zoo's order of configs."""
        return [Row.from_dict(self.rows[c]) for c in zoo_configs() if c in self.rows]

    def counts(self) -> dict[str, int]:
        """How many rows have each outcome."""
        return Row.counts(self.ordered())

    def write(self) -> None:
        """summary.json and report.md; the docs page's table once every config has a row."""
        self.out.mkdir(parents=True, exist_ok=True)
        rows = self.ordered()
        summary = {
            "runs": self.runs,
            "counts": Row.counts(rows),
            "rows": [self.rows[row.config] for row in rows],
        }
        (self.out / "summary.json").write_text(json.dumps(summary, indent=2))
        text = table(rows)
        commands = "\n".join(
            f"- run {i}, {r['when']}: `{r['command']}`" for i, r in enumerate(self.runs)
        )
        (self.out / "report.md").write_text(f"# Model-zoo coverage\n\n{commands}\n\n{text}")
        if len(rows) == len(zoo_configs()):
            write_docs_table(text)


def earlier(path: Path) -> tuple[list[dict], dict[str, dict]]:
    """An earlier summary's runs and rows by config (none if there is no summary)."""
    if not path.is_file():
        return [], {}
    summary = json.loads(path.read_text())
    return summary["runs"], {row["config"]: row for row in summary["rows"]}


def write_docs_table(text: str) -> None:
    """``text`` into the docs page, between its markers."""
    page = DOCS_PAGE.read_text()
    if TABLE_BEGIN in page and TABLE_END in page:
        head, rest = page.split(TABLE_BEGIN, 1)
        tail = rest.split(TABLE_END, 1)[1]
        DOCS_PAGE.write_text(f"{head}{TABLE_BEGIN}\n{text}\n{TABLE_END}{tail}")
