"""The API documentation pages in real Chromium: Swagger UI (``/api/docs/``) and ReDoc (``/api/redoc/``) come from
our own static files (drf-spectacular-sidecar), render every operation of ``/api/schema/``, request nothing from
another site (so they work offline) and run under the site's CSP without a violation (but ReDoc's logo, below)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.e2e.e2e_helpers import new_page

pytestmark = pytest.mark.e2e

# Every CSP violation the page reports, from the moment the document starts (an init script is not page script,
# so the CSP does not stop it).
RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(`${e.effectiveDirective} blocked ${e.blockedURI || "inline"} (${e.sourceFile}:${e.lineNumber})`);
});
"""


def schema_operations() -> int:
    """How many operations /api/schema/ has (the same generator the view uses; test_schema_fuzz.py runs each)."""
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    return sum(1 for item in schema["paths"].values() for op in item.values() if isinstance(op, dict))


# ReDoc's side menu always renders the "API docs by Redocly" logo from its CDN (hard-coded in the bundle, no
# option turns it off): the CSP refuses it (img-src 'self') and ReDoc hides the image. The one refusal expected.
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


def _docs_page(browser: Any, contexts: list[Any], stack: Any) -> tuple[Any, list[str]]:
    page = new_page(browser, contexts, stack)
    page.add_init_script(RECORD_VIOLATIONS)
    origin = urlsplit(stack.base_url).netloc
    elsewhere: list[str] = []
    page.on("request", lambda req: None if urlsplit(req.url).netloc in {origin, ""} else elsewhere.append(req.url))
    return page, elsewhere


def _assert_clean(page: Any, elsewhere: list[str], *, refused: str = "") -> None:
    """No CSP violation (but the ``refused`` URL's), none in the console, no request to another site."""
    violations = page.evaluate("() => window.__cspViolations")
    assert [v for v in violations if not (refused and v.startswith(f"img-src blocked {refused} "))] == [], violations
    csp_console = [line for line in page.console_lines if "Content Security Policy" in line]
    assert [line for line in csp_console if not (refused and refused in line)] == [], csp_console
    assert [url for url in elsewhere if url != refused] == [], elsewhere  # nothing from a CDN or a font service


def test_swagger_ui_shows_every_operation_from_our_static_files(browser: Any, contexts: list[Any], stack: Any) -> None:
    page, elsewhere = _docs_page(browser, contexts, stack)
    response = page.goto("/api/docs/")
    assert response is not None and response.status == 200
    assert "script-src 'self'" in response.headers["content-security-policy"]
    operations = schema_operations()
    page.wait_for_function(f"() => document.querySelectorAll('.opblock').length >= {operations}")
    paths = page.locator(".opblock-summary-path").all_inner_texts()
    assert len(paths) == operations, paths
    assert any(p.replace("\u200b", "") == "/api/v1/rooms/{room_id}/join" for p in paths), paths
    # Open one operation: its documented responses, the error statuses included, render.
    page.locator(".opblock-summary-path", has_text="/api/v1/rooms").first.click()
    page.wait_for_selector(".opblock.is-open .responses-table")
    codes = page.locator(".opblock.is-open .response-col_status").all_inner_texts()
    assert {"200", "401", "429"} <= {c.strip() for c in codes}, codes
    _assert_clean(page, elsewhere)


def test_redoc_shows_every_operation_from_our_static_files(browser: Any, contexts: list[Any], stack: Any) -> None:
    page, elsewhere = _docs_page(browser, contexts, stack)
    response = page.goto("/api/redoc/")
    assert response is not None and response.status == 200
    page.wait_for_selector('[id="operation/rooms_join"]')
    operations = page.evaluate("() => document.querySelectorAll('[id^=\"operation/\"]').length")
    assert operations == schema_operations()
    _assert_clean(page, elsewhere, refused=REDOC_LOGO)
