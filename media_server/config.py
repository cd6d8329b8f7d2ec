"""Media server configuration: environment variables, each overridable by a CLI flag."""

from __future__ import annotations

import argparse
import json
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .ice_policy import IcePolicy

DEV_SECRET = "dev-media-secret"  # noqa: S105 (only used with --dev / MEDIA_DEV=1)
# Outside --dev the control secret must be at least this long and none of the development values shipped in
# this repository (the same rule as Django's production settings: a known secret lets anyone forge requests).
MIN_SECRET_LENGTH = 32
DEVELOPMENT_SECRETS = frozenset({DEV_SECRET, "django-insecure-conference-local-development-only"})
# Same default as Django's RECORDINGS_SPOOL_DIR (BASE_DIR/var/recordings-spool), whatever the cwd.
DEFAULT_SPOOL_DIR = str(Path(__file__).resolve().parents[1] / "var" / "recordings-spool")
# 60 % of one core at 35 µs per forwarded packet (docs/scaling.md): the load at which a node takes no new room.
DEFAULT_CAPACITY_PPS = 17000.0
DEFAULT_TURN_TTL = 12 * 3600  # seconds; must outlast the longest peer connection (as Django's TURN_TTL_SECONDS)


class ConfigError(ValueError):
    """Invalid or missing configuration; the process must not start."""


@dataclass(frozen=True)
class IceServer:
    """One RTCIceServer entry (STUN or TURN)."""

    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = None


@dataclass(frozen=True)
class Config:
    """Immutable media server settings (see ``parse_config``)."""

    control_host: str = "127.0.0.1"
    control_port: int = 8790
    secret: str = DEV_SECRET
    events_url: str = "http://127.0.0.1:8000/internal/media/v1/events"
    ice_addresses: tuple[str, ...] = ("127.0.0.1",)
    ice_announce: Mapping[str, str] = field(default_factory=dict)
    ice_servers: tuple[IceServer, ...] = ()
    node_id: str = "localhost:8790"
    dev: bool = False
    peer_silence_timeout: float = 30.0
    subscribe_offer_timeout: float = 10.0  # seconds before an unanswered subscribe offer is re-offered
    # Last-N: above this many other video tracks a subscriber negotiates only the selected ones and
    # re-maps those m-lines on speaker changes (docs/architecture.md, Large rooms).
    max_video_mlines: int = 16
    # Above this many other microphones a subscriber's audio m-lines are a pool of this many, re-mapped to
    # the microphones being heard (the 3 loudest + headroom; docs/architecture.md, Large rooms).
    max_audio_mlines: int = 6
    # Spare m-lines of each kind a subscribe offer negotiates ahead (lastn.spare_lines): a track that appears
    # later is mapped onto one (forwarded_tracks tells the client) instead of re-offering. 0: none.
    spare_mlines: int = 0  # off until the browser suite passes with it (docs/benchmarks.md §4, seventh session)
    event_queue_size: int = 1000
    recordings_spool_dir: str = DEFAULT_SPOOL_DIR
    # TURN with time-limited credentials (media_server/turn.py): coturn's static-auth-secret and its URLs.
    turn_secret: str = ""
    turn_urls: tuple[str, ...] = ()
    turn_ttl: int = DEFAULT_TURN_TTL
    # Bearer token that opens GET /metrics only (the control secret opens it too); "" = none.
    metrics_token: str = ""
    # Node registry (media_server/registry.py, docs/protocol.md §2 "Node registry"): "" = not registered
    # (Django uses its single MEDIA_CONTROL_URL).
    redis_url: str = ""
    redis_prefix: str = "conference"
    node_url: str = ""  # the control URL Django uses to reach this node (default http://<control host>:<port>)
    capacity_pps: float = DEFAULT_CAPACITY_PPS  # forwarded packets/s at which the node counts as full
    heartbeat_interval: float = 2.0  # seconds; the registration expires after 2.5 intervals
    # Placements the heartbeat restores (Redis restarted empty) expire after this long unused, as Django's do.
    room_placement_ttl: float = 12 * 3600.0
    draining: bool = False  # registered but takes no new rooms
    # Offer transport-wide congestion control to subscribers (send-side estimation: media_server/send_side.py
    # feeds media_server/bwe.py). On unless MEDIA_TRANSPORT_CC is 0/false/no (REMB only, as for a client that
    # does not accept it): only the send-side estimate's probing meets issue 17's recovery target in Chromium
    # (docs/benchmarks.md §2b).
    transport_cc: bool = True
    # Cascading relay endpoint (media_server/cascade.py): UDP, internal network only; port 0 = any free port.
    relay_host: str = "127.0.0.1"
    relay_port: int = 0
    relay_announce: str = ""  # host:port other media nodes send to (default: the bound address)
    # Ignore remote ICE candidates in private ranges too (media_server/ice_policy.py); off: same-LAN clients.
    ice_block_private: bool = False


