"""Property test of the REST gateway against its own OpenAPI spec (Schemathesis).

Schemathesis turns /openapi.json into Hypothesis strategies (bodies, query options,
methods) and checks every response of the real gateway, backed by the real Triton server:
no 5xx while Triton is up, status codes, content types and bodies as the spec declares.
One check is left out: "schema-valid data is accepted".  An image upload is any bytes to
the schema (``format: binary``), and random bytes are rightly a 400; every other check,
including that invalid data is rejected, applies.  The operations are driven with
``as_strategy`` rather than Schemathesis' pytest plugin, whose lazy loader reads a pytest
attribute that pytest 9 no longer has.
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

EXAMPLES_PER_OPERATION = 20


def examples_checked(operation, base_url: str) -> int:
    """Run the property test of one operation; returns how many requests it made."""
    checked = []

    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        database=None,
    )
    def conforms(case) -> None:
        case.call_and_validate(
            base_url=base_url, timeout=180, excluded_checks=[positive_data_acceptance]
        )
        checked.append(case)

    conforms()
    return len(checked)


def test_gateway_conforms_to_its_openapi_spec(gateway):
    schema = schemathesis.openapi.from_url(f"{gateway.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    checked = {op.label: examples_checked(op, gateway.url) for op in operations}
    print(checked)
    assert set(checked) == {
        "POST /v1/detect",
        "POST /v1/detect/render",
        "GET /health",
        "GET /v1/models",
        "GET /metrics",
    }
    assert all(count >= 1 for count in checked.values()), checked
