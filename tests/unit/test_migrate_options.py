"""`ncdma migrate`'s command line: virsh's options become libvirt's flags and parameters."""

from __future__ import annotations

import io

import libvirt
import pytest

from ncdma.cli.main import build_parser
from ncdma.errors import UsageError
from ncdma.migrate.channel import SshTarget
from ncdma.migrate.job import Progress
from ncdma.migrate.options import MigrateOptions
from ncdma.migrate.progress import ProgressDisplay, progress_text


def options(*argv: str) -> MigrateOptions:
    return MigrateOptions.from_args(build_parser().parse_args(["migrate", *argv]))


def test_flags_are_libvirts_own_values() -> None:
    every = options("vm", "qemu+ssh://h2/system", "--live", "--p2p", "--tunnelled",
                    "--persistent", "--undefinesource", "--suspend", "--abort-on-error",
                    "--auto-converge", "--postcopy")
    assert every.flags() == (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER
                             | libvirt.VIR_MIGRATE_TUNNELLED | libvirt.VIR_MIGRATE_PERSIST_DEST
                             | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE | libvirt.VIR_MIGRATE_PAUSED
                             | libvirt.VIR_MIGRATE_ABORT_ON_ERROR
                             | libvirt.VIR_MIGRATE_AUTO_CONVERGE | libvirt.VIR_MIGRATE_POSTCOPY)
    assert options("vm", "qemu:///x").flags(libvirt.VIR_MIGRATE_PAUSED) == \
        libvirt.VIR_MIGRATE_PAUSED


def test_parameters_use_libvirts_names() -> None:
    parsed = options("vm", "qemu+ssh://h2/system", "--listen-address", "10.0.0.2",
                     "--bandwidth", "100", "--dname", "vm2", "--migrateuri", "tcp://h2:49152")
    assert parsed.params("<domain/>") == {
        libvirt.VIR_MIGRATE_PARAM_URI: "tcp://h2:49152",
        libvirt.VIR_MIGRATE_PARAM_LISTEN_ADDRESS: "10.0.0.2",
        libvirt.VIR_MIGRATE_PARAM_BANDWIDTH: 100,
        libvirt.VIR_MIGRATE_PARAM_DEST_NAME: "vm2",
        libvirt.VIR_MIGRATE_PARAM_DEST_XML: "<domain/>"}
    assert options("vm", "qemu+ssh://h2/system", "tcp://h2:1").params(None) == {
        libvirt.VIR_MIGRATE_PARAM_URI: "tcp://h2:1"}


@pytest.mark.parametrize("value", ["-3", "fast"])
def test_bad_numbers_are_usage_errors(value: str) -> None:
    with pytest.raises(UsageError, match="expected a whole number of at least 0") as raised:
        options("vm", "qemu+ssh://h2/system", "--bandwidth", value)
    assert raised.value.exit_status == 2


def test_ssh_target_follows_the_uri_as_qemu_ssh_does() -> None:
    target = SshTarget.from_uri("qemu+ssh://admin@h2:2222/system?keyfile=/k")
    assert (target.host, target.user, target.port, target.keyfile) == ("h2", "admin", 2222, "/k")
    assert target.destination == "admin@h2" and "-p" in target.options(None)
    tcp = SshTarget.from_uri("qemu+tcp://h3:16509/system")
    assert (tcp.host, tcp.port) == ("h3", None)


def test_a_uri_without_a_host_is_a_usage_error() -> None:
    with pytest.raises(Exception, match="names no host"):
        SshTarget.from_uri("qemu:///system")


def test_progress_line() -> None:
    progress = Progress.from_stats({"memory_total": 100 << 20, "memory_remaining": 25 << 20,
                                    "memory_bps": 50 << 20, "memory_iteration": 1}, 1.0, False)
    assert progress.percent == 75.0 and progress.eta_s == 0.5
    assert progress_text("memory", progress) == \
        "memory        75.0%  25.0 MiB left  50.0 MiB/s  ETA 0.5 s"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_one_updating_line_and_a_pipe_gets_plain_lines() -> None:
    progress = Progress.from_stats({"memory_total": 4 << 20, "memory_remaining": 1 << 20,
                                    "memory_bps": 1 << 20}, 3.0, True)
    terminal = _Terminal()
    display = ProgressDisplay(terminal)
    display.phase("memory")
    display.update("memory", progress)
    display.update("memory", progress)
    display.phase("verify")
    assert terminal.getvalue().count("\r\033[K") == 2
    assert "(source paused by --timeout)" in terminal.getvalue()
    assert terminal.getvalue().endswith("ETA 1.0 s  (source paused by --timeout)\nverify\n")
    pipe = io.StringIO()
    plain = ProgressDisplay(pipe)
    plain.update("memory", progress)
    plain.update("memory", progress)  # within the period: not repeated
    assert pipe.getvalue().count("\n") == 1 and "\r" not in pipe.getvalue()
    quiet = io.StringIO()
    silent = ProgressDisplay(quiet, quiet=True)  # without --verbose, as virsh
    silent.phase("memory")
    silent.update("memory", progress)
    assert quiet.getvalue() == ""
