"""Logging set-up for ncdma's programs: syslog (journald) and a log file.

Each program logs under its own logger, whose name is its syslog identifier (the tag
before ``[pid]``; ``journalctl -t ncdma.hook``, ``grep 'ncdma.hook\\['``):

- ``ncdma.hook``: the libvirt hook (every operation on an opted-in domain; every
  failure with its traceback);
- ``ncdma.guardd``: the guard service (attach requests, refusals, guards started);
- ``ncdma.guard``: a domain's keeper and guard (decisions, restarts, QMP);
- ``ncdma.migrate``: every `ncdma migrate` run (outcome, downtime, where the domain runs).

The log file (ncdma.conf's ``log_file``) is reopened when logrotate has moved it
(``WatchedFileHandler``): the file data/logrotate/ncdma rotates it without copytruncate.
ncdma.conf's ``log_level`` is the least severe level written.

stderr is not a log here: for the hook and the wrapper it carries only the one-line
reason libvirt shows the operator.
"""

from __future__ import annotations

import logging
import logging.handlers
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
    logger.setLevel(settings.log_level.upper())
    logger.propagate = False
    for old in list(logger.handlers):  # configured again in one process (tests): no doubles
        logger.removeHandler(old)
        old.close()
    if settings.syslog and os.path.exists(SYSLOG_SOCKET):
        try:
            handler: logging.Handler = logging.handlers.SysLogHandler(address=SYSLOG_SOCKET)
            handler.setFormatter(logging.Formatter(_FORMAT))
            logger.addHandler(handler)
        except OSError:
            pass
    if settings.log_file is not None:
        try:
            settings.log_file.parent.mkdir(parents=True, exist_ok=True)
            handler = logging.handlers.WatchedFileHandler(settings.log_file, encoding="utf-8")
            handler.setFormatter(logging.Formatter("%(asctime)s " + _FORMAT))
            logger.addHandler(handler)
        except OSError:
            pass
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
    return logger
