"""`ncdma migrate` speaks `virsh migrate` (issue 18): every option of this machine's
`virsh help migrate` (Debian 12's libvirt 9.0, the oldest ncdma supports) is accepted, each
switch is libvirt's own flag bit and each value libvirt's own parameter, virsh's rules
between options hold, and with --p2p the client never opens the destination URI (a socket
listening there sees no connection; without --p2p it sees one)."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import libvirt
import pytest

from ncdma.cli.main import build_parser
from ncdma.errors import UsageError
from ncdma.migrate.options import (FILE_OPTIONS, FLAG_OPTIONS, PARAM_OPTIONS, MigrateOptions,
                                   virsh_option_names)

# virsh's switch -> libvirt's flag, by libvirt's name (virsh-domain.c, doMigrate)
LIBVIRT_FLAGS = {
    "live": "LIVE", "offline": "OFFLINE", "p2p": "PEER2PEER", "tunnelled": "TUNNELLED",
    "persistent": "PERSIST_DEST", "undefinesource": "UNDEFINE_SOURCE", "suspend": "PAUSED",
    "copy-storage-all": "NON_SHARED_DISK", "copy-storage-inc": "NON_SHARED_INC",
    "copy-storage-synchronous-writes": "NON_SHARED_SYNCHRONOUS_WRITES",
    "change-protection": "CHANGE_PROTECTION", "unsafe": "UNSAFE", "compressed": "COMPRESSED",
    "auto-converge": "AUTO_CONVERGE", "rdma-pin-all": "RDMA_PIN_ALL",
    "abort-on-error": "ABORT_ON_ERROR", "postcopy": "POSTCOPY",
    "postcopy-resume": "POSTCOPY_RESUME", "zerocopy": "ZEROCOPY", "tls": "TLS",
    "parallel": "PARALLEL"}
# virsh's valued option -> libvirt's typed parameter, by libvirt's name
LIBVIRT_PARAMS = {
    "migrateuri": "URI", "graphicsuri": "GRAPHICS_URI", "listen-address": "LISTEN_ADDRESS",
    "dname": "DEST_NAME", "migrate-disks": "MIGRATE_DISKS", "disks-port": "DISKS_PORT",
    "disks-uri": "DISKS_URI", "comp-methods": "COMPRESSION",
    "comp-mt-level": "COMPRESSION_MT_LEVEL", "comp-mt-threads": "COMPRESSION_MT_THREADS",
    "comp-mt-dthreads": "COMPRESSION_MT_DTHREADS",
    "comp-xbzrle-cache": "COMPRESSION_XBZRLE_CACHE",
    "auto-converge-initial": "AUTO_CONVERGE_INITIAL",
    "auto-converge-increment": "AUTO_CONVERGE_INCREMENT",
    "postcopy-bandwidth": "BANDWIDTH_POSTCOPY", "parallel-connections": "PARALLEL_CONNECTIONS",
    "bandwidth": "BANDWIDTH", "tls-destination": "TLS_DESTINATION", "xml": "DEST_XML",
    "persistent-xml": "PERSIST_XML"}


def virsh_options() -> set[str]:
    text = subprocess.run(["virsh", "help", "migrate"], capture_output=True, text=True,
                          check=True).stdout
    section = text.split("OPTIONS", 1)[1]
    return set(re.findall(r"^\s+\[?--([a-z0-9-]+)\]?", section, re.MULTILINE))


def options(*argv: str) -> MigrateOptions:
    return MigrateOptions.from_args(build_parser().parse_args(["migrate", *argv]))


def test_every_virsh_migrate_option_is_accepted_and_nothing_else_is_claimed() -> None:
    found = virsh_options()
    assert len(found) >= 47, found  # the libvirt 9.0 list, domain and desturi included
    assert virsh_option_names() == found
    migrate = build_parser()._subparsers._group_actions[0].choices["migrate"]  # type: ignore
    accepted = {option[2:] for action in migrate._actions for option in action.option_strings}
    assert found <= accepted


def test_each_switch_is_libvirts_own_flag_bit() -> None:
    assert set(LIBVIRT_FLAGS) == set(FLAG_OPTIONS)
    for name, libvirt_name in LIBVIRT_FLAGS.items():
        assert options("vm", "qemu+ssh://h2/system", f"--{name}").flags() == \
            getattr(libvirt, f"VIR_MIGRATE_{libvirt_name}"), name


def test_each_value_is_libvirts_own_parameter() -> None:
    assert set(LIBVIRT_PARAMS) == set(PARAM_OPTIONS) | set(FILE_OPTIONS)
    for name, option in {**PARAM_OPTIONS, **FILE_OPTIONS}.items():
        assert option.param == getattr(libvirt, f"VIR_MIGRATE_PARAM_{LIBVIRT_PARAMS[name]}"), name


def test_values_reach_libvirt_as_virsh_passes_them() -> None:
    parsed = options("--domain", "vm", "--desturi", "qemu+ssh://h2/system", "--bandwidth", "0",
                     "--comp-methods", "mt,xbzrle", "--migrate-disks", "vda,vdb",
                     "--comp-mt-level", "9", "--tls-destination", "h2.example.org")
    assert (parsed.domain, parsed.desturi) == ("vm", "qemu+ssh://h2/system")
    assert parsed.params("<domain/>", "<domain><name>p</name></domain>") == {
        libvirt.VIR_MIGRATE_PARAM_BANDWIDTH: 0,  # 0: no limit, as virsh passes it
        libvirt.VIR_MIGRATE_PARAM_COMPRESSION: ["mt", "xbzrle"],
        libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS: ["vda", "vdb"],
        libvirt.VIR_MIGRATE_PARAM_COMPRESSION_MT_LEVEL: 9,
        libvirt.VIR_MIGRATE_PARAM_TLS_DESTINATION: "h2.example.org",
        libvirt.VIR_MIGRATE_PARAM_DEST_XML: "<domain/>",
        libvirt.VIR_MIGRATE_PARAM_PERSIST_XML: "<domain><name>p</name></domain>"}


@pytest.mark.parametrize("argv, words", [
    (["--timeout", "5"], "--timeout needs --live"),
    (["--live", "--timeout-suspend"], "--timeout-suspend needs --timeout"),
    (["--live", "--timeout", "5", "--timeout-postcopy"], "--timeout-postcopy needs --postcopy"),
    (["--live", "--timeout", "5", "--postcopy", "--timeout-postcopy", "--timeout-suspend"],
     "exclude each other"),
    (["--postcopy-after-precopy"], "--postcopy-after-precopy needs --postcopy"),
    (["--live", "--timeout", "0"], "at least 1"),
])
def test_virshs_rules_between_options(argv: list[str], words: str) -> None:
    with pytest.raises(UsageError, match=words) as raised:
        options("vm", "qemu+ssh://h2/system", *argv)
    assert raised.value.exit_status == 2


def test_timeout_actions_as_virsh() -> None:
    suspend = options("vm", "qemu+ssh://h2/system", "--live", "--timeout", "5")
    postcopy = options("vm", "qemu+ssh://h2/system", "--live", "--postcopy", "--timeout", "5",
                       "--timeout-postcopy")
    assert (suspend.timeout, suspend.timeout_postcopy) == (5, False)
    assert (postcopy.timeout, postcopy.timeout_postcopy) == (5, True)


@pytest.mark.parametrize("argv", [["vm"], ["vm", "qemu+ssh://h2/system", "--domain", "vm"],
                                  ["--desturi", "qemu+ssh://h2/system"]])
def test_domain_and_desturi_once_each(argv: list[str]) -> None:
    with pytest.raises(UsageError, match="(DOMAIN|DESTURI) (is missing|given twice)"):
        options(*argv)


def _connections_to_destination(tmp_path: Path, *extra: str) -> int:
    """Run `ncdma migrate --dry-run` of libvirt's test domain (not opted in) to a destination
    URI whose TCP port this test listens on; how many connections it received."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    port = server.getsockname()[1]
    server.settimeout(0.2)
    seen: list[int] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                client, _ = server.accept()
            except TimeoutError:
                continue
            seen.append(1)
            client.close()  # the client's libvirt.open fails at once

    thread = threading.Thread(target=accept)
    thread.start()
    config = tmp_path / "ncdma.conf"
    config.write_text(f"[ncdma]\nstate_dir = {tmp_path}/state\nlog_file =\nsyslog = no\n")
    try:
        done = subprocess.run(
            [sys.executable, "-m", "ncdma", "migrate", "-c", "test:///default", "test",
             f"qemu+tcp://127.0.0.1:{port}/system", "--dry-run", "--json", *extra],
            capture_output=True, text=True, timeout=60, check=False,
            env={"NCDMA_CONFIG": str(config), "PATH": "/usr/bin:/bin"})
    finally:
        stop.set()
        thread.join()
        server.close()
    assert done.returncode == 0, done.stdout + done.stderr
    return len(seen)


def test_with_p2p_the_client_never_opens_the_destination(tmp_path: Path) -> None:
    assert _connections_to_destination(tmp_path, "--live") >= 1  # the probe sees a client
    assert _connections_to_destination(tmp_path, "--live", "--p2p") == 0
