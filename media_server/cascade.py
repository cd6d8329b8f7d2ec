"""Cascading: one room spread over several media processes (docs/scaling.md, "Cascading").

Every process binds one UDP *relay endpoint* (``MEDIA_RELAY_HOST``/``PORT``,
announced to other nodes as ``MEDIA_RELAY_ANNOUNCE``). For a room that spans
nodes, the origin node A keeps a :class:`RelayTarget` per other node B: one
more sink on each local publication's :class:`Forwarder` that sends every
packet, unencrypted, to B's endpoint under a relay SSRC chosen by A. A tells
B which relay SSRC is which publication (participant, pc, source, kind,
codecs) with ``PUT /v1/rooms/{room}/remote/{origin}`` whenever the room's
publications change. B turns each one into a *remote publication*
(:class:`RemoteOrigin`): a :class:`PublishedTrack` whose Forwarder is fed by
the endpoint instead of a publisher's receiver, offered to B's subscribers
exactly like a local one (same TrackInfo).

Feedback: B keeps its own NACK history per subscriber stream (Downstream),
as for local publications, so only keyframe requests travel back: B sends an
RTCP PLI (media SSRC = relay SSRC) to A's endpoint and A asks the publisher
(throttled by the Forwarder). Loss on the relay hop itself is not repaired:
the relay is meant for a data-centre network.

The relay port accepts RTP only for relay SSRCs announced over the
authenticated control API, and PLIs only for SSRCs this node sends; keep it
on an internal network (it is neither encrypted nor authenticated).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import struct
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiortc.rtcrtpparameters import RTCRtpCodecParameters, RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import RTCP_PSFB_PLI, HeaderExtensionsMap, RtcpPsfbPacket, RtpPacket

from . import protocol, signing
from .forwarder import Forwarder
from .participant import PublishedTrack
from .rtputil import RTP_HEADER, one_byte_extensions
from .sdp import AUDIO_LEVEL_URI

logger = logging.getLogger(__name__)

AUDIO_LEVEL_ID = 1  # the relay's own (fixed) header extension ID for the audio level
SYNC_RETRY = 1.0  # seconds before a failed publication sync to another node is retried
_PLI_HEADER = struct.Struct("!BBHII")
_pack = RTP_HEADER.pack
_join = b"".join

Address = tuple[str, int]


def parse_address(value: Any, field: str) -> Address:
    """``host:port`` (IPv6 as ``[addr]:port``); raises BadRequest."""
    if isinstance(value, str):
        host, sep, port = value.rpartition(":")
        host = host.strip("[]")
        if sep and host and port.isdigit() and 0 < int(port) < 65536:
            return host, int(port)
    raise protocol.BadRequest(f"'{field}' must be 'host:port'", {"field": field})


def format_address(address: Address) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class RelayEndpoint(asyncio.DatagramProtocol):
    """The process's relay socket: RTP in from origin nodes, PLIs in from relay targets."""

    def __init__(self, announce: str = "") -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.announce = announce
        self.ingress: dict[int, RemoteTrack] = {}  # relay SSRC -> remote publication (we receive)
        self.egress: dict[int, Forwarder] = {}  # relay SSRC -> local publication (we send)
        self._ext_map = HeaderExtensionsMap()
        self._ext_map.configure(
            RTCRtpParameters(headerExtensions=[RTCRtpHeaderExtensionParameters(id=AUDIO_LEVEL_ID, uri=AUDIO_LEVEL_URI)])
        )
        self.packets_in = 0
        self.packets_out = 0
        self.packets_unknown = 0

    @classmethod
    async def open(cls, host: str, port: int, announce: str = "") -> RelayEndpoint:
        loop = asyncio.get_running_loop()
        _, endpoint = await loop.create_datagram_endpoint(lambda: cls(announce), local_addr=(host, port))
        if not endpoint.announce:
            endpoint.announce = format_address(endpoint.local_address)
        return endpoint

    @property
    def local_address(self) -> Address:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return str(host), int(port)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, data: bytes, address: Address) -> None:
        if self.transport is not None:
            self.transport.sendto(data, address)
            self.packets_out += 1

    def send_pli(self, ssrc: int, address: Address) -> None:
        self.send(bytes(RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=0, media_ssrc=ssrc)), address)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if len(data) < 12 or data[0] >> 6 != 2:
            return
        if 192 <= data[1] <= 223:  # RTCP: a keyframe request from a node we relay to
            if data[1] == 206 and data[0] & 0x1F == RTCP_PSFB_PLI and len(data) >= 12:
                forwarder = self.egress.get(_PLI_HEADER.unpack_from(data)[4])
                if forwarder is not None:
                    forwarder.request_keyframe()
            return
        remote = self.ingress.get(int.from_bytes(data[8:12], "big"))
        if remote is None:
            self.packets_unknown += 1
            return
        try:
            packet = RtpPacket.parse(data, self._ext_map)
        except ValueError:
            return
        codec = remote.codecs.get(packet.payload_type)
        if codec is not None:
            self.packets_in += 1
            remote.track.forwarder.on_rtp(packet, codec)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def _codec_json(codec: RTCRtpCodecParameters) -> dict[str, Any]:
    return {
        "payloadType": codec.payloadType,
        "mimeType": codec.mimeType,
        "clockRate": codec.clockRate,
        "channels": codec.channels,
        "parameters": {k: v for k, v in codec.parameters.items() if isinstance(v, str | int)},
    }


