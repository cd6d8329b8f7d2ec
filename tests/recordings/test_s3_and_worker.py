"""Recordings on S3 (moto in server mode over HTTP) and through a real Celery worker on Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from django.db import connection
from moto.server import ThreadedMotoServer
from rec_helpers import free_port, write_two_party_spool

from recordings import services
from recordings.models import Recording
from rooms import services as room_services
from tests.conftest import redis_delete_prefix, redis_test_prefix, redis_test_url

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "conference-recordings"

pytestmark = pytest.mark.ffmpeg


@pytest.fixture
def s3(settings: Any) -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    creds = {"aws_access_key_id": "test", "aws_secret_access_key": "test", "region_name": "us-east-1"}
    boto3.client("s3", endpoint_url=endpoint, **creds).create_bucket(Bucket=BUCKET)
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": BUCKET,
                "endpoint_url": endpoint,
                "region_name": "us-east-1",
                "access_key": "test",
                "secret_key": "test",
                "querystring_auth": True,
                "querystring_expire": 120,
                "file_overwrite": False,
            },
        },
    }
    yield endpoint
    server.stop()


@pytest.mark.django_db
def test_recording_uploads_to_s3_and_downloads_through_a_presigned_url(
    s3, spool, user_factory, auth_client, eager, django_capture_on_commit_callbacks
):
    host = user_factory()
    room = room_services.room_create(host=host, name="s3")
    recording = Recording.objects.create(room=room, started_by=host, status=Recording.Status.RECORDING)
    write_two_party_spool(spool / recording.public_id, recording.public_id, room.public_id)
    with django_capture_on_commit_callbacks(execute=True):
        services.recording_media_stopped(recording_id=recording.public_id)
    recording.refresh_from_db()
    assert recording.status == "ready", recording.failure_reason

    client = boto3.client(
        "s3", endpoint_url=s3, aws_access_key_id="t", aws_secret_access_key="t", region_name="us-east-1"
    )
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket=BUCKET)["Contents"])
    assert keys == [f"recordings/{room.public_id}/{recording.public_id}.{ext}" for ext in ("jpg", "mp4")]
    assert not (spool / recording.public_id).exists()

    detail = auth_client(host).get(f"/api/v1/recordings/{recording.public_id}").json()
    url = detail["download_url"]
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    assert url.startswith(s3) and ("Signature" in query or "X-Amz-Signature" in query)
    expires = int(query["Expires"][0]) if "Expires" in query else time.time() + int(query["X-Amz-Expires"][0])
    assert time.time() < expires <= time.time() + 121
    assert detail["url_expires_in"] == 120
    with urllib.request.urlopen(url, timeout=10) as response:
        data = response.read()
        assert "attachment" in response.headers["Content-Disposition"]
    assert len(data) == recording.size_bytes and data[4:8] == b"ftyp"
    unsigned = url.split("?", 1)[0]
    with pytest.raises(urllib.error.HTTPError) as denied:
        urllib.request.urlopen(unsigned, timeout=10)
    assert denied.value.code == 403


@pytest.fixture
def redis_broker(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str]]:
    """Point this process's Celery producer at the test Redis database under a key prefix of its own
    (kombu's global_keyprefix; the worker gets the same as CELERY_KEY_PREFIX); its keys are deleted after."""
    from conference.celery import app

    url, prefix = redis_test_url(), redis_test_prefix("celery")
    monkeypatch.setattr(app.conf, "broker_url", url)
    options = app.conf.broker_transport_options
    app.conf.broker_transport_options = {"global_keyprefix": prefix}
    app._pool = None  # rebuild the connection pool for the new URL
    app.amqp._producer_pool = None
    yield url, prefix
    app.conf.broker_transport_options = options
    app._pool = None
    app.amqp._producer_pool = None
    redis_delete_prefix(prefix)


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_real_celery_worker_processes_a_recording_to_ready(redis_broker, spool, tmp_path, user_factory, settings):
    """`celery -A conference worker` on Redis, sharing the test database, takes the queued recording to ready."""
    host = user_factory()
    room = room_services.room_create(host=host, name="worker")
    recording = Recording.objects.create(room=room, started_by=host, status=Recording.Status.RECORDING)
    write_two_party_spool(spool / recording.public_id, recording.public_id, room.public_id, duration=3.0)

    db = connection.settings_dict
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "SQLITE_PATH"}}
    if db["ENGINE"].endswith("sqlite3"):
        env["SQLITE_PATH"] = str(db["NAME"])
    else:
        env["DATABASE_URL"] = f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
        if db.get("PASSWORD"):
            env["DATABASE_URL"] = env["DATABASE_URL"].replace("@", f":{db['PASSWORD']}@", 1)
    broker_url, broker_prefix = redis_broker
    env.update(
        REDIS_URL=broker_url,
        CELERY_BROKER_URL=broker_url,
        CELERY_KEY_PREFIX=broker_prefix,
        CHANNEL_PREFIX=broker_prefix,
        CACHE_PREFIX=broker_prefix,
        RECORDINGS_SPOOL_DIR=str(spool),
        MEDIA_ROOT=str(settings.MEDIA_ROOT),
        RECORDINGS_WIDTH="640",
        RECORDINGS_HEIGHT="360",
        RECORDINGS_FPS="15",
        RECORDINGS_X264_PRESET="ultrafast",
        DJANGO_SETTINGS_MODULE="conference.settings",
    )
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "conference",
                "worker",
                "-l",
                "info",
                "-c",
                "1",
                "--without-gossip",
                "--without-mingle",
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        # Queued on commit by the service, exactly as the media server's stop would queue it.
        services.recording_media_stopped(recording_id=recording.public_id)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            recording.refresh_from_db()
            if recording.status in ("ready", "failed"):
                break
            assert worker.poll() is None, log.read_text()[-3000:]
            time.sleep(0.3)
        assert recording.status == "ready", (recording.status, recording.failure_reason, log.read_text()[-3000:])
        assert abs(recording.duration_seconds - 3.0) <= 0.3 and recording.size_bytes > 0
        assert (Path(settings.MEDIA_ROOT) / recording.file.name).stat().st_size == recording.size_bytes
        for _ in range(50):  # the worker removes the raw files right after committing "ready"
            if not (spool / recording.public_id).exists():
                break
            time.sleep(0.1)
        assert not (spool / recording.public_id).exists()
        assert "recordings.tasks.recording_process" in log.read_text()
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
