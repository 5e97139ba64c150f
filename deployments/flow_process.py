"""Imported first by the process every flow run is forked from (`deployments/serve.py`'s forkserver).

It registers the Prefect-block settings source and reads the settings once, so each run starts with the
secrets from the blocks and pays nothing for them (no requests per run), and with the log format
(`LOG_FORMAT`) installed, which every forked run inherits. A failure here is left for the
run itself to report: the forkserver must start whatever the settings say.
"""

from __future__ import annotations

import contextlib

from blocks.settings_source import install
from models import get_settings
from models.log_format import configure_logging

install()
with contextlib.suppress(Exception):
    get_settings()
with contextlib.suppress(Exception):  # a bad LOG_FORMAT is the settings' error, reported by the run
    configure_logging()
