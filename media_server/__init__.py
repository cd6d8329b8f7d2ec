"""Conference media server: an aiortc SFU that forwards RTP without transcoding.

Run with ``python -m media_server``. It never imports Django; it talks to the
web tier only through the media control protocol (docs/protocol.md).
"""
