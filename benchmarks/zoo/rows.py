"""The model-zoo coverage table's rows: which configs, what each one is, and the table.

A row says what the config is (``kind``): a ``detector`` (an image in, instances out:
every R-CNN, RetinaNet, FCOS, and the semantic and panoptic segmenters), or something the
ensemble cannot serve from an image alone, which the row names (a base config, a proposal
network, a classifier, a model needing precomputed proposals or mmdetection).  A detector
that cannot be served says why in ``reason``; the others are exported, served and compared
(``benchmarks.zoo.run``).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from d2_triton.names import PIPELINE_NAME_PATTERN

DETECTOR = "detector"
CPP_OPS = (
    "needs Detectron2's C++ ops ({what}), which the sources-only install lacks; a full "
    "Detectron2 install (built from GitHub) has them"
)
CUDA_DEFORM = (
    "modulated or grouped deformable convolution: Detectron2 runs it only with its CUDA op "
    "(on a CPU it raises NotImplementedError, full install or not), so this CPU-only "
    "machine has no reference for it"
)


@dataclass
class Row:
    """One config of the zoo and what became of it."""

    config: str
    system: str  # yaml or lazy
    kind: str = DETECTOR
    meta_architecture: str = ""
    mode: str = ""  # staged or exact, once exported
    reason: str | None = None  # why it is not served
    parity: dict | None = None  # d2_triton.parity.detections.ParityFigures.summary()
    problems: list[str] | None = None
    export_s: float | None = None
    served_ms: float | None = None
    eager_ms: float | None = None
    same_as: str | None = None  # served as this config: one model at test time
    staged_refused: str | None = None  # why the staged export was refused; served --exact

    @property
    def name(self) -> str:
        """Its pipeline's name: the config path in lower case, '-' for anything else.

        A LazyConfig's ends in ``-py`` (the zoo has a yaml and a .py of some models); a
        name over 63 characters ends in a hash of the path instead.
        """
        stem, suffix = self.config.lower().rsplit(".", 1)
        slug = re.sub(r"[^a-z0-9]+", "-", stem).strip("-") + ("-py" if suffix == "py" else "")
        if len(slug) > 63:
            digest = hashlib.sha256(self.config.encode()).hexdigest()[:8]
            slug = f"{slug[:54].rstrip('-')}-{digest}"
        assert PIPELINE_NAME_PATTERN.fullmatch(slug), slug
        return slug

    def fail(self, reason: str) -> None:
        """Not served, because of ``reason``."""
        self.reason = reason

    def take_from(self, original: Row) -> None:
        """Report ``original``'s export and figures as this config's (``zoo_twins``)."""
        self.same_as = original.config
        self.mode, self.reason = original.mode, original.reason
        self.staged_refused = original.staged_refused
        self.parity, self.problems = original.parity, original.problems
        self.export_s = self.served_ms = self.eager_ms = None

    def record(self, figures) -> None:
        """The comparison's figures (``ParityFigures``) and its first problems."""
        self.parity = figures.summary()
        self.problems = figures.problems[:5]

    @property
    def outcome(self) -> str:
        """What became of the config, in one of five words.

        ``parity``, ``differs``, ``nothing compared`` (served, no instances nor segments on
        either photo), ``not served`` (a detector) or ``not a detector``.
        """
        if self.kind != DETECTOR:
            return "not a detector"
        if self.reason is not None or self.parity is None:
            return "not served"
        if self.problems:
            return "differs"
        compared = self.parity.get("instances", 0) + self.parity.get("segments", 0)
        return "parity" if compared else "nothing compared"

    def figures_line(self) -> str:
        """The parity figures, or the first problems, in a line."""
        if self.problems:
            return "; ".join(self.problems)
        figures = self.parity or {}
        count = figures.get("instances", 0)
        box, score = figures.get("max_box_error_px", 0), figures.get("max_score_error", 0)
        line = f"{count} instances, boxes within {box:.3f} px, scores {score:.1e}"
        if figures.get("min_mask_iou") is not None:
            line += f", masks IoU >= {figures['min_mask_iou']:.3f}"
            if figures.get("masks_given_box"):
                given = figures.get("min_mask_iou_given_box") or 1.0
                line += f" ({figures['masks_given_box']} >= {given:.3f} on the served box)"
        if figures.get("segments"):
            agreement = figures.get("min_segment_agreement") or 1.0
            line += f"; {figures['segments']} segments, {agreement:.4%} of pixels agree"
        return line

    def as_dict(self) -> dict:
        """The row as JSON, with its outcome."""
        return asdict(self) | {"outcome": self.outcome, "name": self.name}

    @classmethod
    def from_dict(cls, data: dict) -> Row:
        """A row read back from ``as_dict``'s JSON (the derived keys are dropped)."""
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})

    @staticmethod
    def counts(rows: list[Row]) -> dict[str, int]:
        """How many rows have each outcome, and how many are detectors."""
        counts = {"rows": len(rows), "detectors": sum(r.kind == DETECTOR for r in rows)}
        for row in rows:
            counts[row.outcome] = counts.get(row.outcome, 0) + 1
        return counts


