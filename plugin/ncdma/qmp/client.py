"""The QMP client: learns a running QEMU's memory layout over its QMP socket.

It only produces :class:`ncdma.model.layout.Layout` snapshots, which the guard then reads without
ever waiting on QEMU: while QEMU sits in a trapped memslot ioctl it holds its big lock, and
a QMP request would not be answered until the ioctl returns. Every call here is bounded by
a timeout and fails with :class:`ncdma.errors.QmpError`, whose message names the socket or
the command. After a QmpError the session may hold a late reply: disconnect it.

Devices are found by QOM type under /machine/peripheral (devices with an id: libvirt
names them by alias, e.g. 'video0') and /machine/peripheral-anon (devices without one).
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from qemu.qmp import (ConnectError, ExecInterruptedError, ExecuteError, QMPClient, QMPError,
                      Runstate, StateError)
from tenacity import AsyncRetrying, retry_if_exception_type, stop_before_delay, wait_exponential

from ncdma.errors import QmpError
from ncdma.model.layout import (FlatRange, Layout, QomGpu, build_layout, device_path, gpu_children,
    parse_flat_view, parse_pci, parse_ramblocks, parse_version)

PERIPHERALS = ("/machine/peripheral", "/machine/peripheral-anon")
_NOT_THERE_YET = (FileNotFoundError, ConnectionRefusedError)


@asynccontextmanager
async def _deadline(timeout: float, doing: str) -> AsyncIterator[None]:
    """Bound the block by ``timeout`` seconds; running out is a QmpError."""
    try:
        async with asyncio.timeout(timeout):
            yield
    except TimeoutError:
        raise QmpError(f"QEMU did not answer within {timeout:g} s while {doing}",
                       "QEMU may be paused by a signal, hung, or serving another QMP client "
                       "(one at a time); check it with ps or virsh domstate", doing) from None


async def _unix_socket(path: str) -> socket.socket:
    """A non-blocking unix stream socket connected to ``path``."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, path)
    except BaseException:
        sock.close()
        raise
    return sock


async def _socket_when_there(path: str, timeout: float) -> socket.socket:
    """Connect to ``path``, retrying while it does not exist yet or refuses (QEMU starting)."""
    retrying = AsyncRetrying(retry=retry_if_exception_type(_NOT_THERE_YET),
                             wait=wait_exponential(multiplier=0.01, max=0.2),
                             stop=stop_before_delay(timeout), reraise=True)
    try:
        return await retrying(_unix_socket, path)
    except FileNotFoundError:
        raise QmpError(f"QMP socket {path} did not appear within {timeout:g} s",
                       "check that QEMU runs with -qmp unix:PATH,server=on,wait=off") from None
    except ConnectionRefusedError:
        raise QmpError(f"QMP socket {path} refuses connections (for {timeout:g} s)",
                       "QEMU has exited and left its socket behind; check that it runs") from None
    except OSError as err:
        raise QmpError(f"cannot connect to QMP socket {path}: {err.strerror or err}",
                       "check the path and that this user may open it") from err


