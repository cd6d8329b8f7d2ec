"""Property-based run of schemathesis over our own OpenAPI schema: no 500s,
responses conform to the documented shapes, bad input is rejected with a JSON error."""

from __future__ import annotations

import random

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from hypothesis import HealthCheck, settings

from rooms import services

# Loading the schema needs no database (pytest-django has set Django up by now).
schema = schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application())


@pytest.fixture
def keep_db_open():
    # Django's handler closes DB connections after each request; the test
    # database lives in this test's transaction, so keep it open.
    from django.core import signals
    from django.db import close_old_connections

    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def fuzz_identity(db, keep_db_open, django_user_model):
    from rest_framework_simplejwt.tokens import RefreshToken

    user = django_user_model.objects.create_user("fuzzer", password="fuzz-password-123")
    room = services.room_create(host=user, name="fuzz room")
    return {"token": str(RefreshToken.for_user(user).access_token), "room_id": room.public_id}


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_schema(case, fuzz_identity):
    if "room_id" in (case.path_parameters or {}) and random.random() < 0.7:
        case.path_parameters["room_id"] = fuzz_identity["room_id"]
    headers = {"Authorization": f"Bearer {fuzz_identity['token']}"} if random.random() < 0.8 else {}
    response = case.call(headers=headers)
    assert response.status_code < 500, (case.method, case.path, response.text[:500])
    if response.status_code >= 400:
        body = response.json()
        assert set(body["error"]) == {"code", "message", "details"}, body
    case.validate_response(response, excluded_checks=[schemathesis.checks.positive_data_acceptance])
