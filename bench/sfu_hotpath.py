"""Micro-benchmark of the forwarding hot path (Forwarder.on_rtp -> 8 Downstreams), in process.

    .venv/bin/python bench/sfu_hotpath.py [ROOT ...]    # ROOT: a directory holding a media_server package

For each ROOT (default: this checkout) a subprocess feeds 20 000 synthetic
1100-byte VP8 packets to one Forwarder with 8 ready downstreams and prints
CPU µs per forwarded packet for these send functions: ``nosend`` (rewrite
only: header, extensions, history, SR batching), ``protect`` (+ SRTP
AES-256-GCM protect, as negotiated between aiortc peers), ``sendto``
(+ a loopback UDP send), and the media server's own send path
``aiortc_hooks.make_raw_sender`` in pure Python (``raw-python``) and with
the C fast path (``raw-native``, native/sfu_native); ``*/py-fanout`` rows run the
rewrite + fan-out in Python (``Downstream.forward``) instead of the C ``Fanout``. Hot caches and no event loop: this isolates the
code we own; the end-to-end figure is bench/sfu_forward.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import os, socket, sys, time
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket
from pylibsrtp import Policy, Session
from media_server import forwarder as F

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
rx.bind(("127.0.0.1", 0))
rx.setblocking(False)
tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
tx.setblocking(False)
addr = rx.getsockname()
policy = Policy(key=os.urandom(44), ssrc_type=Policy.SSRC_ANY_OUTBOUND, srtp_profile=Policy.SRTP_PROFILE_AEAD_AES_256_GCM)
holder = [Session(policy=policy)]

def sendto(data):
    try:
        tx.sendto(holder[0].protect(data), addr)
    except BlockingIOError:
        pass
    return True

sends = {"nosend": lambda d: True, "protect": lambda d: bool(holder[0].protect(d)), "sendto": sendto}

# The media server's own send path (aiortc_hooks.make_raw_sender) around a real asyncio datagram
# transport, with the pure-Python path and with the C fast path (native/sfu_native) when present.
import asyncio, inspect, types
from aiortc.rtcdtlstransport import State
from media_server import aiortc_hooks as H
loop = asyncio.new_event_loop()
transport, _ = loop.run_until_complete(loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)))
pair = types.SimpleNamespace(protocol=types.SimpleNamespace(transport=transport), remote_addr=addr)
dtls = types.SimpleNamespace(_state=State.CONNECTED, _tx_srtp=None,
                             transport=types.SimpleNamespace(_connection=types.SimpleNamespace(_nominated={1: pair})))
native_param = "native" in inspect.signature(H.make_raw_sender).parameters
variants = {"raw-python": None, "raw-native": getattr(H, "NATIVE", None)} if native_param else {"raw-python": None}
for name, native in variants.items():
    if name == "raw-native" and native is None:
        continue
    kwargs = {"native": native} if native_param else {}
    raw = [None]
    def raw_send(d, raw=raw, kwargs=kwargs):
        if raw[0] is None or dtls._tx_srtp is not holder[0]:
            dtls._tx_srtp = holder[0]
            raw[0] = H.make_raw_sender(dtls, **kwargs)
        return raw[0](d)
    sends[name] = raw_send
payload = b"\x10\x00" + os.urandom(1098)
packets = [RtpPacket(payload_type=96, sequence_number=i & 0xFFFF, timestamp=i * 700, ssrc=5, payload=payload) for i in range(20000)]
runs = [(mode, send, {}) for mode, send in sends.items()]
if "native" in inspect.signature(F.Forwarder).parameters and getattr(H, "NATIVE", None) is not None:
    # The same with the rewrite + fan-out in Python (Downstream.forward) instead of the C Fanout.
    runs += [(mode + "/py-fanout", sends[mode], {"native": None}) for mode in ("nosend", "raw-native") if mode in sends]
for mode, send, fwd_kwargs in runs:
    fwd = F.Forwarder(kind="video", request_keyframe=lambda: None, **fwd_kwargs)
    for i in range(8):
        d = F.Downstream(kind="video", ssrc=1000 + i, rtx_ssrc=2000 + i, send=send, initial_sequence=1, initial_timestamp=1)
        d.configure(pt_by_codec={"video/vp8": 96}, rtx_pt_by_pt={96: 97}, ext_ids=F.ExtensionIds(abs_send_time=3))
        d.ready = True
        fwd.attach(d)
    best = 1e9
    for _ in range(3):
        holder[0] = Session(policy=policy)  # fresh replay window: the same sequence numbers are sent again
        start = time.process_time()
        for n, p in enumerate(packets):
            fwd.on_rtp(p, VP8)
            if n % 16 == 0:
                try:
                    while True:
                        rx.recv(2048)
                except BlockingIOError:
                    pass
        best = min(best, (time.process_time() - start) / (len(packets) * 8) * 1e6)
    print(f"  {mode:20s} {best:5.2f} us CPU per forwarded packet")
"""


def main() -> None:
    roots = [Path(a).resolve() for a in sys.argv[1:]] or [ROOT]
    for root in roots:
        print(root)
        env = {**os.environ, "PYTHONPATH": str(root)}
        subprocess.run([sys.executable, "-c", CHILD], cwd=root, env=env, check=True)


if __name__ == "__main__":
    main()
