"""The OpenAPI document at /openapi.json names exactly the routes the daemon's app has."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from starlette.routing import Route
from test_daemon_app import API_TOKEN, NCS_SECRET, make_daemon, spec_doc, write_spec

from layoutsync.daemon.app import create_app
from layoutsync.daemon.openapi import OPENAPI_PATH, openapi_document
from layoutsync.emulator import EmulatorConfig
from layoutsync.emulator import create_app as create_emulator


@pytest.fixture
def app(tmp_path: Path) -> Any:
    specs = tmp_path / "specs"
    specs.mkdir()
    write_spec(specs, "lobby", spec_doc("lobby-1", "room"))
    daemon = make_daemon(specs, tmp_path / "state.db", create_emulator(EmulatorConfig()))
    return create_app(daemon, api_token=API_TOKEN, ncs_secret=NCS_SECRET, manage_lifecycle=False)


def _routes(app: Any) -> set[tuple[str, str]]:
    pairs = set()
    for route in app.routes:
        assert isinstance(route, Route), f"{route!r} is not a plain Route: document it by hand"
        for method in route.methods or ():
            if method != "HEAD":  # Starlette adds HEAD to every GET
                pairs.add((route.path, method.lower()))
    return pairs


def _documented(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {(path, method) for path, ops in document["paths"].items() for method in ops}


def test_every_route_is_documented_and_nothing_else(app: Any) -> None:
    assert _documented(openapi_document()) == _routes(app)


def test_every_operation_has_answers_and_a_security_rule() -> None:
    document = openapi_document()
    for path, ops in document["paths"].items():
        for method, op in ops.items():
            assert op["summary"] and op["responses"], (path, method)
            assert op["security"] == (
                [] if not path.startswith("/v1/sessions") else [{"bearer": []}]
            )
            params = {p["name"] for p in op.get("parameters", ()) if p["in"] == "path"}
            assert params == {part[1:-1] for part in path.split("/") if part.startswith("{")}


def test_the_document_is_valid_json_schema_where_it_holds_schemas() -> None:
    document = openapi_document()
    for ops in document["paths"].values():
        for op in ops.values():
            for answer in op["responses"].values():
                for media in answer.get("content", {}).values():
                    schema = media.get("schema")
                    if schema and "$ref" not in schema:
                        jsonschema.Draft202012Validator.check_schema(schema)


@pytest.mark.anyio
async def test_served_without_a_token(app: Any) -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://daemon.test"
    ) as client:
        response = await client.get(OPENAPI_PATH)
    assert response.status_code == 200
    served = response.json()
    assert served["openapi"].startswith("3.1")
    assert served["paths"].keys() == openapi_document()["paths"].keys()
    assert "webhooks/agora" in str(served["paths"].keys())
