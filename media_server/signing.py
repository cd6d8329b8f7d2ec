"""Signed media control requests (docs/protocol.md §2 "Transport and authentication", version 2).

Django (and a media node talking to another, for cascading) signs each control request, and the media server
each event batch it posts to Django, with HMAC-SHA256
of the shared ``MEDIA_SECRET`` over the method, the path with its query, a timestamp, a random nonce and
the SHA-256 of the body::

    Authorization: Conference-HMAC-SHA256 ts=<unix seconds>,nonce=<hex>,sig=<hex>

The receiver refuses a request whose timestamp is more than 30 s away from its clock
(``stale_request``), whose signature it has already seen within that window (``replayed_request``) or
that does not verify (``unauthorized``): a captured request cannot be replayed, altered or sent to another
path. Pure stdlib: Django imports this module too (one definition of the scheme for both sides).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict

SCHEME = "Conference-HMAC-SHA256"
MAX_SKEW_SECONDS = 30.0
MAX_REMEMBERED = 200_000  # signatures kept for replay detection (~60 s of traffic at 3 000 requests/s)


def _mac(secret: str, method: str, path: str, ts: str, nonce: str, body: bytes) -> str:
    message = "\n".join((method.upper(), path, ts, nonce, hashlib.sha256(body).hexdigest())).encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(secret: str, method: str, path: str, body: bytes = b"", *, now: float | None = None) -> str:
    """The ``Authorization`` header value for this request (``path`` includes any query string)."""
    ts = f"{time.time() if now is None else now:.3f}"
    nonce = secrets.token_hex(12)
    return f"{SCHEME} ts={ts},nonce={nonce},sig={_mac(secret, method, path, ts, nonce, body)}"


class ReplayGuard:
    """Signatures seen in the last ``2 x MAX_SKEW_SECONDS`` (bounded; the oldest are forgotten first)."""

    def __init__(self, max_size: int = MAX_REMEMBERED) -> None:
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._max_size = max_size

    def first_time(self, signature: str, now: float) -> bool:
        """Whether ``signature`` is new (and remember it)."""
        while self._seen and (next(iter(self._seen.values())) < now or len(self._seen) >= self._max_size):
            self._seen.popitem(last=False)
        if signature in self._seen:
            return False
        self._seen[signature] = now + 2 * MAX_SKEW_SECONDS
        return True


def _fields(header: str) -> dict[str, str]:
    scheme, _, params = header.partition(" ")
    if scheme != SCHEME:
        return {}
    return dict(part.split("=", 1) for part in params.split(",") if "=" in part)


def signature_of(header: str) -> str:
    """The ``sig`` field of a signed ``Authorization`` header ("" if there is none): the key for replay checks."""
    return _fields(header).get("sig", "")


def verify_signature(
    secret: str, method: str, path: str, body: bytes, header: str, *, now: float | None = None
) -> str | None:
    """``None`` if ``header`` signs this request within the allowed skew, else the error code; no replay check
    (``verify`` adds it; Django keeps the signatures it has seen in its shared cache instead)."""
    now = time.time() if now is None else now
    fields = _fields(header)
    ts, nonce, sig = fields.get("ts", ""), fields.get("nonce", ""), fields.get("sig", "")
    try:
        stamp = float(ts)
    except ValueError:
        return "unauthorized"
    if not nonce or not hmac.compare_digest(sig.encode(), _mac(secret, method, path, ts, nonce, body).encode()):
        return "unauthorized"
    if abs(now - stamp) > MAX_SKEW_SECONDS:
        return "stale_request"
    return None


def verify(
    secret: str, method: str, path: str, body: bytes, header: str, *, guard: ReplayGuard, now: float | None = None
) -> str | None:
    """``None`` if ``header`` signs this request and was not seen before, else the error code (see the module
    doc)."""
    now = time.time() if now is None else now
    error = verify_signature(secret, method, path, body, header, now=now)
    if error is not None:
        return error
    if not guard.first_time(signature_of(header), now):
        return "replayed_request"
    return None


def main(argv: list[str] | None = None) -> int:
    """``python -m media_server.signing METHOD URL [JSON]``: send one signed control request (``MEDIA_SECRET``
    from the environment) and print the answer: the operator's curl now that the bearer secret is refused."""
    import os
    import sys
    import urllib.error
    import urllib.request
    from urllib.parse import urlsplit

    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (2, 3) or not os.environ.get("MEDIA_SECRET"):
        print("usage: MEDIA_SECRET=... python -m media_server.signing METHOD URL [JSON]", file=sys.stderr)
        return 2
    method, url = args[0].upper(), args[1]
    body = args[2].encode() if len(args) == 3 else b""
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    request = urllib.request.Request(url, data=body or None, method=method)  # noqa: S310 - the operator's URL
    request.add_header("Authorization", sign(os.environ["MEDIA_SECRET"], method, path, body))
    if body:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            print(response.status, response.read().decode())
            return 0
    except urllib.error.HTTPError as exc:
        print(exc.code, exc.read().decode())
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
