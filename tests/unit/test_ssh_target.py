"""SSH targets from hostile destination URIs (issue 12): validated, and never an option."""

from __future__ import annotations

import os

import pytest

from ncdma.errors import UsageError
from ncdma.migrate.channel import Peer, SshTarget

HOSTILE = [
    "qemu+ssh://-oProxyCommand=touch${IFS}pwned@h2/system",   # user becomes an ssh option
    "qemu+ssh://-oProxyCommand=touch${IFS}pwned/system",      # so does the host
    "qemu+ssh://root@-oProxyCommand=x/system",
    "qemu+ssh://%2DoProxyCommand%3Dtouch%20pwned@h2/system",  # the same, %-escaped
    "qemu+ssh://user name@h2/system",                         # spaces
    "qemu+ssh://root@h2 -oProxyCommand=x/system",
    "qemu+ssh://root@h%002/system",                           # a NUL
    "qemu+ssh://root@h2:99999/system",                        # no such port
    "qemu+ssh://root@h2:0/system",
    "qemu+ssh://root@[::1/system",                            # a broken IPv6 literal
    "qemu+ssh://root@h2/system?keyfile=-oProxyCommand=x",     # an option as the key file
]


@pytest.mark.parametrize("uri", HOSTILE)
def test_a_hostile_destination_uri_is_a_usage_error(uri: str) -> None:
    with pytest.raises(UsageError):
        SshTarget.from_uri(uri)


@pytest.mark.parametrize(("uri", "user", "host", "port"), [
    ("qemu+ssh://admin@h2.example.org:2222/system", "admin", "h2.example.org", 2222),
    ("qemu+ssh://root@[::1]:2200/system", "root", "::1", 2200),
    ("qemu+ssh://[fe80::1%25eth0]/system", None, "fe80::1%eth0", None),
    ("qemu+ssh://192.0.2.7/system", None, "192.0.2.7", None),
    ("qemu+ssh://svc_migrate.2@h2/system", "svc_migrate.2", "h2", None),
])
def test_valid_targets_keep_user_host_and_port(uri: str, user: str | None, host: str,
                                               port: int | None) -> None:
    target = SshTarget.from_uri(uri)
    assert (target.user, target.host, target.port) == (user, host, port)


def test_the_destination_comes_after_the_end_of_options(tmp_path) -> None:
    peer = Peer(SshTarget.from_uri("qemu+ssh://admin@[::1]:2222/system?keyfile=/k"),
                "/usr/local/libexec/ncdma/ncdma", tmp_path)
    argv = peer.command(["peer", "preflight"])
    end = argv.index("--")
    assert argv[end + 1:] == ["admin@::1", "/usr/local/libexec/ncdma/ncdma", "peer", "preflight"]
    assert argv[argv.index("-p") + 1] == "2222" and argv[argv.index("-i") + 1] == "/k"


def test_the_destination_lock_is_held_by_ncdma_peer_lock_over_the_same_ssh(tmp_path,
                                                                          monkeypatch) -> None:
    # a stand-in for ssh on PATH records its arguments and answers as `ncdma peer lock` does
    recorded = tmp_path / "argv"
    stand_in = tmp_path / "bin" / "ssh"
    stand_in.parent.mkdir()
    stand_in.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > {recorded}\n"
                        "echo '{\"locked\": true}'\ncat > /dev/null\n")
    stand_in.chmod(0o755)
    monkeypatch.setenv("PATH", f"{stand_in.parent}:{os.environ['PATH']}")
    peer = Peer(SshTarget.from_uri("qemu+ssh://h2/system"), "/opt/ncdma/bin/ncdma", tmp_path)
    peer.lock("5e1f0f3c-7a64-4d2b-9a0e-3c1d2b4a5f60")
    peer.close()
    argv = recorded.read_text().splitlines()
    assert ["ssh", *argv] == peer.command(["peer", "lock", "5e1f0f3c-7a64-4d2b-9a0e-3c1d2b4a5f60"])
