#!/usr/bin/python3
"""A stand-in for a hostile QEMU (standard library only): serves the private QMP socket the
wrapper asked for, and once the guard has connected, replaces the socket's path with a
symlink to ``$FAKE_QEMU_SWAP_TO`` before answering the guard's handshake.

Prints "swapped" when it did; exits 3 s later.
"""

from __future__ import annotations

import json
import os
import socket
import sys


def qmp_path(argv: list[str]) -> str:
    """The socket path of ``-qmp unix:PATH,server=on,wait=off``."""
    value = argv[argv.index("-qmp") + 1]
    return value.removeprefix("unix:").split(",")[0]


def main() -> None:
    path = qmp_path(sys.argv)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    server.settimeout(20)
    connection, _ = server.accept()
    connection.settimeout(20)
    connection.sendall(json.dumps({"QMP": {"version": {"qemu": {"major": 10, "minor": 0,
                                                                 "micro": 0}, "package": ""},
                                           "capabilities": []}}).encode() + b"\r\n")
    command = json.loads(connection.recv(65536))  # qemu.qmp ends a message without a newline
    link = f"{path}.link"
    os.symlink(os.environ["FAKE_QEMU_SWAP_TO"], link)
    os.rename(link, path)
    print("swapped", flush=True)
    reply = {"return": {}, **({"id": command["id"]} if "id" in command else {})}
    connection.sendall(json.dumps(reply).encode() + b"\r\n")
    connection.settimeout(3)  # the guard's chmod, if it makes one, comes right after
    try:
        while connection.recv(65536):
            pass
    except OSError:
        pass


if __name__ == "__main__":
    main()
