"""How a cmhost process writes its log: the level and the format (--log-level, --log-format)."""

from __future__ import annotations

import logging

from cmhost.config import Settings


def configure_logging(settings: Settings) -> None:
    """Log lines to standard error at the settings' level."""
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