def configs_root() -> Path:
    """Detectron2's ``model_zoo/configs`` folder (the installed sources)."""
    from detectron2 import model_zoo

    return Path(model_zoo.__file__).parent / "configs"


def zoo_configs() -> list[str]:
    """Every yaml and LazyConfig file of the model zoo, but the fragments under ``common/``."""
    root = configs_root()
    return sorted(
        path.relative_to(root).as_posix()
        for path in root.rglob("*")
        if path.suffix in (".yaml", ".py")
        and path.name != "__init__.py"
        and path.relative_to(root).parts[0] != "common"
    )


def classify(config: str) -> Row:
    """What ``config`` is and, for what cannot be served, why.

    Its config is read; no model is built.
    """
    from export_tools.detector_config import load_config
    from export_tools.errors import ConfigError

    row = Row(config, "lazy" if config.endswith(".py") else "yaml")
    if Path(config).name.startswith("Base-"):
        row.kind = "base config"
        row.fail("a base other configs extend (_BASE_), not a model of its own")
        return row
    try:
        loaded = load_config(config, [], None)
    except ConfigError as error:
        return _unreadable(row, str(error))
    row.meta_architecture = loaded.meta_architecture
    if not loaded.lazy:
        _yaml_limits(row, loaded.node)
    return _architecture_limits(row)


def _unreadable(row: Row, message: str) -> Row:
    if "dataloader.test" in message or "not a Detectron2 LazyConfig model" in message:
        row.kind = "classifier"
        row.fail("an ImageNet classifier's config, not a detector")
    else:
        row.fail(message)
    return row


def _yaml_limits(row: Row, cfg) -> None:
    if cfg.MODEL.LOAD_PROPOSALS:
        row.kind = "needs proposals"
        row.fail("reads precomputed proposals (DATASETS.PROPOSAL_FILES_TEST), not an image")
    elif any(cfg.MODEL.RESNETS.DEFORM_ON_PER_STAGE) and (
        cfg.MODEL.RESNETS.DEFORM_MODULATED or cfg.MODEL.RESNETS.DEFORM_NUM_GROUPS != 1
    ):  # Detectron2 runs plain DCNv1 on the CPU with torchvision's op; these need its CUDA op
        row.fail(CUDA_DEFORM)
    elif "RRPN" in cfg.MODEL.PROPOSAL_GENERATOR.NAME or "Rotated" in cfg.MODEL.ROI_HEADS.NAME:
        row.fail(CPP_OPS.format(what="rotated boxes"))


def _architecture_limits(row: Row) -> Row:
    meta = row.meta_architecture
    if row.reason is not None:
        return row
    if meta == "MMDetDetector":
        row.kind = "mmdetection model"
        row.fail("needs mmdetection (mmdet), which is not installed with Detectron2")
    elif meta == "ProposalNetwork":
        row.kind = "proposal network"
        row.fail("an RPN alone: it gives proposals, not detections")
    return row


def table(rows: list[Row]) -> str:
    """The markdown table of ``rows``, with the counts above it."""
    counts = Row.counts(rows)
    detectors = counts["detectors"]
    with_parity = counts.get("parity", 0)
    share = 100 * with_parity / detectors if detectors else 0.0
    lines = [
        f"{counts['rows']} configs; {detectors} detectors, of which {with_parity} serve with "
        f"parity ({share:.0f} %), {counts.get('differs', 0)} differ, "
        f"{counts.get('not served', 0)} are not served (the row says why); "
        f"{counts.get('not a detector', 0)} are not detectors.",
        "",
        "| config | meta-architecture | mode | outcome | parity / reason | export s "
        "| served ms | eager ms | speed-up |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        detail = row.reason if row.reason is not None else row.figures_line()
        if row.staged_refused:
            detail = f"staged export refused ({row.staged_refused}), exported `--exact`: {detail}"
        if row.same_as:
            detail = f"as `{row.same_as}` (the same model at test time): {detail}"
        speedup = f"{row.eager_ms / row.served_ms:.2f}x" if row.served_ms and row.eager_ms else ""
        cells = [
            f"`{row.config}`",
            row.meta_architecture or row.kind,
            row.mode,
            row.outcome,
            detail.replace("|", "/"),
            _number(row.export_s),
            _number(row.served_ms),
            _number(row.eager_ms),
            speedup,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.0f}"
