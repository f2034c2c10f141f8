"""The API's own documentation: /docs (Swagger UI) and /redoc drawn from assets installed with the package,
so they work offline, and the error answers every operation may give, declared in /openapi.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from ains.auth.dependencies import public

ASSETS = Path(__file__).parent / "static" / "api-docs"
ASSETS_PATH = "/api-docs-assets"

router = APIRouter(include_in_schema=False)


@router.get("/docs", dependencies=[public()])
async def swagger_ui() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="AINS API",
        swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS_PATH}/favicon-32x32.png",
    )


@router.get("/redoc", dependencies=[public()])
async def redoc() -> HTMLResponse:
    return get_redoc_html(
        openapi_url="/openapi.json",
        title="AINS API",
        redoc_js_url=f"{ASSETS_PATH}/redoc.standalone.js",
        redoc_favicon_url=f"{ASSETS_PATH}/favicon-32x32.png",
        with_google_fonts=False,
    )


def install_api_docs(app: FastAPI) -> None:
    """Serve the two documentation pages in place of FastAPI's, which load their scripts from a CDN."""
    app.include_router(router)
    app.mount(ASSETS_PATH, StaticFiles(directory=ASSETS), name="api-docs-assets")
    declare_error_answers(app)


ERROR_SCHEMA = {
    "title": "Error",
    "type": "object",
    "required": ["detail"],
    "properties": {
        "detail": {
            "description": "A message, or for 422 a list of `{loc, msg, type}` whose `loc` names the field",
            "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}],
        }
    },
    "example": {"detail": "Task task_01J… is COMPLETED; it cannot become CANCELLED"},
}
ERRORS = {
    "400": "A cursor AINS did not issue",
    "401": "No key, or an unknown, revoked or expired one",
    "403": "The key may not do this (a missing scope is named)",
    "404": "Nothing there, or nothing the caller may see",
    "409": "Not allowed in the current state (a final task, a stale attempt, a duplicate)",
    "413": "A body or a JSON field over its size limit",
    "422": "The request is not valid; `loc` names the field",
    "429": "Over the key's rate limit (see `Retry-After`) or the client's cap on unfinished tasks",
    "503": "The database cannot be reached",
}


def _errors_for(path: str, method: str, operation: dict[str, Any]) -> list[str]:
    codes = ["422", "503"]
    if operation.get("x-ains-access") != "public":
        codes += ["401", "403", "429"]
    if "{" in path:
        codes.append("404")
    if method in ("post", "patch", "put", "delete"):
        codes += ["409", "413"]
    if any(p.get("name") == "cursor" for p in operation.get("parameters", [])):
        codes.append("400")
    return sorted(codes)


def declare_error_answers(app: FastAPI) -> None:
    """Every operation lists the error answers it may give, each with the one error shape."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = original()
        schema.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
        reference = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
        for path, operations in schema.get("paths", {}).items():
            for method, operation in operations.items():
                answers = operation.setdefault("responses", {})
                for code in _errors_for(path, method, operation):
                    answer = answers.setdefault(code, {"description": ERRORS[code]})
                    # FastAPI's own 422 points at its HTTPValidationError; AINS answers every error in one shape.
                    answer["content"] = reference
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
