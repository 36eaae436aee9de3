"""Class-id -> name mapping, read from a JSON file.

Two JSON shapes are accepted because both are common in the wild:

* a list of names, where the index is the class id (Detectron2's ``thing_classes``), or
* an object ``{"<id>": "<name>", ...}``, which also allows sparse ids.

The exporter writes the object form, keyed by contiguous class id, from the exported
config's dataset metadata.  Ids without a name map to ``"class_<id>"`` so a partial label
file never breaks a response.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from d2_triton.errors import LabelMapFormatError, UnknownClassError


class LabelMap:
    """Immutable id -> name lookup."""

    def __init__(self, names: Mapping[int, str]):
        for class_id, name in names.items():
            if not isinstance(class_id, int) or class_id < 0:
                raise LabelMapFormatError(
                    f"label ids must be non-negative integers, got {class_id!r}"
                )
            if not isinstance(name, str) or not name:
                raise LabelMapFormatError(f"label for id {class_id} must be a non-empty string")
        self._names = dict(names)
        self._ids_by_name = {name: class_id for class_id, name in self._names.items()}

    @classmethod
    def from_names(cls, names: Sequence[str]) -> LabelMap:
        """Ids 0..N-1 named in order."""
        return cls(dict(enumerate(names)))

    @classmethod
    def from_json(cls, document: object) -> LabelMap:
        """From a JSON list of names or a ``{"id": "name"}`` object; ValueError if malformed."""
        if isinstance(document, list):
            return cls.from_names(document)
        if isinstance(document, dict):
            try:
                return cls({int(key): value for key, value in document.items()})
            except ValueError as error:
                raise LabelMapFormatError(f"label map keys must be integer ids: {error}") from None
        raise LabelMapFormatError(
            "a label map must be a JSON list of names or an object of id: name"
        )

    @classmethod
    def from_file(cls, path: str | Path) -> LabelMap:
        """From a label-map JSON file."""
        with open(path, encoding="utf-8") as handle:
            try:
                return cls.from_json(json.load(handle))
            except ValueError as error:
                raise LabelMapFormatError(f"{path}: {error}") from None

    def to_json(self) -> dict[str, str]:
        """As the ``{"id": "name"}`` JSON object."""
        return {str(class_id): name for class_id, name in sorted(self._names.items())}

    def write(self, path: str | Path) -> None:
        """Write the label-map JSON file."""
        Path(path).write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")

    def name(self, class_id: int) -> str:
        """The name of ``class_id``."""
        return self._names.get(int(class_id), f"class_{int(class_id)}")

    def names_for(self, class_ids: Iterable[int]) -> np.ndarray:
        """Names as a numpy object array of UTF-8 bytes, the layout Triton BYTES tensors use."""
        return np.array([self.name(i).encode("utf-8") for i in class_ids], dtype=np.object_)

    def resolve(self, label_or_id: str) -> int:
        """A class given by id ("17") or by name ("cat") -> its id."""
        text = label_or_id.strip()
        if text.lstrip("-").isdigit():
            return int(text)
        if text in self._ids_by_name:
            return self._ids_by_name[text]
        raise UnknownClassError(text)

    def __len__(self) -> int:
        return len(self._names)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LabelMap) and self._names == other._names

    def __repr__(self) -> str:
        return f"LabelMap({len(self)} classes)"
