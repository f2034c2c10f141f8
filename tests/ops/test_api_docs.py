"""/docs and /redoc load everything from AINS itself: they work on a machine with no network."""

import json
import re
from pathlib import Path

import pytest


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_the_page_loads_nothing_from_outside(client, page):
    response = await client.get(page)
    assert response.status_code == 200
    assert not re.findall(r"""(?:src|href)=["']?(?:https?:)?//""", response.text)


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_every_asset_the_page_names_is_served(client, page):
    html = (await client.get(page)).text
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html) + re.findall(r"""url: ?['"]([^'"]+)['"]""", html)
    assert assets
    for asset in assets:
        response = await client.get(asset)
        assert response.status_code == 200, asset
        assert len(response.content) > 0, asset


async def test_the_scripts_are_the_real_bundles(client):
    swagger = await client.get("/api-docs-assets/swagger-ui-bundle.js")
    redoc = await client.get("/api-docs-assets/redoc.standalone.js")
    assert b"SwaggerUIBundle" in swagger.content
    assert b"Redoc" in redoc.content


@pytest.fixture
async def openapi(client):
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    return response.json()


def _operations(spec):
    return [(method, path, op) for path, ops in spec["paths"].items() for method, op in ops.items()]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_every_operation_is_described(openapi):
    undescribed = [f"{m.upper()} {p}" for m, p, op in _operations(openapi) if not op.get("description")]
    assert not undescribed


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_every_operation_declares_its_error_answers(openapi):
    for method, path, operation in _operations(openapi):
        answers = operation["responses"]
        assert {"422", "503"} <= set(answers), f"{method} {path}"
        if operation.get("x-ains-access") != "public":
            assert {"401", "403", "429"} <= set(answers), f"{method} {path}"
        assert answers["503"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_the_document_stands_on_its_own(openapi):
    # Users have only what AINS ships: no reference to the internal contract's section numbers.
    assert "SPEC" not in json.dumps(openapi)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_the_reference_page_lists_every_operation(openapi):
    reference = (Path(__file__).parents[2] / "docs" / "api.md").read_text()
    missing = [
        f"{method.upper()} {path}"
        for method, path, _ in _operations(openapi)
        if f"| {method.upper()} | `{path}` |" not in reference
    ]
    assert not missing, "docs/api.md lacks: " + ", ".join(missing)
