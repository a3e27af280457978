"""up is idempotent, down then up works, and up recovers a crashed host.

Each test leaves the lab up, so the tests after it keep working.
"""
from __future__ import annotations

import os
import signal
import socket
import time

import pytest

from lab import config

pytestmark = pytest.mark.lab


def lab_inits() -> list[int]:
    """Pids of every lab host init on this machine."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = open(f"/proc/{entry}/cmdline", "rb").read().split(b"\0")
        except FileNotFoundError:
            continue
        if argv[1:3] == [b"-m", b"lab.init"]:
            found.append(int(entry))
    return found


def test_up_is_idempotent(lab) -> None:
    pids = {name: host.pid for name, host in lab.hosts.items()}
    began = time.monotonic()
    assert lab.up() is False
    elapsed = time.monotonic() - began
    assert {name: host.pid for name, host in lab.hosts.items()} == pids
    assert elapsed < 10, f"a second up took {elapsed:.1f} s"


def test_down_then_up(lab) -> None:
    began = time.monotonic()
    lab.down()
    print(f"down: {time.monotonic() - began:.2f} s")
    assert not any(host.running for host in lab.hosts.values())
    assert lab_inits() == []
    for spec in config.HOSTS:
        with socket.socket() as sock:
            assert sock.connect_ex((spec.address, 22)) != 0
    lab.down()  # idempotent
    began = time.monotonic()
    assert lab.up() is True
    print(f"up: {time.monotonic() - began:.2f} s")
    assert lab.is_up()


def test_up_recovers_a_crashed_host(lab) -> None:
    h1, h2 = lab.host("h1"), lab.host("h2")
    crashed, survivor = h1.pid, h2.pid
    os.kill(crashed, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while h1.running:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert lab.up() is True
    assert h1.pid not in (None, crashed)
    assert h2.pid == survivor
    assert lab.is_up()
