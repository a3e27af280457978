#!/usr/bin/python3
"""A hostile local user's tool against the guard service (standard library only).

Run as an unprivileged user by the attack tests (``setpriv --reuid=65534 ...``):

    attacker.py forge SOCKET UUID PID ADDRESS   own seccomp listener sent with another
                                                process's pid (or "self"); then a fake
                                                memslot ioctl whose argument is ADDRESS
    attacker.py send SOCKET HEXBYTES [fd]       one raw message (with an fd or none)
    attacker.py fuzz SOCKET COUNT SEED          COUNT random, truncated, oversized messages
                                                and fd sets
    attacker.py idle SOCKET COUNT SECONDS       COUNT connections that send nothing, reopened
                                                when the service closes one

Each prints one JSON line per answer it got (``{"answer": ...}``), or what happened.
"""

from __future__ import annotations

import ctypes
import json
import os
import random
import socket
import sys
import time

KVM_SET_USER_MEMORY_REGION = 0x4020AE46
_libc = ctypes.CDLL(None, use_errno=True)


def own_listener() -> int:
    """Install this process's own filter trapping ioctl(KVM_SET_USER_MEMORY_REGION)."""
    program = [
        (0x20, 0, 0, 0),                                # nr
        (0x15, 0, 3, 16),                               # ioctl?
        (0x20, 0, 0, 24),                               # args[1] low
        (0x15, 0, 1, KVM_SET_USER_MEMORY_REGION),
        (0x06, 0, 0, 0x7FC00000),                       # USER_NOTIF
        (0x06, 0, 0, 0x7FFF0000),                       # ALLOW
    ]
    array = (ctypes.c_uint64 * len(program))(
        *[code | jt << 16 | jf << 24 | k << 32 for code, jt, jf, k in program])
    fprog = (ctypes.c_uint16 * 8)()
    ctypes.memmove(fprog, ctypes.byref(ctypes.c_uint16(len(program))), 2)
    ctypes.memmove(ctypes.addressof(fprog) + 8, ctypes.byref(ctypes.c_void_p(
        ctypes.addressof(array))), 8)
    if _libc.prctl(38, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS")
    listener = _libc.syscall(317, 1, 1 << 3, ctypes.byref(fprog))
    if listener < 0:
        raise OSError(ctypes.get_errno(), "seccomp")
    return int(listener)


def exchange(path: str, message: bytes, fds: list[int], timeout: float = 30) -> object:
    """Send one message with ``fds``; the service's answer (decoded), or what went wrong."""
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    connection.settimeout(timeout)
    try:
        connection.connect(path)
        socket.send_fds(connection, [message], fds) if fds else connection.sendall(message)
        connection.shutdown(socket.SHUT_WR)
        data = connection.makefile("rb").readline()
    except OSError as err:
        return {"transport": str(err)}
    finally:
        connection.close()
    try:
        return json.loads(data)
    except ValueError:
        return {"unreadable": data.decode(errors="replace")}


def forge(path: str, uuid: str, pid: int, address: int) -> None:
    listener = own_listener()
    request = {"uuid": uuid, "pid": pid, "listener_fd": listener}
    answer = exchange(path, json.dumps(request).encode(), [listener])
    print(json.dumps({"answer": answer}), flush=True)
    os.close(listener)  # refused: the fake ioctl fails (ENOSYS) instead of waiting forever
    with open("/dev/null", "rb") as null:
        result = _libc.ioctl(null.fileno(), ctypes.c_ulong(KVM_SET_USER_MEMORY_REGION),
                             ctypes.c_void_p(address))
    print(json.dumps({"ioctl_errno": ctypes.get_errno() if result else 0}), flush=True)


def _random_message(rng: random.Random) -> bytes:
    shapes = [
        lambda: b"[]", lambda: b"null", lambda: b"1e999", lambda: b'"x"',
        lambda: json.dumps({"uuid": rng.choice(["x", 1, [], {}, None, "../..", "a" * 5000]),
                            "pid": rng.choice([[], {}, "1", -1, 2 ** 80, None, 1]),
                            "listener_fd": rng.choice([[], "3", -5, 2 ** 70, None, 3])}).encode(),
        lambda: json.dumps({"uuid": "00000000-0000-0000-0000-000000000000"}).encode(),
        lambda: b"{" * rng.randint(1, 5000),
        lambda: rng.randbytes(rng.randint(0, 8192)),
        lambda: json.dumps({"uuid": "x" * rng.randint(0, 100000)}).encode(),
        lambda: b'{"uuid": "\\ud800", "pid": 1}',
    ]
    message = rng.choice(shapes)()
    if rng.random() < 0.3:
        message = message[:rng.randint(0, len(message))]
    return message


def fuzz(path: str, count: int, seed: int) -> None:
    rng = random.Random(seed)
    answers: dict[str, int] = {}
    for _ in range(count):
        fds = [os.open("/dev/null", os.O_RDONLY) for _ in range(rng.choice([0, 1, 1, 2, 8]))]
        try:
            answer = exchange(path, _random_message(rng), fds, timeout=20)
        finally:
            for fd in fds:
                os.close(fd)
        key = "transport" if isinstance(answer, dict) and "transport" in answer else "answered"
        answers[key] = answers.get(key, 0) + 1
    print(json.dumps({"answers": answers}), flush=True)


def idle(path: str, count: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    held: list[socket.socket] = []
    opened = 0
    while time.monotonic() < deadline:
        for connection in list(held):  # the service closed it: open another
            connection.setblocking(False)
            try:
                if connection.recv(1) == b"":
                    held.remove(connection)
                    connection.close()
            except BlockingIOError:
                pass
        while len(held) < count:
            connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            connection.connect(path)
            held.append(connection)
            opened += 1
        time.sleep(0.05)
    print(json.dumps({"opened": opened}), flush=True)


def main() -> None:
    command, path, *rest = sys.argv[1:]
    if command == "forge":
        forge(path, rest[0], os.getpid() if rest[1] == "self" else int(rest[1]), int(rest[2], 0))
    elif command == "send":
        fds = [os.open("/dev/null", os.O_RDONLY)] if len(rest) > 1 else []
        print(json.dumps({"answer": exchange(path, bytes.fromhex(rest[0]), fds)}), flush=True)
    elif command == "fuzz":
        fuzz(path, int(rest[0]), int(rest[1]))
    elif command == "idle":
        idle(path, int(rest[0]), float(rest[1]))


if __name__ == "__main__":
    main()
