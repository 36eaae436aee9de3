"""Prometheus' text format read back, for the tests of the gateway's /metrics."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def metric_samples(text: str) -> dict[tuple, float]:
    """Every sample by (name, *sorted (label, value) pairs)."""
    return {
        (sample.name, *sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
