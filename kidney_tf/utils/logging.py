"""Package logger: one place that decides how kidney_tf talks to users."""

from __future__ import annotations

import logging

LOGGER_NAME = "kidney_tf"


def get_logger(name: str | None = None) -> logging.Logger:
    """Return the package logger or a child of it (``get_logger(__name__)``)."""
    if name is None or name == LOGGER_NAME:
        return logging.getLogger(LOGGER_NAME)
    if not name.startswith(LOGGER_NAME):
        name = f"{LOGGER_NAME}.{name}"
    return logging.getLogger(name)


def configure_cli_logging(quiet: bool = False, verbose: bool = False) -> None:
    """Plain ``message`` lines on stderr for the CLI; warnings only with ``quiet``."""
    level = logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO)
    logger = logging.getLogger(LOGGER_NAME)
    logger.handlers.clear()
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
