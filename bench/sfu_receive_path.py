"""In-process cost of a publisher's SRTP packet from the datagram callback through the fan-out.

    .venv/bin/python bench/sfu_receive_path.py [--packets N] [--downstreams 8] [--python-receive]
    valgrind --tool=callgrind --callgrind-out-file=/dev/null .venv/bin/python bench/sfu_receive_path.py --packets N

One video stream (1100-byte payloads) of a real aiortc receiver, hooked like the media server does
(``ForwardingReceiver``, ``install_fast_receive``, a ``Forwarder`` with ``--downstreams`` steady-state
downstreams whose ``send`` is ``len``: the SRTP protect + ``sendto`` of each copy is not counted), fed the
protected datagrams through the ICE connection's ``data_received``. ``--python-receive`` keeps the receive
path in Python (the C fan-out stays), as before the C receive path. Prints CPU µs per incoming packet (hot
loop); under valgrind, run with ``--packets 0`` and ``--packets N`` and divide the difference of the
instruction counts by N for instructions per incoming packet.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import _media_common  # noqa: F401 (puts the repository root on sys.path)
import pylibsrtp
from aiortc import RTCPeerConnection
from aiortc.rtcdtlstransport import State
from aiortc.rtcrtpparameters import RTCRtpCodecParameters, RTCRtpDecodingParameters, RTCRtpReceiveParameters

from media_server import aiortc_hooks
from media_server.forwarder import Downstream, ExtensionIds, Forwarder

KEY = bytes(range(30))


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--packets", type=int, default=20000)
    parser.add_argument("--downstreams", type=int, default=8)
    parser.add_argument("--python-receive", action="store_true")
    args = parser.parse_args()
    pc = RTCPeerConnection()
    receiver = pc.addTransceiver("video", direction="recvonly").receiver
    dtls = receiver.transport
    fwd = Forwarder(kind="video", request_keyframe=lambda: None)
    hook = aiortc_hooks.ForwardingReceiver(receiver, "video", fwd.on_rtp)
    aiortc_hooks.install_fast_receive(dtls, [hook], native=None if args.python_receive else aiortc_hooks.NATIVE)
    await hook._receive(
        RTCRtpReceiveParameters(
            codecs=[RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)],
            encodings=[RTCRtpDecodingParameters(ssrc=1111, payloadType=96)],
            muxId="0",
        )
    )
    dtls._rx_srtp = pylibsrtp.Session(pylibsrtp.Policy(key=KEY, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND))
    dtls._state = State.CONNECTED
    for i in range(args.downstreams):
        d = Downstream(kind="video", ssrc=1000 + i, rtx_ssrc=2000 + i, send=len)
        d.configure(pt_by_codec={"video/vp8": 100}, rtx_pt_by_pt={}, ext_ids=ExtensionIds())
        d.ready = True
        fwd.attach(d)
    tx = pylibsrtp.Session(pylibsrtp.Policy(key=KEY, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND))
    warm = 200
    datagrams = [
        tx.protect(
            bytes([0x80, 96 | (0x80 if n % 8 == 0 else 0)])
            + n.to_bytes(2, "big")
            + (n * 3000 & 0xFFFFFFFF).to_bytes(4, "big")
            + (1111).to_bytes(4, "big")
            + (b"\x10\x00\x9d\x01\x2a" if n == 0 else b"\x10\x01")
            + bytes(1100)
        )
        for n in range(warm + args.packets)
    ]
    receive = dtls.transport._connection.data_received
    for data in datagrams[:warm]:  # keyframe, registration, caches
        receive(data, 1)
    start = time.process_time()
    for data in datagrams[warm:]:
        receive(data, 1)
    spent = time.process_time() - start
    native = hook.native_receive.native_packets if hook.native_receive is not None else 0
    if args.packets:
        print(
            f"{'python' if args.python_receive else 'C'} receive, {args.downstreams} downstreams: "
            f"{spent / args.packets * 1e6:.2f} us CPU per incoming packet "
            f"({native} packets took the C receive path; forwarded {fwd.downstreams[0].packets_sent} per downstream)"
        )
    dtls._state = State.CLOSED
    await pc.close()


if __name__ == "__main__":
    asyncio.run(main())