def _parse_codec(raw: Any) -> RTCRtpCodecParameters:
    if not isinstance(raw, dict):
        raise protocol.BadRequest("each codec must be an object", {"field": "tracks"})
    pt, mime, rate = raw.get("payloadType"), raw.get("mimeType"), raw.get("clockRate")
    channels, params = raw.get("channels"), raw.get("parameters", {})
    if (
        not isinstance(pt, int)
        or not 0 <= pt < 128
        or not isinstance(mime, str)
        or "/" not in mime
        or not isinstance(rate, int)
        or not (channels is None or isinstance(channels, int))
        or not isinstance(params, dict)
    ):
        raise protocol.BadRequest("codec needs payloadType, mimeType, clockRate", {"field": "tracks"})
    return RTCRtpCodecParameters(
        mimeType=mime, clockRate=rate, channels=channels, payloadType=pt, parameters=dict(params)
    )


class RemoteTrack:
    """A publication of another node, received over the relay."""

    def __init__(self, track: PublishedTrack, ssrc: int, codecs: dict[int, RTCRtpCodecParameters]) -> None:
        self.track = track
        self.ssrc = ssrc
        self.codecs = codecs


def parse_remote_tracks(body: Any) -> tuple[Address, list[dict[str, Any]]]:
    """Validate a ``PUT .../remote/{origin}`` body: (feedback address, track descriptions)."""
    body = protocol.check_body(body)
    feedback = parse_address(body.get("feedback"), "feedback")
    tracks = body.get("tracks")
    if not isinstance(tracks, list):
        raise protocol.BadRequest("'tracks' must be a list", {"field": "tracks"})
    parsed = []
    for raw in tracks:
        if not isinstance(raw, dict):
            raise protocol.BadRequest("each track must be an object", {"field": "tracks"})
        pc, kind, source = raw.get("pc"), raw.get("kind"), raw.get("source")
        if not isinstance(pc, str) or not isinstance(kind, str) or protocol.SOURCES.get((pc, kind)) != source:
            raise protocol.BadRequest("track pc/kind/source do not match", {"field": "tracks"})
        participant, ssrc = raw.get("participant"), raw.get("ssrc")
        if not isinstance(participant, str) or not participant:
            raise protocol.BadRequest("track 'participant' must be a non-empty string", {"field": "tracks"})
        if not isinstance(ssrc, int) or isinstance(ssrc, bool) or not 0 < ssrc < 1 << 32:
            raise protocol.BadRequest("track 'ssrc' must be a 32-bit integer", {"field": "tracks"})
        keys = raw.get("codec_keys", [])
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise protocol.BadRequest("track 'codec_keys' must be a list of strings", {"field": "tracks"})
        codecs = raw.get("codecs", [])
        if not isinstance(codecs, list):
            raise protocol.BadRequest("track 'codecs' must be a list", {"field": "tracks"})
        parsed.append(
            {
                "participant": participant,
                "pc": pc,
                "kind": kind,
                "source": source,
                "ssrc": ssrc,
                "codec_keys": tuple(keys),
                "codecs": {c.payloadType: c for c in map(_parse_codec, codecs)},
            }
        )
    return feedback, parsed