def _check_server(sock: socket.socket, path: str, server_pid: int) -> None:
    """The process serving the connection must be ``server_pid`` (SO_PEERCRED)."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid = struct.unpack("3i", raw)[0]
    if pid != server_pid:
        sock.close()
        raise QmpError(f"{path} is served by pid {pid}, not QEMU {server_pid}: not believed",
                       "something replaced QEMU's QMP socket; see the ncdma log")


async def connect(socket_path: str | os.PathLike[str], timeout: float,
                  server_pid: int | None = None) -> QMPClient:
    """A QMP session on QEMU's unix socket, waiting up to ``timeout`` seconds in all for
    the socket to appear and for QEMU's greeting. With ``server_pid``, only that process
    is believed to be QEMU (the path may be in a directory QEMU's user owns).

    :raise QmpError: When the socket does not appear, refuses, another process serves it,
        or QEMU does not greet in time.
    """
    path = os.fspath(socket_path)
    client = QMPClient("ncdma")
    async with _deadline(timeout, f"connecting to {path}"):
        sock = await _socket_when_there(path, timeout)
        if server_pid is not None:
            _check_server(sock, path, server_pid)
        try:
            await client.connect(sock)
        except ConnectError as err:
            raise QmpError(f"no QMP session on {path}: {err}",
                           "check that it is QEMU's QMP socket, not a chardev or HMP") from err
        finally:
            if client.runstate != Runstate.RUNNING:
                sock.close()
    return client


async def disconnect(client: QMPClient, timeout: float) -> None:
    """End the session. A connection QEMU already broke (it exited) is not an error here.

    :raise QmpError: When the session does not close within ``timeout`` seconds.
    """
    async with _deadline(timeout, "disconnecting"):
        try:
            await client.disconnect()
        except (EOFError, OSError, QMPError):
            pass  # the reader saw QEMU go away: the session is closed all the same


@asynccontextmanager
async def session(socket_path: str | os.PathLike[str], timeout: float
                  ) -> AsyncIterator[QMPClient]:
    """A connected client for the block, disconnected at the end (see :func:`connect`)."""
    client = await connect(socket_path, timeout)
    try:
        yield client
    finally:
        await disconnect(client, timeout)


async def _execute(client: QMPClient, command: str,
                   arguments: Mapping[str, object] | None = None) -> Any:
    """One QMP command's return value; failures become QmpError."""
    what = command if arguments is None else f"{command} {dict(arguments)}"
    try:
        return await client.execute(command, arguments)
    except ExecuteError as err:
        raise QmpError(f"QEMU refused {what}: {err}",
                       "check the QEMU version (ncdma needs QEMU >= 7.2) and the device "
                       "configuration", command, err.error_class) from err
    except (ExecInterruptedError, StateError) as err:
        raise QmpError(f"the QMP connection closed during {what}: QEMU exited or crashed",
                       "check QEMU's log, then reconnect to a running QEMU", command) from err


@contextmanager
def _reading(what: str) -> Iterator[None]:
    """An answer the block cannot read (ValueError) is a QmpError naming ``what``."""
    try:
        yield
    except ValueError as err:
        raise QmpError(f"cannot read QEMU's {what}: {err}",
                       "this QEMU's answer is unknown to ncdma; report it with the QEMU "
                       "version", what) from err


async def _human(client: QMPClient, command_line: str) -> str:
    """The text of an HMP command."""
    return str(await _execute(client, "human-monitor-command", {"command-line": command_line}))


async def _property_names(client: QMPClient, path: str) -> set[str]:
    return {prop["name"] for prop in await _execute(client, "qom-list", {"path": path})}


async def _get(client: QMPClient, path: str, prop: str) -> Any:
    return await _execute(client, "qom-get", {"path": path, "property": prop})


async def _root_bus_number(client: QMPClient, bus: str, host: str) -> int:
    """0 for the machine's host bridge; a PCI expander's (pxb) own bus_nr, found by the
    expander's id, which QEMU gives its root bus as name."""
    if not str(await _get(client, host, "type")).startswith("pxb"):
        return 0
    name = bus.rpartition("/")[2]
    if name not in await _property_names(client, PERIPHERALS[0]):
        raise QmpError(f"cannot tell the bus number of PCI expander bus {name}",
                       "give the pxb device an id (libvirt always does)", "qom-list")
    return int(await _get(client, f"{PERIPHERALS[0]}/{name}", "bus_nr"))


async def _pci_address(client: QMPClient, path: str) -> str:
    """QEMU's device path of the PCI device at QOM ``path``: its slot.function and
    those of the bridges above it, walked up parent_bus links to a root bus."""
    hops = []
    node = path
    while True:
        hops.append(str(await _get(client, node, "legacy-addr")))
        bus = str(await _get(client, node, "parent_bus"))
        owner = bus.rpartition("/")[0]
        if "legacy-addr" not in await _property_names(client, owner):
            return device_path(await _root_bus_number(client, bus, owner), hops[::-1])
        node = owner


async def _gpus(client: QMPClient) -> list[QomGpu]:
    """The virtio-gpu devices of every flavour, with their PCI address and hostmem size."""
    found = []
    for container in PERIPHERALS:
        listing = await _execute(client, "qom-list", {"path": container})
        for name, driver in gpu_children(listing):
            path = f"{container}/{name}"
            hostmem = int(await _get(client, path, "hostmem")) \
                if "hostmem" in await _property_names(client, path) else 0
            found.append(QomGpu(path, driver, await _pci_address(client, path), hostmem))
    return found


async def flat_view(client: QMPClient, timeout: float) -> tuple[FlatRange, ...]:
    """The flat view of guest-physical memory (address space 'memory'), KVM ranges marked.

    :raise QmpError: When QEMU does not answer in time, or its answer cannot be read.
    """
    async with _deadline(timeout, "reading the flat view (info mtree -f)"):
        text = await _human(client, "info mtree -f")
    with _reading("info mtree -f"):
        return parse_flat_view(text)


async def discover_layout(client: QMPClient, timeout: float,
                          clock: Callable[[], float] = time.monotonic) -> Layout:
    """A snapshot of the layout: virtio-gpu devices and their BARs, RAMBlocks, guest RAM.
    ``taken_at`` is ``clock()`` before the first question; a guest that runs meanwhile may
    move BARs, so the snapshot is only as consistent as the guest was quiet.

    :raise QmpError: When QEMU does not answer within ``timeout`` seconds in all, refuses
        a command, goes away, or gives an answer ncdma cannot read.
    """
    taken_at = clock()
    async with _deadline(timeout, "discovering the memory layout"):
        version = await _execute(client, "query-version")
        gpus = await _gpus(client)
        pci = await _execute(client, "query-pci")
        memdevs = [m["id"] for m in await _execute(client, "query-memdev") if "id" in m]
        ramblocks = await _human(client, "info ramblock")
        mtree = await _human(client, "info mtree -f")
    with _reading("query-version"):
        qemu_version = parse_version(version)
    with _reading("query-pci"):
        functions = parse_pci(pci)
    with _reading("info ramblock"):
        blocks = parse_ramblocks(ramblocks)
    with _reading("info mtree -f"):
        flat = parse_flat_view(mtree)
    with _reading("memory layout"):
        return build_layout(qemu_version, gpus, functions, blocks, flat, memdevs, taken_at)


def discover_layout_sync(socket_path: str | os.PathLike[str], timeout: float) -> Layout:
    """:func:`discover_layout` for callers outside asyncio: connect, discover, disconnect,
    each bounded by ``timeout`` seconds.

    :raise QmpError: As :func:`connect` and :func:`discover_layout`.
    """
    async def run() -> Layout:
        async with session(socket_path, timeout) as client:
            return await discover_layout(client, timeout)

    return asyncio.run(run())
