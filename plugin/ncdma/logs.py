"""Logging set-up for programs libvirt runs (the hook, the wrapper): syslog and a log file.

stderr is not a log here: it carries only the one-line reason libvirt shows the operator.
"""

from __future__ import annotations

import logging
import os

from ncdma.settings import Settings

SYSLOG_SOCKET = "/dev/log"
_FORMAT = "%(name)s[%(process)d]: %(levelname)s: %(message)s"


def configure_logging(settings: Settings, program: str) -> logging.Logger:
    """The logger of ``program`` (e.g. 'hook'), writing to syslog and the log file.

    A handler that cannot be opened (no syslog socket, unwritable directory) is left
    out: logging must never be the reason an operation fails.
    """
    logger = logging.getLogger(f"ncdma.{program}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    if settings.syslog and os.path.exists(SYSLOG_SOCKET):
        # imported here: a host without syslog skips its imports (socket, pickle, queue)
        from logging.handlers import SysLogHandler

        try:
            handler: logging.Handler = SysLogHandler(address=SYSLOG_SOCKET)
            handler.setFormatter(logging.Formatter(_FORMAT))
            logger.addHandler(handler)
        except OSError:
            pass
    if settings.log_file is not None:
        try:
            settings.log_file.parent.mkdir(parents=True, exist_ok=True)
            handler = logging.FileHandler(settings.log_file, encoding="utf-8")
            handler.setFormatter(logging.Formatter("%(asctime)s " + _FORMAT))
            logger.addHandler(handler)
        except OSError:
            pass
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
    return logger
