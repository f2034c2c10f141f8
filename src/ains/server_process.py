"""The app of one `ains serve --workers N` server process: uvicorn imports this module in each one and calls `app`.

Nothing of AINS is imported until `app` runs, so the directory the server processes count in
(PROMETHEUS_MULTIPROC_DIR, see `ains.core.metrics`) can be made again first: prometheus_client opens its file there
as the metrics are imported, and a server process restarted after the directory was removed (by a cleaner of old
temporary files, say) would otherwise fail as it started, and be restarted, again and again.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI


def app() -> FastAPI:
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        os.makedirs(directory, exist_ok=True)
    from ains.core.config import Settings
    from ains.core.logging import configure_logging
    from ains.main import SUPERVISOR_PID_VARIABLE, create_app

    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    supervisor = os.environ.get(SUPERVISOR_PID_VARIABLE)
    return create_app(settings, supervisor_pid=int(supervisor) if supervisor else None)
