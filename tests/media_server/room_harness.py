"""A media_server ``Room`` whose participants publish without a connection and subscribe through aiortc clients
of this process (issue 19: which joins re-offer whom). Shared by tests/media_server/test_lastn.py,
test_lastn_unit.py and bench/lastn_joins.py.

Publications hand packets straight to their forwarders; each subscriber is an in-process aiortc client that
answers every offer the room emits (offers are counted from the emitted events). The camera check does not run
on its own: the caller says when it looks (``look_at_cameras``), so which camera counts as sending does not
depend on how fast the machine is.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from media_server.config import Config
from media_server.forwarder import Forwarder
from media_server.participant import PublishedTrack
from media_server.room import CAMERA_IDLE, Room

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)


class Publication:
    """A camera + microphone publication without a connection: what the Room reads (``tracks``)."""

    def __init__(self, participant: str) -> None:
        self.tracks = [
            PublishedTrack(
                participant, "camera", kind, source, Forwarder(kind=kind, request_keyframe=lambda: None), None
            )  # type: ignore[arg-type]
            for kind, source in (("audio", "microphone"), ("video", "camera"))
        ]
        self.camera = self.tracks[1]
        self.camera_on = False  # sends a packet whenever the cameras are looked at (RoomHarness.look_at_cameras)
        self._seq = 0

    def send_video(self) -> None:
        """One camera packet (not a keyframe: nothing here decodes)."""
        self._seq += 1
        packet = RtpPacket(payload_type=96, sequence_number=self._seq, timestamp=self._seq * 3000, ssrc=1)
        packet.payload = b"\x90\x80\x00\x01\x00\x00"
        self.camera.forwarder.on_rtp(packet, VP8)


class RoomHarness:
    """A Room of connection-less publications and in-process subscriber clients.

    ``client_cpu`` sums the CPU seconds the clients spent answering (setRemoteDescription, createAnswer,
    setLocalDescription), so a measurement can leave it out of the SFU's share.
    """

    def __init__(self, room_id: str = "r", **config: Any) -> None:
        self.events: list[dict[str, Any]] = []
        config.setdefault("spare_mlines", 0)  # every new track re-offers, unless a test asks for spares
        self.room = Room(
            room_id, config=Config(secret="x" * 16, subscribe_offer_timeout=600.0, **config), emit=self.events.append
        )
        self.room._camera_check.cancel()
        self.clients: dict[str, RTCPeerConnection] = {}
        self.publications: dict[str, Publication] = {}
        self.client_cpu = 0.0
        self._answered = 0
        self._clock = time.monotonic() + 1000.0

    async def publish(self, participant: str) -> Publication:
        """What Room.publish does after accepting the offer (its answer does not wait for the re-offers)."""
        publication = Publication(participant)
        async with self.room.lock:
            self.room.participant(participant, create=True).publishers["camera"] = publication  # type: ignore[assignment]
            for track in publication.tracks:
                self.room._watch_first_packet(track)
            self.room.renegotiate_later()
        self.publications[participant] = publication
        await self.settle()
        return publication

    async def subscribe(self, participant: str) -> None:
        async with self.room.lock:
            sdp, revision, _, _ = await self.room.subscribe(participant)
        self.clients[participant] = RTCPeerConnection(
            RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        )
        if sdp is not None:  # None: nothing to receive yet (the first offer comes as an event)
            await self.answer(participant, sdp, revision)

    async def answer(self, participant: str, sdp: str, revision: int) -> None:
        client = self.clients[participant]
        started = time.process_time()
        await client.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        await client.setLocalDescription(await client.createAnswer())
        self.client_cpu += time.process_time() - started
        async with self.room.lock:
            await self.room.subscribe_answer(participant, client.localDescription.sdp, revision)

    async def settle(self) -> None:
        """Let queued work run (first-packet callbacks, a queued renegotiation), answering every offer."""
        while True:
            for _ in range(3):
                await asyncio.sleep(0)
            async with self.room.lock:
                pass
            offers = self.offers(self._answered)
            self._answered = len(self.events)
            if not offers and not self.room._renegotiation_queued:
                return
            for offer in offers:
                await self.answer(offer["participant"], offer["sdp"], offer["revision"])

    def offers(self, since: int) -> list[dict[str, Any]]:
        return [e for e in self.events[since:] if e["type"] == "subscribe_offer"]

    def look_at_cameras(self) -> None:
        """The camera check, each time on a clock 10 CAMERA_IDLE later (whatever the machine's speed): every
        camera that is on sends a packet first and is sending, every other one is off."""
        for publication in self.publications.values():
            if publication.camera_on:
                publication.send_video()
        self._clock += 10 * CAMERA_IDLE
        self.room.check_cameras(self._clock)

    def video_mlines(self, participant: str) -> set[str]:
        subscriber = self.room.participants[participant].subscriber
        assert subscriber is not None
        return {s.track.participant for s in subscriber.slots if s.track is not None and s.kind == "video"}

    async def close(self) -> None:
        for p in self.room.participants.values():
            p.publishers.clear()  # connection-less: nothing to close
        await self.room.close()
        await asyncio.gather(*(c.close() for c in self.clients.values()))
