"""The attach exchange between the emulator wrapper and the guard service (both sides).

The wrapper connects, installs its filter and sends one JSON request with the listener
attached (SCM_RIGHTS): ``{"uuid": UUID, "pid": PID, "listener_fd": N}``. The service
answers one JSON line, ``{"ok": true, "qmp_socket": PATH}`` or ``{"ok": false, "error":
TEXT}``. After an ok the wrapper sends :data:`ACK` and execs QEMU; the service starts the
guard only once it has the ACK, so a wrapper that gave up never leaves a guard behind
(a guard without QEMU's QMP socket).

Both sides bound the exchange by :data:`ATTACH_TIMEOUT_S`: the service gives up
:data:`SERVICE_MARGIN_S` earlier than the wrapper, so that its refusal arrives in time.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from ncdma.errors import AttachRequestError

ATTACH_TIMEOUT_S = 10.0
SERVICE_MARGIN_S = 2.0
MAX_REQUEST = 4096
ACK = b"1"
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_MAX_PID = 1 << 22  # PID_MAX_LIMIT
_MAX_FD = 1 << 20


@dataclass(frozen=True)
class AttachRequest:
    """What a wrapper asks: guard domain ``uuid``; its pid; its listener's number there."""

    uuid: str
    pid: int
    listener_fd: int

    def to_bytes(self) -> bytes:
        """The request as sent."""
        return json.dumps({"uuid": self.uuid, "pid": self.pid,
                           "listener_fd": self.listener_fd}).encode()


def _whole(value: Any, name: str, limit: int) -> int:
    if type(value) is not int or not 0 <= value < limit:
        raise AttachRequestError(f"{name} must be a whole number from 0 to {limit - 1}")
    return value


def parse_request(data: bytes) -> AttachRequest:
    """The request in ``data``, checked against the protocol.

    :raise AttachRequestError: When it is not JSON, not an object of exactly these three keys,
        or a value has the wrong type or range.
    """
    try:
        document = json.loads(data)
    except (ValueError, RecursionError):
        raise AttachRequestError("the request is not a JSON document") from None
    if not isinstance(document, dict) or set(document) != {"uuid", "pid", "listener_fd"}:
        raise AttachRequestError("the request must be an object with uuid, pid and listener_fd")
    uuid = document["uuid"]
    if not isinstance(uuid, str) or not _UUID.fullmatch(uuid):
        raise AttachRequestError("uuid must be a domain UUID")
    return AttachRequest(uuid, _whole(document["pid"], "pid", _MAX_PID),
                         _whole(document["listener_fd"], "listener_fd", _MAX_FD))


def answer_bytes(answer: dict[str, Any]) -> bytes:
    """One answer line."""
    return json.dumps(answer).encode() + b"\n"


def refusal(error: str) -> dict[str, Any]:
    """The answer that refuses, with why."""
    return {"ok": False, "error": error}
