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
import os

from ncdma.settings import Settings

SYSLOG_SOCKET = "/dev/log"
_FORMAT = "%(name)s[%(process)d]: %(levelname)s: %(message)s"


class ReopeningFileHandler(logging.FileHandler):
    """A log file reopened once it was moved or removed (logrotate without copytruncate):
    what logging.handlers.WatchedFileHandler does, without importing logging.handlers (and
    its socket, pickle and queue) into the hook."""

    def emit(self, record: logging.LogRecord) -> None:
        """Write ``record``, to a new file at the path if the open one is not there."""
        if self.stream is not None:
            try:
                here = os.stat(self.baseFilename)
                moved = (here.st_dev, here.st_ino) != _identity(self.stream.fileno())
            except FileNotFoundError:
                moved = True
            if moved:
                self.stream.close()
                self.stream = self._open()
        super().emit(record)


def _identity(fd: int) -> tuple[int, int]:
    info = os.fstat(fd)
    return info.st_dev, info.st_ino


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
            handler = ReopeningFileHandler(settings.log_file, encoding="utf-8")
            handler.setFormatter(logging.Formatter("%(asctime)s " + _FORMAT))
            logger.addHandler(handler)
        except OSError:
            pass
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
    return logger