class RemoteOrigin:
    """Node B's view of the publications that one origin node relays into a room."""

    def __init__(self, node: str, endpoint: RelayEndpoint) -> None:
        self.node = node
        self.endpoint = endpoint
        self.feedback: Address = ("127.0.0.1", 0)
        self.tracks: dict[int, RemoteTrack] = {}

    def update(
        self,
        feedback: Address,
        described: list[dict[str, Any]],
        on_audio_level: Callable[[str], Callable[[int], None]],
    ) -> tuple[list[PublishedTrack], list[PublishedTrack]]:
        """Reconcile with the origin's current list; returns (added, removed) publications."""
        self.feedback = feedback
        wanted = {d["ssrc"]: d for d in described}
        removed = [self.tracks.pop(ssrc) for ssrc in list(self.tracks) if ssrc not in wanted]
        added: list[PublishedTrack] = []
        for ssrc, d in wanted.items():
            existing = self.tracks.get(ssrc)
            if existing is not None:
                existing.codecs.update(d["codecs"])
                continue
            forwarder = Forwarder(
                kind=d["kind"],
                request_keyframe=self._keyframe_requester(ssrc),
                on_audio_level=on_audio_level(d["participant"]) if d["source"] == "microphone" else None,
            )
            track = PublishedTrack(
                d["participant"], d["pc"], d["kind"], d["source"], forwarder, None, codec_keys=d["codec_keys"]
            )
            remote = self.tracks[ssrc] = RemoteTrack(track, ssrc, dict(d["codecs"]))
            self.endpoint.ingress[ssrc] = remote
            added.append(track)
        for remote in removed:
            self._drop(remote)
        return added, [r.track for r in removed]

    def _keyframe_requester(self, ssrc: int) -> Callable[[], None]:
        return lambda: self.endpoint.send_pli(ssrc, self.feedback)

    def _drop(self, remote: RemoteTrack) -> None:
        remote.track.closed = True  # never attached again (Subscriber._forward)
        if self.endpoint.ingress.get(remote.ssrc) is remote:
            del self.endpoint.ingress[remote.ssrc]
        for downstream in list(remote.track.forwarder.downstreams):
            remote.track.forwarder.detach(downstream)

    def close(self) -> list[PublishedTrack]:
        tracks = [r.track for r in self.tracks.values()]
        for remote in self.tracks.values():
            self._drop(remote)
        self.tracks.clear()
        return tracks


