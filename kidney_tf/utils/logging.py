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


def quiet_tensorflow() -> None:
    """Keep TensorFlow's native start-up log lines (``I0000 … cudart_stub``, ``E0000 … failed
    call to cuInit … (303)``, absl's "before InitializeLog" banner) off the terminal.

    Sets ``TF_CPP_MIN_LOG_LEVEL=3`` (2, a common shell setting, still lets cuInit through) and, until TensorFlow is first
    imported, a hook that sends file descriptor 2 to a temp file for the import alone (native
    code writes there directly, below Python's ``sys.stderr``); a failed import replays it.
    The CLI calls this unless ``-v``. Usage: ``quiet_tensorflow()`` before TF is imported.
    """
    import os
    import sys

    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    if "tensorflow" in sys.modules or any(isinstance(f, _QuietImport) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _QuietImport())


class _QuietImport:
    """``sys.meta_path`` finder that runs the first ``import tensorflow`` with fd 2 captured."""

    def find_spec(self, name, path=None, target=None):
        import importlib.util
        import sys

        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)  # once; and find the real spec without this finder
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


class _QuietLoader:
    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        import os
        import sys
        import tempfile

        sys.stderr.flush()
        saved = os.dup(2)
        with tempfile.TemporaryFile() as captured:
            os.dup2(captured.fileno(), 2)
            try:
                self.loader.exec_module(module)
            except BaseException:
                os.dup2(saved, 2)
                captured.seek(0)
                sys.stderr.write(captured.read().decode("utf-8", "replace"))
                raise
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                os.close(saved)