_OPTIONS: list[tuple[str, str, str]] = [
    ("MEDIA_CONTROL_HOST", "--control-host", "HTTP control listener address"),
    ("MEDIA_CONTROL_PORT", "--control-port", "HTTP control listener port"),
    ("MEDIA_SECRET", "--secret", "shared bearer secret (required unless --dev)"),
    ("MEDIA_EVENTS_URL", "--events-url", "where events are POSTed"),
    ("MEDIA_ICE_ADDRESSES", "--ice-addresses", "comma-separated ICE host addresses ('' = all interfaces)"),
    ("MEDIA_ICE_ANNOUNCE", "--ice-announce", "1:1 NAT mapping bind=public,bind2=public2"),
    ("MEDIA_ICE_SERVERS", "--ice-servers", "JSON list of RTCIceServer dicts"),
    ("MEDIA_NODE_ID", "--node-id", "node identifier (default hostname:port)"),
    ("RECORDINGS_SPOOL_DIR", "--recordings-spool-dir", "recording spool directory, shared with the worker"),
    ("MEDIA_TURN_SECRET", "--turn-secret", "coturn static-auth-secret: time-limited TURN credentials per connection"),
    ("MEDIA_TURN_URLS", "--turn-urls", "comma-separated TURN URLs (aiortc uses the first turn:/turns: one)"),
    ("MEDIA_TURN_TTL_SECONDS", "--turn-ttl", "lifetime of those TURN credentials in seconds (default 43200)"),
    ("MEDIA_METRICS_TOKEN", "--metrics-token", "bearer token for GET /metrics only (Prometheus)"),
    ("MEDIA_REDIS_URL", "--redis-url", "register this node in Redis (node registry) so Django can place rooms on it"),
    ("MEDIA_REDIS_PREFIX", "--redis-prefix", "key prefix of the node registry (default conference)"),
    ("MEDIA_NODE_URL", "--node-url", "control URL Django uses to reach this node (default http://host:port)"),
    ("MEDIA_CAPACITY_PPS", "--capacity-pps", "forwarded packets/s at which this node takes no new room (17000)"),
    ("MEDIA_HEARTBEAT_SECONDS", "--heartbeat", "registry heartbeat interval in seconds (2)"),
    (
        "MEDIA_ROOM_PLACEMENT_TTL_SECONDS",
        "--room-placement-ttl",
        "lifetime of a room placement the heartbeat restores, as Django's setting of that name (43200)",
    ),
    (
        "MEDIA_MAX_VIDEO_MLINES",
        "--max-video-mlines",
        "last-N: above this many other videos a subscriber gets m-lines only for its selection (default 16)",
    ),
    (
        "MEDIA_MAX_AUDIO_MLINES",
        "--max-audio-mlines",
        "above this many other microphones a subscriber's audio m-lines are a re-mapped pool of this size (default 6)",
    ),
    (
        "MEDIA_SPARE_MLINES",
        "--spare-mlines",
        "spare audio and video m-lines per subscribe offer, mapped to new tracks without a re-offer (default 0: none, every new track re-offers; 2 is what was measured)",
    ),
    ("MEDIA_RELAY_HOST", "--relay-host", "UDP address of the cascading relay (internal network; 127.0.0.1)"),
    ("MEDIA_RELAY_PORT", "--relay-port", "UDP port of the cascading relay (0 = any free port)"),
    ("MEDIA_RELAY_ANNOUNCE", "--relay-announce", "host:port other media nodes send relayed media to"),
    ("MEDIA_ICE_BLOCK_PRIVATE", "--ice-block-private", "1: ignore clients' ICE candidates in private ranges"),
]


def _parse_announce(text: str) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        bind, sep, public = item.partition("=")
        if not sep or not bind.strip() or not public.strip():
            raise ConfigError(f"MEDIA_ICE_ANNOUNCE entry {item!r} is not bind=public")
        mapping[bind.strip()] = public.strip()
    return mapping


