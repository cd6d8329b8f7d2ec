"""Entry point: ``python -m media_server [flags]`` (see media_server/config.py)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

from aiohttp import web

from . import aiortc_hooks
from .config import Config, ConfigError, parse_config
from .control import create_app
from .events import EventSink
from .registry import NodeRegistrar
from .service import MediaService

logger = logging.getLogger("media_server")


async def serve(config: Config, stop: asyncio.Event) -> None:
    """Run the control listener and event sink until ``stop`` is set, then close everything."""
    aiortc_hooks.set_ice_host_addresses(config.ice_addresses)
    aiortc_hooks.set_mdns_candidates_learned()  # browsers' `.local` candidates: learned from their checks
    aiortc_hooks.set_in_progress_checks_resent()  # ICE back at once after a UDP outage
    aiortc_hooks.set_lazy_bitrate_estimators()  # ~1 ms less per video m-line of every subscribe offer
    aiortc_hooks.set_fast_codec_copies()
    aiortc_hooks.set_shared_certificate()  # one DTLS certificate and context per process, not per connection
    aiortc_hooks.set_sdp_reuse()  # aiortc takes the description the server parsed to validate an SDP
    events = EventSink(
        url=config.events_url, secret=config.secret, node_id=config.node_id, max_queue=config.event_queue_size
    )
    events.start()
    service = MediaService(config, events)
    await service.start_relay()
    runner = web.AppRunner(
        create_app(service, config.secret, config.metrics_token, accept_bearer=config.dev), access_log=None
    )
    await runner.setup()
    site = web.TCPSite(runner, config.control_host, config.control_port)
    await site.start()
    logger.info("media server %s listening on %s:%s", config.node_id, config.control_host, config.control_port)
    registrar = NodeRegistrar(service) if config.redis_url else None
    if registrar is not None:
        registrar.start()
    try:
        await stop.wait()
    finally:
        if registrar is not None:
            await registrar.close()  # first: Django moves this node's rooms while it shuts down
        await runner.cleanup()
        await service.close()
        await events.close()


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if os.environ.get("MEDIA_BWE_TRACE") == "1":  # each subscriber's send-side estimator, every 0.5 s
        logging.getLogger("media_server.bwe").setLevel(logging.DEBUG)
    try:
        config = parse_config(sys.argv[1:] if argv is None else argv)
    except ConfigError as exc:
        print(f"media_server: {exc}", file=sys.stderr)
        return 2

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve(config, stop)

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
