"""Configs of the model zoo that are one model at test time: served once, reported for each.

The zoo ships many configs that differ only in how they train: ``mask_rcnn_R_50_FPN_1x``
and ``_3x`` (the schedule), the LSJ baselines at 100, 200 and 400 epochs, the
``quick_schedules`` copies of a model with a checkpoint and expected AP to test against.
Their exports are the same model: the coverage run exports with ``--weights random`` from a
fixed seed, so the same model config gives the same weights, the same export and the same
answers.  :func:`inference_key` says what a config's export depends on; the run serves the
first config of each key and the others take its figures, with ``same_as`` naming it.
"""

from __future__ import annotations

import hashlib
import json


def inference_key(config: str) -> str | None:
    """A digest of what the export of ``config`` depends on, or None if it cannot be read.

    yaml: the whole ``MODEL`` node but ``WEIGHTS``, the test-time input (format, resize),
    top-k and test-time augmentation, and the names the test dataset gives the classes and
    keypoints.  LazyConfig: the ``model`` node (a function in it by its name, file, line,
    code and captured values), the same input and names.  Two configs of different systems
    never share a key (their predictors differ).
    """
    from export_tools.detector_config import load_config
    from export_tools.errors import ConfigError

    try:
        loaded = load_config(config, [], None)
    except ConfigError:
        return None
    facts = {
        "system": "lazy" if loaded.lazy else "yaml",
        "input": [loaded.input_format, loaded.min_size_test, loaded.max_size_test],
        "classes": [_class_names(name) for name in loaded.test_datasets],
    }
    if loaded.lazy:
        facts["model"] = _lazy_model(loaded.node.model)
    else:
        cfg = loaded.node.clone()
        cfg.defrost()
        cfg.MODEL.WEIGHTS = ""
        facts["model"] = cfg.MODEL.dump()
        facts["test"] = [cfg.TEST.DETECTIONS_PER_IMAGE, cfg.TEST.AUG.ENABLED]
    text = json.dumps(facts, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _class_names(dataset: str) -> list:
    """What the served labels come from: the dataset's class and keypoint names."""
    from detectron2.data import MetadataCatalog

    metadata = MetadataCatalog.get(dataset)
    return [metadata.get(key) for key in ("thing_classes", "stuff_classes", "keypoint_names")]


def _lazy_model(node) -> str:
    """The LazyConfig model node as text: classes and functions by name and source."""
    from omegaconf import OmegaConf

    def named(value):
        code = getattr(value, "__code__", None)
        if code is None:  # a class, or an object written by its repr
            return (
                f"{value.__module__}.{value.__qualname__}"
                if isinstance(value, type)
                else repr(value)
            )
        name = value.__qualname__  # its module's name is the config loader's, per load
        cells = [cell.cell_contents for cell in value.__closure__ or ()]
        body = hashlib.sha256(code.co_code + repr(code.co_consts).encode()).hexdigest()
        return (
            f"{name} {code.co_filename}:{code.co_firstlineno} {body} {value.__defaults__} {cells}"
        )

    container = OmegaConf.to_container(node, resolve=True)
    return json.dumps(container, sort_keys=True, default=named)


def find_twins(configs: list[str], served: dict[str, str]) -> dict[str, str]:
    """``config -> the config it is served as``, for each config whose key another has.

    ``served``: key -> config, of the configs already served (an earlier run's rows);
    within ``configs`` the first of each key is served, the later ones are its twins.
    """
    owners = dict(served)
    twins = {}
    for config in configs:
        key = inference_key(config)
        if key is None:
            continue
        if key in owners:
            twins[config] = owners[key]
        else:
            owners[key] = config
    return twins


def served_keys(summary) -> dict[str, str]:
    """Test-time key -> config, of the rows an earlier run served itself."""
    served = [row for row in summary.ordered() if row.mode and not row.same_as]
    return {inference_key(row.config): row.config for row in served}


def refresh_twins(summary, twins: dict[str, str] | None = None) -> None:
    """Each twin's row from its original's row as it is now.

    ``twins`` adds new ones: a row is made for a twin the summary does not have yet.
    """
    from benchmarks.zoo.rows import classify

    rows = {row.config: row for row in summary.ordered()}
    pairs = {row.config: row.same_as for row in rows.values() if row.same_as}
    pairs |= twins or {}
    refreshed = []
    for config, original in pairs.items():
        if original in rows:
            twin = rows.get(config) or classify(config)
            twin.take_from(rows[original])
            refreshed.append(twin)
    summary.record(refreshed)
