"""README.md's command blocks run as written, against a fresh ``make run``.

Every ```` ```sh ```` block in README.md is preceded by a marker line:

* ``<!-- readme-test: run -->``: pasted into bash (as one script, in order, with ``set -eo pipefail`` so that a
  failing command fails the test) against the server ``make run`` starts: ``python -m conference.devserver``
  on its embedded defaults (SQLite, in-memory layer, filesystem queue), here on free loopback ports with a
  fresh database. The only change made to the text is that server's address for ``http://127.0.0.1:8000``.
* ``<!-- readme-test: skip (why) -->``: blocks that start servers themselves or configure production hosts.
  They must still parse (``bash -n``) and hold no ``<placeholder>`` that bash would read as a redirection.

The server fixture also checks what ``make run`` promises: the URL is printed only once ``/healthz``
answers, followed by where the logs are, and Ctrl-C stops every process.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.socket.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
README_BASE = "http://127.0.0.1:8000"
BLOCK = re.compile(r"^(?P<marker>[^\n]*)\n```sh\n(?P<body>.*?)^```$", re.DOTALL | re.MULTILINE)
MARKER = re.compile(r"^<!-- readme-test: (?P<mode>run|skip \([^)]+\)) -->$")
PLACEHOLDER = re.compile(r"<[A-Za-z][\w-]*>")
START_TIMEOUT = 180.0  # a cold start of daphne, the worker and the media server on a busy 2-core machine


@dataclass
class Block:
    line: int
    marker: str
    body: str

    @property
    def runs(self) -> bool:
        return self.marker == "<!-- readme-test: run -->"


def readme_blocks() -> list[Block]:
    text = README.read_text()
    return [
        Block(line=text.count("\n", 0, m.start("body")), marker=m.group("marker").strip(), body=m.group("body"))
        for m in BLOCK.finditer(text)
    ]


def test_every_sh_block_is_marked_parses_and_has_no_placeholders() -> None:
    blocks = readme_blocks()
    assert len(blocks) == README.read_text().count("```sh\n"), "a ```sh block the pattern did not see"
    assert [b for b in blocks if b.runs], "no README block is marked to run"
    for block in blocks:
        where = f"README.md line {block.line}"
        assert MARKER.match(block.marker), f"{where}: no <!-- readme-test: run|skip (why) --> line before the block"
        assert not PLACEHOLDER.findall(block.body), f"{where}: placeholders {PLACEHOLDER.findall(block.body)}"
        syntax = subprocess.run(["bash", "-n"], input=block.body, capture_output=True, text=True)
        assert syntax.returncode == 0, f"{where}: {syntax.stderr}"


@dataclass
class DevServer:
    base_url: str
    output: list[str]
    proc: subprocess.Popen[str]


def _read_lines(proc: subprocess.Popen[str], lines: list[str], seen: threading.Condition) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        with seen:
            lines.append(line.rstrip("\n"))
            seen.notify_all()
    with seen:
        lines.append("<eof>")
        seen.notify_all()


@pytest.fixture(scope="module")
def devserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    """``make run`` on a fresh SQLite database: ``manage.py migrate``, then ``python -m conference.devserver``."""
    work = tmp_path_factory.mktemp("readme")
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DATABASE_", "REDIS_", "MEDIA_", "CELERY_", "TURN_", "PUBLIC_BASE_URL", "DJANGO_"))
    }
    env.update(
        CONFERENCE_ENV="local",
        SQLITE_PATH=str(work / "db.sqlite3"),
        CELERY_FILESYSTEM_DIR=str(work / "celery"),
        RECORDINGS_SPOOL_DIR=str(work / "spool"),
        MEDIA_ROOT=str(work / "media"),
    )
    env.pop("LOG_LEVEL", None)
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
    port, media_port = free_port(), free_port()
    cmd = [sys.executable, "-m", "conference.devserver", "--port", str(port), "--media-port", str(media_port)]
    proc = subprocess.Popen(
        [*cmd, "--var", str(work / "var")],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    seen = threading.Condition()
    threading.Thread(target=_read_lines, args=(proc, lines, seen), daemon=True).start()
    base_url = f"http://127.0.0.1:{port}"
    try:
        with seen:
            ready = seen.wait_for(lambda: lines[-1:] == ["<eof>"] or any("Logs" in line for line in lines), 180)
            running = [line for line in lines if "Conference is running at" in line]
        assert ready and running, "\n".join(lines)
        # Printed only once the web process answers /healthz: it answers now.
        with urllib.request.urlopen(f"{base_url}/healthz", timeout=10) as response:
            assert response.status == 200
        assert f"{base_url}/" in running[0]
        assert any(f"{work / 'var' / 'log'}/{{web,worker,media}}.log" in line for line in lines), lines
        yield DevServer(base_url=base_url, output=lines, proc=proc)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # Ctrl-C
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        for log in sorted((work / "var" / "log").glob("*.log")):
            print(f"--- {log.name} ---\n{log.read_text(errors='replace')[-3000:]}")


def _json_lines(stdout: str) -> list[Any]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith(("{", "["))]


def test_the_rest_api_block_runs_as_written(devserver: DevServer) -> None:
    """The five calls: an account, a token, a room, a join grant for the host and a guest, the chat history;
    then (the *Scheduled meetings* block, same script) a weekly meeting scheduled and listed."""
    body = "\n".join(b.body for b in readme_blocks() if b.runs)
    assert README_BASE in body
    script = "set -eo pipefail\n" + body.replace(README_BASE, devserver.base_url)
    result = subprocess.run(["bash"], input=script, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""
    register, host, guest, chat, meeting, meetings = _json_lines(result.stdout)
    assert register["username"] == "ada" and register["access"]
    (room_line,) = [line for line in result.stdout.splitlines() if line.startswith("room ")]
    room_id = room_line.split()[1]
    assert re.fullmatch(r"[A-Za-z0-9]{12}", room_id), room_line
    assert host["roomId"] == room_id and host["role"] == "host" and host["status"] == "admitted"
    assert host["token"] and str(host["ws_url"]).endswith(f"/ws/rooms/{room_id}/")
    assert guest["role"] == "guest" and guest["display_name"] == "Visitor"
    assert chat["results"] == [] and chat["head_seq"] == 0
    assert (
        meeting["rrule"] == "FREQ=WEEKLY;COUNT=10;BYDAY=MO"
    )  # icalendar's canonical order and meeting["start"] == "2030-03-18T09:00:00+01:00"
    assert meeting["next_occurrence"]["start"] == meeting["start"] and meeting["invitees"] == ["ann@example.org"]
    assert [m["meetingId"] for m in meetings] == [meeting["meetingId"]]


def test_ctrl_c_stops_every_process_make_run_started(devserver: DevServer) -> None:
    """Runs last in this module: SIGINT to ``make run``'s process, which stops its children and exits 0."""
    children = subprocess.run(["pgrep", "-P", str(devserver.proc.pid)], capture_output=True, text=True).stdout.split()
    assert len(children) == 3, children  # web, worker, media
    devserver.proc.send_signal(signal.SIGINT)
    assert devserver.proc.wait(30) == 0
    for pid in children:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
