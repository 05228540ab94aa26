"""Property-based fuzz of the whole HTTP API from its own OpenAPI document (schemathesis):
whatever a client sends, the server answers without a 5xx and stays up."""

from __future__ import annotations

import httpx
import schemathesis
from hypothesis import HealthCheck, given, settings

from deepline.serve.server import BackgroundServer


def test_no_input_makes_the_server_fail(server: BackgroundServer) -> None:
    schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
    checked = []
    for result in schema.get_all_operations():
        operation = result.ok()
        valid = operation.as_strategy(schemathesis.GenerationMode.POSITIVE)
        invalid = operation.as_strategy(schemathesis.GenerationMode.NEGATIVE)

        @given(case=valid | invalid)
        @settings(
            max_examples=25,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def no_server_error(case: schemathesis.Case) -> None:
            response = case.call(timeout=30)
            assert response.status_code < 500, (case.method, case.formatted_path, response.text)
            if response.status_code >= 400 and "json" in response.headers.get("content-type", ""):
                assert "error" in response.json()  # every refusal names its reason

        no_server_error()
        checked.append(f"{operation.method.upper()} {operation.path}")
    assert "POST /predict/{name}" in checked and len(checked) >= 5
    assert httpx.get(server.url + "/models").status_code == 200
