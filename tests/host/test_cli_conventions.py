"""The command line's conventions (issue 18): a domain by ID, UUID or name; ``--json`` on
every command, failures included; exit status 2 for every usage error; "changed" from
enable and disable; the root check before libvirt is touched.

libvirt here is libvirt's own test driver (``test:///FILE``, real libvirt, no daemon): each
command is a process of its own, so the domains start from FILE every time; the same
behavior on a real libvirtd is in tests/integration (the lab).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import libvirt
import pytest

from ncdma.virt.enable import disable_domain, enable_domain
from ncdma.virt.lookup import lookup_domain, opted_in_domains
from tests.host.conftest import run_ncdma

WRAPPER = "/usr/local/libexec/ncdma/ncdma-qemu"
UUID = "11111111-2222-3333-4444-555555555555"
NODE = f"""<node>
  <domain type='test'><name>alpha</name><uuid>{UUID}</uuid><memory>65536</memory>
    <os><type arch='x86_64'>hvm</type></os>
    <devices><emulator>/usr/bin/qemu-system-x86_64</emulator></devices></domain>
  <domain type='test'><name>7</name><memory>65536</memory>
    <os><type arch='x86_64'>hvm</type></os>
    <devices><emulator>{WRAPPER}</emulator></devices></domain>
</node>"""
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    node = tmp_path / "node.xml"
    node.write_text(NODE)
    monkeypatch.setenv("NCDMA_CONFIG", "/dev/null")
    return f"test://{node}"


def _json(args: list[str], status: int) -> dict:
    done = run_ncdma([*args, "--json"])
    assert done.returncode == status, done.stderr
    document = json.loads(done.stdout)
    assert document["schema_version"] == 1
    return document


@pytest.mark.parametrize("reference", ["1", UUID, "alpha"])
def test_enable_takes_an_id_a_uuid_or_a_name(uri: str, reference: str) -> None:
    document = _json(["enable", reference, "-c", uri, "--bars", "vram"], 0)
    assert document["domain"] == "alpha" and document["uuid"] == UUID
    assert document["changed"] is True and document["policy"]["bars"] == "vram"


def test_a_name_that_looks_like_an_id_is_found_by_name(uri: str) -> None:
    conn = libvirt.open(uri)
    assert lookup_domain(conn, "7").name() == "7"  # no domain has ID 7: tried as a name next


def test_enable_again_with_the_same_policy_changes_nothing(uri: str) -> None:
    conn = libvirt.open(uri)
    first = enable_domain(conn, "alpha", {"bars": "vram"}, WRAPPER)
    again = enable_domain(conn, UUID, {"bars": "vram"}, WRAPPER)
    other = enable_domain(conn, "alpha", {"migration": "copy"}, WRAPPER)
    assert (first.changed, again.changed, other.changed) == (True, False, True)
    assert disable_domain(conn, "1").changed
    assert lookup_domain(conn, "alpha").XMLDesc(0).count(WRAPPER) == 0


def test_list_names_every_domain_that_needs_ncdma_to_start(uri: str) -> None:
    conn = libvirt.open(uri)
    enable_domain(conn, "alpha", {}, WRAPPER)
    listed = opted_in_domains(conn, WRAPPER)
    assert [(domain.name, domain.wrapper) for domain in listed] == [("7", True),
                                                                    ("alpha", True)]
    assert _json(["list", "-c", uri], 0)["domains"][0]["name"] == "7"


def test_unknown_domain_is_named_as_such_in_every_command(uri: str) -> None:
    for command in (["enable", "nope"], ["disable", "nope"],
                    ["migrate", "nope", "qemu+ssh://h2/system"]):
        error = _json([*command, "-c", uri], 1)["error"]
        assert error["message"] == "no domain has the ID, UUID or name 'nope'", command
        assert error["type"] == "DomainStateError"


@pytest.mark.parametrize("args", [["enable", "alpha", "--bars", "all"], ["enable"],
                                  ["disable"], ["disable", "alpha", "--all"], ["status", "a", "b"],
                                  ["migrate", "alpha"], ["frobnicate"]])
def test_every_usage_error_exits_2_and_answers_json(uri: str, args: list[str]) -> None:
    error = _json([*args, "-c", uri] if args[0] in ("enable", "disable") else args, 2)["error"]
    assert error["type"] == "UsageError" and error["exit_status"] == 2
    text = run_ncdma([*args, "-c", uri] if args[0] in ("enable", "disable") else args)
    assert text.returncode == 2 and text.stdout == ""
    assert text.stderr.startswith("ncdma: error: ")


def test_bad_bars_names_the_attribute(uri: str) -> None:
    error = _json(["enable", "alpha", "-c", uri, "--bars", "all"], 2)["error"]
    assert "attribute 'bars'" in error["message"]


@pytest.mark.parametrize("args", [["enable", "alpha"], ["disable", "--all"], ["list"],
                                  ["status"], ["guardd"], ["migrate", "a", "qemu+ssh://h/system"]])
def test_non_root_is_refused_before_libvirt_is_touched(tmp_path: Path, args: list[str]) -> None:
    """As an unprivileged user, with libvirt's default URI (qemu:///session for that user),
    nothing may start a session libvirtd: the command refuses first, in one line. Run with
    Debian's python3 (the test's own is in root's home), which has no libvirt module: any
    import of it before the check would fail this test too."""
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o777)
    done = subprocess.run([*NOBODY, "env", f"HOME={home}", f"PYTHONPATH={REPO / 'plugin'}",
                           "/usr/bin/python3", "-m", "ncdma", *args, "--json"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1, done.stderr
    assert json.loads(done.stdout)["error"]["type"] == "NotRootError"
    assert done.stderr == (f"ncdma: error: ncdma {args[0]} needs root (it runs as uid 65534) "
                           "(run it as root, e.g. with sudo)\n")
    assert list(home.iterdir()) == []  # no session daemon's ~/.cache/libvirt, ~/.config