def _parse_ice_servers(text: str) -> tuple[IceServer, ...]:
    try:
        raw = json.loads(text or "[]")
    except json.JSONDecodeError as exc:
        raise ConfigError(f"MEDIA_ICE_SERVERS is not JSON: {exc}") from exc
    if not isinstance(raw, list):
        raise ConfigError("MEDIA_ICE_SERVERS must be a JSON list")
    servers = []
    for entry in raw:
        if not isinstance(entry, dict) or "urls" not in entry:
            raise ConfigError("each MEDIA_ICE_SERVERS entry needs 'urls'")
        urls = entry["urls"]
        urls_t = (urls,) if isinstance(urls, str) else tuple(str(u) for u in urls)
        servers.append(IceServer(urls=urls_t, username=entry.get("username"), credential=entry.get("credential")))
    return tuple(servers)


def _positive_int(values: Mapping[str, str | None], name: str, default: int) -> int:
    """The integer option ``name`` (``default`` when unset); ConfigError unless it is at least 1."""
    try:
        value = int(values[name] or default)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer") from exc
    if value < 1:
        raise ConfigError(f"{name} must be at least 1")
    return value


def _parse_turn(values: Mapping[str, str | None]) -> tuple[str, tuple[str, ...], int]:
    secret = values["MEDIA_TURN_SECRET"] or ""
    urls = tuple(u.strip() for u in (values["MEDIA_TURN_URLS"] or "").split(",") if u.strip())
    if urls and not secret:
        raise ConfigError("MEDIA_TURN_URLS needs MEDIA_TURN_SECRET (coturn's static-auth-secret)")
    for url in urls:
        if not url.startswith(("turn:", "turns:")):
            raise ConfigError(f"MEDIA_TURN_URLS entry {url!r} is not a turn: or turns: URL")
    try:
        ttl = int(values["MEDIA_TURN_TTL_SECONDS"] or DEFAULT_TURN_TTL)
    except ValueError as exc:
        raise ConfigError("MEDIA_TURN_TTL_SECONDS must be an integer") from exc
    if ttl <= 0:
        raise ConfigError("MEDIA_TURN_TTL_SECONDS must be positive")
    return secret, urls, ttl


def transport_cc_enabled(env: Mapping[str, str]) -> bool:
    """Whether ``env``'s MEDIA_TRANSPORT_CC offers transport-cc: on unless it is 0/false/no (the browser tests
    read the media server's mode here too)."""
    return env.get("MEDIA_TRANSPORT_CC", "1").strip().lower() not in ("0", "false", "no")


def check_secret(secret: str) -> None:
    """Refuse a weak control secret (outside --dev): a development value, or shorter than 32 characters."""
    hint = "set MEDIA_SECRET to the web tier's MEDIA_SECRET, e.g. python -c 'import secrets; print(secrets.token_urlsafe(48))'"
    if secret in DEVELOPMENT_SECRETS:
        raise ConfigError(f"MEDIA_SECRET is a development value, refused outside --dev: {hint}")
    if len(secret) < MIN_SECRET_LENGTH:
        raise ConfigError(f"MEDIA_SECRET is shorter than {MIN_SECRET_LENGTH} characters, refused outside --dev: {hint}")


