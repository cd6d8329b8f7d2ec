"""Property-based runs of schemathesis over our own OpenAPI schema: no 500s, responses conform to the documented
shapes (every status we answer is documented), bad input is rejected with a JSON error.

Two runs: each operation alone (``test_api_conforms_to_schema``), and sequences that follow the schema's OpenAPI
links (``test_api_sequences_follow_the_links``: register → token → refresh, create room → join → chat history →
allow rejoin, room → recordings → shares …), where schemathesis' stateful checks also run (a resource a link
points to exists, a deleted one is gone, authentication is enforced). Both are bounded (examples and steps) so
they fit in ``make test``; neither depends on another test's data.
"""

from __future__ import annotations

import random
import time
import urllib.request
import uuid
from typing import Any

import hypothesis
import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from django.db import transaction
from hypothesis import HealthCheck

from recordings.models import Recording
from rooms import services

# Loading the schema needs no database (pytest-django has set Django up by now).
schema = schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application())
# Sequences follow the links the schema documents (conference/schema.py LINKS), not links schemathesis guesses.
schema.config.phases.stateful.inference.algorithms = []

# Schema-valid input can still be refused for reasons a schema cannot say (no such room, not the host, the room
# ended): every such refusal is a documented 4xx, which the other checks verify. So "positive data must be
# accepted" is the one check we leave out.
EXCLUDED_CHECKS = [schemathesis.checks.positive_data_acceptance]
FUZZER = "fuzzer"


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


@pytest.fixture(scope="module")
def media_server_url(tmp_path_factory):
    """A real media server (development secret, events to a closed port) so that recordings really start and
    stop; module-wide, as starting one takes a second."""
    from django.conf import settings

    from tests.procs import MediaServer

    spool = tmp_path_factory.mktemp("spool")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RECORDINGS_SPOOL_DIR", str(spool))
        server = MediaServer(
            "fuzz", redis_url="", prefix="", secret=settings.MEDIA_SECRET, log=spool.parent / "media.log"
        )
    url = f"http://127.0.0.1:{server.port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(
                    urllib.request.Request(
                        f"{url}/v1/health", headers={"Authorization": f"Bearer {settings.MEDIA_SECRET}"}
                    ),
                    timeout=2,
                ):
                    break
            except OSError:
                assert server.proc.poll() is None, (spool.parent / "media.log").read_text()
                assert time.monotonic() < deadline, "media server did not answer /v1/health in 30 s"
                time.sleep(0.2)
        yield url
    finally:
        server.stop()


@pytest.fixture
def fuzz_identity(db, keep_db_open, django_user_model, media_server_url, settings):
    from rest_framework_simplejwt.tokens import RefreshToken

    settings.MEDIA_CONTROL_URL = media_server_url
    settings.MEDIA_REDIS_URL = ""
    user = django_user_model.objects.create_user(FUZZER, password="fuzz-password-123")
    django_user_model.objects.create_user("fuzz-friend", password="fuzz-password-123")
    FuzzerAuth.token = str(RefreshToken.for_user(user).access_token)
    yield {"user": user, **seed_room(user)}
    FuzzerAuth.token = None


def seed_room(user: Any) -> dict[str, str]:
    """A room of the fuzzer's with a (failed) recording: what ``rooms_list`` and ``rooms_recordings`` link from."""
    room = services.room_create(host=user, name="fuzz room")
    recording = Recording.objects.create(room=room, started_by=user, status=Recording.Status.FAILED)
    return {"room_id": room.public_id, "recording_id": recording.public_id}


@schema.auth(refresh_interval=None)
class FuzzerAuth:
    """The fixture's signed-in user (``sometimes_as_guest`` takes it away again). Registered as schemathesis
    auth, so that its "authentication is enforced" check knows the token is real and can take it away again.
    ``token`` is set by the ``fuzz_identity`` fixture for the length of one test (every test has its own
    database, hence its own user)."""

    token: str | None = None

    def get(self, case: Any, ctx: Any) -> str | None:
        return FuzzerAuth.token

    def set(self, case: Any, data: str, ctx: Any) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


def sometimes_as_guest(case: Any) -> None:
    """One request in five goes without the token (as a guest would)."""
    if random.random() < 0.2:
        case.headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}


def assert_json_error_and_no_500(case: Any, response: Any) -> None:
    assert response.status_code < 500 or response.status_code == 503, (case.method, case.path, response.text[:500])
    if response.status_code >= 400:
        body = response.json()
        assert set(body["error"]) == {"code", "message", "details"}, body


@schema.parametrize()
@hypothesis.settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_schema(case, fuzz_identity):
    for name in ("room_id", "recording_id"):
        if name in (case.path_parameters or {}) and random.random() < 0.7:
            case.path_parameters[name] = fuzz_identity[name]
    sometimes_as_guest(case)
    response = case.call()
    assert_json_error_and_no_500(case, response)
    case.validate_response(response, excluded_checks=EXCLUDED_CHECKS)


def test_schema_links_every_operation_that_needs_an_id():
    """The links reach every operation that needs an ID from an earlier answer, so the stateful run covers them."""
    from drf_spectacular.generators import SchemaGenerator

    raw = SchemaGenerator().get_schema(request=None, public=True)
    targets = {
        link["operationId"]
        for item in raw["paths"].values()
        for op in item.values()
        if isinstance(op, dict)
        for response in op.get("responses", {}).values()
        for link in response.get("links", {}).values()
    }
    with_ids = {
        op["operationId"]
        for path, item in raw["paths"].items()
        for op in item.values()
        if isinstance(op, dict) and "{" in path
    }
    assert with_ids <= targets, with_ids - targets


def test_api_sequences_follow_the_links(fuzz_identity, settings):
    class Sequences(schema.as_state_machine()):  # type: ignore[misc]
        """Each scenario starts from the same state: the fixture's data (a savepoint rolled back after it), a room
        of its own (new ID: nothing the media server kept from an earlier scenario applies) and fresh rate-limit
        counters. Hypothesis replays scenarios and needs the same answers to the same requests."""

        def setup(self) -> None:
            self.savepoint = transaction.savepoint()
            settings.RATELIMIT_CACHE_PREFIX = f"schema-fuzz-{uuid.uuid4().hex}:"
            seed_room(fuzz_identity["user"])

        def teardown(self) -> None:
            transaction.savepoint_rollback(self.savepoint)
            super().teardown()

        def before_call(self, case: Any) -> None:
            sometimes_as_guest(case)

        def validate_response(self, response: Any, case: Any, additional_checks: Any = None, **kwargs: Any) -> None:
            assert_json_error_and_no_500(case, response)
            case.validate_response(
                response, excluded_checks=EXCLUDED_CHECKS, transport_kwargs=kwargs or None, recorder=self.recorder
            )

    Sequences.run(
        settings=hypothesis.settings(
            max_examples=30, stateful_step_count=6, deadline=None, suppress_health_check=list(HealthCheck)
        )
    )