class RelayTarget:
    """Node A's relay of one room's local publications to one other node.

    ``sync`` (coalescing, retried) PUTs the publication list to the target's
    control API; packets flow once the target answered with its relay address.
    """

    def __init__(self, *, room: str, origin: str, node: str, url: str, secret: str, endpoint: RelayEndpoint) -> None:
        self.room, self.origin, self.node, self.url = room, origin, node, url.rstrip("/")
        self.secret = secret
        self.endpoint = endpoint
        self.address: Address | None = None
        self.ssrcs: dict[int, int] = {}  # id(PublishedTrack) -> relay SSRC
        self.tracks: dict[int, PublishedTrack] = {}
        self.sinks: dict[int, Callable[[RtpPacket, RTCRtpCodecParameters], None]] = {}
        self.synced = 0  # successful syncs
        self.last_error: str | None = None
        self._dirty = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        self._task = asyncio.create_task(self._run(), name=f"relay-{room}-{node}")

    def set_tracks(self, tracks: list[PublishedTrack]) -> None:
        """The room's local publications now; attaches/detaches the relay sinks and syncs."""
        current = {id(t): t for t in tracks}
        for key in [k for k in self.tracks if k not in current]:
            track = self.tracks.pop(key)
            track.forwarder.remove_sink(self.sinks.pop(key))
            self.endpoint.egress.pop(self.ssrcs.pop(key), None)
        for key, track in current.items():
            if key in self.tracks:
                continue
            ssrc = random.randrange(1, 1 << 32)
            while ssrc in self.endpoint.egress or ssrc in self.endpoint.ingress:
                ssrc = random.randrange(1, 1 << 32)
            self.tracks[key], self.ssrcs[key] = track, ssrc
            self.endpoint.egress[ssrc] = track.forwarder
            self.sinks[key] = sink = self._sink(ssrc)
            track.forwarder.add_sink(sink)
        self._dirty.set()

    def _sink(self, ssrc: int) -> Callable[[RtpPacket, RTCRtpCodecParameters], None]:
        endpoint = self.endpoint

        def sink(packet: RtpPacket, codec: RTCRtpCodecParameters) -> None:
            address = self.address
            if address is None:
                return
            level = packet.extensions.audio_level
            ext = (
                one_byte_extensions([(AUDIO_LEVEL_ID, bytes([(0x80 if level[0] else 0) | (level[1] & 0x7F)]))])
                if level is not None
                else b""
            )
            header = _pack(
                0x90 if ext else 0x80,
                (packet.marker << 7) | packet.payload_type,
                packet.sequence_number,
                packet.timestamp,
                ssrc,
            )
            endpoint.send(_join((header, ext, packet.payload)), address)

        return sink

    def describe(self) -> dict[str, Any]:
        return {
            "protocol": protocol.PROTOCOL_VERSION,
            "feedback": self.endpoint.announce,
            "tracks": [
                {
                    "participant": t.participant,
                    "pc": t.pc,
                    "kind": t.kind,
                    "source": t.source,
                    "ssrc": self.ssrcs[key],
                    "codec_keys": list(t.codec_keys),
                    "codecs": [_codec_json(c) for c in t.codecs],
                }
                for key, t in self.tracks.items()
            ],
        }

    def _headers(self, method: str, body: bytes = b"") -> dict[str, str]:
        """Signed like Django's control requests (media_server/signing.py)."""
        path = urlsplit(self._remote_url()).path
        headers = {"Authorization": signing.sign(self.secret, method, path, body)}
        if body:
            headers["Content-Type"] = "application/json"
        return headers

    def _remote_url(self) -> str:
        return f"{self.url}/v1/rooms/{self.room}/remote/{self.origin}"

    async def _run(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            try:
                data = json.dumps(self.describe()).encode()
                headers = self._headers("PUT", data)
                async with self._session.put(self._remote_url(), data=data, headers=headers) as resp:
                    body = await resp.json(content_type=None)
                    if resp.status != 200:
                        raise RuntimeError(f"HTTP {resp.status}: {body}")
                first = self.address is None
                self.address = parse_address(body.get("relay"), "relay")
                self.synced += 1
                self.last_error = None
                if first:  # packets flow from now on: start video at a keyframe
                    for track in self.tracks.values():
                        if track.kind == "video":
                            track.forwarder.request_keyframe(force=True)
            except (aiohttp.ClientError, TimeoutError, RuntimeError, ValueError, protocol.MediaError) as exc:
                self.last_error = str(exc)
                logger.warning("room %s: relay sync to %s failed: %s", self.room, self.node, exc)
                await asyncio.sleep(SYNC_RETRY)
                self._dirty.set()

    async def close(self, notify: bool = True) -> None:
        """Stop relaying (sinks off); with ``notify`` tell the target to drop our publications."""
        self.set_tracks([])
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        session = self._session
        if session is None:
            return
        try:
            if notify:
                async with session.delete(self._remote_url(), headers=self._headers("DELETE")) as resp:
                    await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            logger.info("room %s: could not tell %s that the relay stopped: %s", self.room, self.node, exc)
        finally:
            await session.close()

    def status(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "url": self.url,
            "relay": format_address(self.address) if self.address else None,
            "tracks": len(self.tracks),
            "synced": self.synced,
            "error": self.last_error,
        }
