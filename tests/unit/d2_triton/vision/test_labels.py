"""d2_triton.vision.labels: label maps from JSON, lookups, refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest

from d2_triton.vision.labels import LabelMap

LABELS = LabelMap.from_names(["person", "bicycle", "car", "dog"])


def test_label_map_json_forms(tmp_path):
    as_list = tmp_path / "list.json"
    as_list.write_text(json.dumps(["person", "bicycle"]))
    as_object = tmp_path / "object.json"
    as_object.write_text(json.dumps({"0": "person", "1": "bicycle"}))
    assert LabelMap.from_file(as_list) == LabelMap.from_file(as_object)
    round_trip = tmp_path / "written.json"
    LABELS.write(round_trip)
    assert LabelMap.from_file(round_trip) == LABELS


def test_label_lookup_and_unknown_ids():
    sparse = LabelMap({3: "cat", 17: "dog"})
    names = sparse.names_for(np.array([17, 3, 5]))
    assert names.dtype == np.object_
    assert list(names) == [b"dog", b"cat", b"class_5"]


@pytest.mark.parametrize("document", [{"x": "cat"}, {"0": ""}, {"-1": "cat"}, "cat", 3, {"0": 7}])
def test_malformed_label_maps_are_rejected(tmp_path, document):
    path = tmp_path / "labels.json"
    path.write_text(json.dumps(document))
    with pytest.raises(ValueError, match=r"labels\.json"):
        LabelMap.from_file(path)
