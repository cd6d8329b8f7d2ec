"""Swagger UI and ReDoc for ``/api/schema/``, served from drf-spectacular-sidecar's static files.

They work without internet and under the site's CSP: Swagger UI through the split view (its start script
is a file, not inline); both get ``style-src 'unsafe-inline'`` (Swagger UI and ReDoc style elements at run
time) and ReDoc ``worker-src blob:`` (it starts its search worker from a blob) on these pages only. ReDoc's
page is drf-spectacular's without its Google Fonts links (``templates/api_docs/redoc.html``).
Tested in a browser: ``tests/e2e/test_api_docs.py``.
"""

from __future__ import annotations

from csp.decorators import csp_update
from drf_spectacular.views import SpectacularRedocView, SpectacularSwaggerSplitView

swagger_view = csp_update({"style-src": ["'unsafe-inline'"]})(
    SpectacularSwaggerSplitView.as_view(url_name="api-schema")
)
redoc_view = csp_update({"style-src": ["'unsafe-inline'"], "worker-src": ["blob:"]})(
    SpectacularRedocView.as_view(url_name="api-schema", template_name="api_docs/redoc.html")
)