def parse_config(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Build a Config from ``env`` (default ``os.environ``) overridden by ``argv`` flags.

    Raises ConfigError when MEDIA_SECRET is missing outside dev mode or a
    value does not parse.
    """
    env = os.environ if env is None else env
    parser = argparse.ArgumentParser(prog="python -m media_server", description="Conference SFU media server")
    for var, flag, help_text in _OPTIONS:
        parser.add_argument(flag, dest=var, default=None, help=f"{help_text} [{var}]")
    parser.add_argument("--dev", action="store_true", help="development mode (default secret) [MEDIA_DEV=1]")
    parser.add_argument(
        "--draining", action="store_true", help="register, but take no new rooms (POST /v1/drain) [MEDIA_DRAINING=1]"
    )
    args = parser.parse_args(list(argv or []))
    values = {var: getattr(args, var) if getattr(args, var) is not None else env.get(var) for var, _, _ in _OPTIONS}
    dev = bool(args.dev) or env.get("MEDIA_DEV", "") in ("1", "true", "yes")
    secret = values["MEDIA_SECRET"]
    if not secret:
        if not dev:
            raise ConfigError("MEDIA_SECRET is required (or run with --dev / MEDIA_DEV=1)")
        secret = DEV_SECRET
    elif not dev:
        check_secret(secret)
    host = values["MEDIA_CONTROL_HOST"] or "127.0.0.1"
    try:
        port = int(values["MEDIA_CONTROL_PORT"] or 8790)
    except ValueError as exc:
        raise ConfigError("MEDIA_CONTROL_PORT must be an integer") from exc
    addresses_raw = values["MEDIA_ICE_ADDRESSES"]
    if addresses_raw is None:
        addresses_raw = "127.0.0.1"
    addresses = tuple(a.strip() for a in addresses_raw.split(",") if a.strip())
    turn_secret, turn_urls, turn_ttl = _parse_turn(values)
    capacity = _positive(values["MEDIA_CAPACITY_PPS"], "MEDIA_CAPACITY_PPS", DEFAULT_CAPACITY_PPS)
    heartbeat = _positive(values["MEDIA_HEARTBEAT_SECONDS"], "MEDIA_HEARTBEAT_SECONDS", 2.0)
    placement_ttl = _positive(
        values["MEDIA_ROOM_PLACEMENT_TTL_SECONDS"], "MEDIA_ROOM_PLACEMENT_TTL_SECONDS", Config.room_placement_ttl
    )
    redis_url = values["MEDIA_REDIS_URL"] or ""
    if redis_url and not redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError("MEDIA_REDIS_URL must be a redis://, rediss:// or unix:// URL")
    try:
        relay_port = int(values["MEDIA_RELAY_PORT"] or 0)
    except ValueError as exc:
        raise ConfigError("MEDIA_RELAY_PORT must be an integer") from exc
    if not 0 <= relay_port < 65536:
        raise ConfigError("MEDIA_RELAY_PORT must be 0..65535")
    relay_announce = values["MEDIA_RELAY_ANNOUNCE"] or ""
    if relay_announce and (not relay_announce.rpartition(":")[2].isdigit() or ":" not in relay_announce):
        raise ConfigError("MEDIA_RELAY_ANNOUNCE must be host:port")
    node_host = host if host not in ("0.0.0.0", "::", "") else socket.gethostname()
    max_video_mlines = _positive_int(values, "MEDIA_MAX_VIDEO_MLINES", Config.max_video_mlines)
    max_audio_mlines = _positive_int(values, "MEDIA_MAX_AUDIO_MLINES", Config.max_audio_mlines)
    spare_raw = values["MEDIA_SPARE_MLINES"]
    try:
        spare_mlines = int(spare_raw) if spare_raw else Config.spare_mlines
    except ValueError as exc:
        raise ConfigError("MEDIA_SPARE_MLINES must be an integer") from exc
    if spare_mlines < 0:
        raise ConfigError("MEDIA_SPARE_MLINES must be at least 0")
    return Config(
        control_host=host,
        control_port=port,
        secret=secret,
        events_url=values["MEDIA_EVENTS_URL"] or Config.events_url,
        ice_addresses=addresses,
        ice_announce=_parse_announce(values["MEDIA_ICE_ANNOUNCE"] or ""),
        ice_servers=_parse_ice_servers(values["MEDIA_ICE_SERVERS"] or "[]"),
        node_id=values["MEDIA_NODE_ID"] or f"{socket.gethostname()}:{port}",
        dev=dev,
        recordings_spool_dir=values["RECORDINGS_SPOOL_DIR"] or DEFAULT_SPOOL_DIR,
        turn_secret=turn_secret,
        turn_urls=turn_urls,
        turn_ttl=turn_ttl,
        metrics_token=values["MEDIA_METRICS_TOKEN"] or "",
        redis_url=redis_url,
        redis_prefix=values["MEDIA_REDIS_PREFIX"] or "conference",
        node_url=(values["MEDIA_NODE_URL"] or f"http://{node_host}:{port}").rstrip("/"),
        capacity_pps=capacity,
        heartbeat_interval=heartbeat,
        room_placement_ttl=placement_ttl,
        draining=bool(args.draining) or env.get("MEDIA_DRAINING", "") in ("1", "true", "yes"),
        transport_cc=transport_cc_enabled(env),
        max_video_mlines=max_video_mlines,
        max_audio_mlines=max_audio_mlines,
        spare_mlines=spare_mlines,
        relay_host=values["MEDIA_RELAY_HOST"] or "127.0.0.1",
        relay_port=relay_port,
        relay_announce=relay_announce,
        ice_block_private=(values["MEDIA_ICE_BLOCK_PRIVATE"] or "").strip().lower() in ("1", "true", "yes"),
    )


def ice_policy(config: Config) -> IcePolicy:
    """The remote-candidate policy of this server (media_server/ice_policy.py)."""
    return IcePolicy.for_server(
        ice_addresses=config.ice_addresses,
        announced=config.ice_announce.values(),
        block_private=config.ice_block_private,
    )


def _positive(raw: str | None, name: str, default: float) -> float:
    try:
        value = float(raw) if raw else default
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number") from exc
    if value <= 0:
        raise ConfigError(f"{name} must be positive")
    return value
