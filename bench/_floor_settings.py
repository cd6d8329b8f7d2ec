"""Settings of bench/web_floor.py's daphne: the project's, with the bench's URLconf (bench/_floor_app.py).

Used only by that benchmark; the app's own URLs and routes never contain the trivial endpoints.
"""

from __future__ import annotations

from conference.settings import *  # noqa: F403

ROOT_URLCONF = "bench._floor_app"
ASGI_APPLICATION = "bench._floor_app.application"
