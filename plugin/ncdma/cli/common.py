"""What every ncdma command shares: exit statuses, the root check, one way to print.

Every command takes ``--json``: its output, and its failure, is then one JSON document
with a ``schema_version`` on stdout (nothing else there).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from ncdma.errors import NcdmaError, NotRootError, UsageError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
JSON_SCHEMA_VERSION = 1


class Parser(argparse.ArgumentParser):
    """argparse's parser, but a usage error is raised (as :class:`UsageError`) so that the
    CLI can answer it in JSON too; its subcommand parsers are of this class as well."""

    def error(self, message: str) -> Any:  # argparse's signature is NoReturn
        """Raise the usage error instead of printing it and exiting."""
        raise UsageError(message, f"see `{self.prog} --help`")


def add_json(parser: argparse.ArgumentParser) -> None:
    """The ``--json`` option of a command."""
    parser.add_argument("--json", action="store_true",
                        help="print one JSON document on stdout (failures too)")


def require_root(what: str, uri: str | None = None) -> None:
    """Refuse, before libvirt is touched, a command that needs root run by another user.

    With ``uri`` None the command would use libvirt's default connection, which for a user
    other than root is qemu:///session (libvirt would start a session daemon there, with
    none of the system's domains): an explicit ``--connect`` is that user's own choice.

    :raise NotRootError: When not root and no ``--connect`` was given.
    """
    if os.geteuid() != 0 and uri is None:
        raise NotRootError(f"{what} needs root (it runs as uid {os.geteuid()})",
                           "run it as root, e.g. with sudo")


def emit(args: argparse.Namespace, document: dict[str, Any], text: str) -> None:
    """Print ``document`` (with ``--json``) or ``text``."""
    if getattr(args, "json", False):
        print(json.dumps({"schema_version": JSON_SCHEMA_VERSION, **document}, indent=2))
    else:
        print(text)


def error_document(err: NcdmaError) -> dict[str, Any]:
    """A failure as ``--json`` prints it."""
    return {"schema_version": JSON_SCHEMA_VERSION,
            "error": {"type": type(err).__name__, "message": err.message, "hint": err.hint,
                      "exit_status": err.exit_status}}


def print_error(err: NcdmaError, as_json: bool) -> None:
    """A failure as the operator sees it: one line on stderr, and the document with --json."""
    if as_json:
        print(json.dumps(error_document(err), indent=2))
    print(f"ncdma: error: {err}", file=sys.stderr)
