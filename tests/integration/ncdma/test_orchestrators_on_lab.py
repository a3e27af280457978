"""The migration policy holds whoever migrates: plain libvirt migrations and restores on the lab.

Nova, oVirt and KubeVirt call libvirt directly, as `virsh migrate` does: the destination's
`migrate` hook accepts a domain whose policy is refuse, copy or skip (with vram selected)
only with the one-time ticket `ncdma migrate` brings; `migration='any'` opts into plain
migrations. A restore (`virsh restore`, a managed save's start) is accepted exactly where a
plain migration is. Each test runs in audit and in enforce mode (the lab's stand-in flag).
"""

from __future__ import annotations

import json
import time

import pytest

from ncdma.virt.ticket import with_ticket

from .conftest import PREFIXES, WRAPPERS, OptedIn, log_text
from .test_migrate_on_lab import assert_copied, migrate, running_on, start, tagged_slots

pytestmark = pytest.mark.lab


def _uri(domain: OptedIn, host: str) -> str:
    return f"qemu+ssh://{domain.lab.host(host).address}/system"


def _virsh_migrate(domain: OptedIn, *options: str, xml: str | None = None,
                   source: str = "h1", dest: str = "h2"):
    host = domain.lab.host(source)
    extra: list[str] = []
    if xml is not None:
        host.run(["tee", f"/tmp/{domain.name}.xml"], input=xml, check=True)
        extra = ["--xml", f"/tmp/{domain.name}.xml"]
    live = () if "--offline" in options else ("--live",)
    return host.virsh("migrate", *live, *options, *extra, domain.name, _uri(domain, dest),
                      check=False)


def _daemons(domain: OptedIn) -> str:
    """What both hosts' libvirtd say (their pids and last log lines), for a failure's message."""
    lines = []
    for name in ("h1", "h2"):
        host = domain.lab.host(name)
        pid = host.run(["cat", "/run/libvirtd.pid"]).stdout.strip()
        log = host.run(["tail", "-n", "15", "/var/log/libvirt/libvirtd.log"]).stdout
        lines.append(f"== {name} libvirtd pid {pid}\n{log}")
    return "\n".join(lines)


def _assert_refused_and_intact(domain: OptedIn, done, policy: str, why: str) -> None:
    """libvirt's error carries the hook's one line; the source runs on with its tags."""
    assert done.returncode != 0
    line = f"ncdma: refusing the incoming migration of {domain.name}: its policy is " \
           f"migration='{policy}' and this migration {why}"
    if "End of file while reading data" in done.stderr:
        # --p2p: the source's libvirtd got the hook's line, then its connection to the
        # destination closed and libvirt sometimes reports that instead (seen on the lab)
        source_log = domain.lab.host("h1").run(["cat", "/var/log/libvirt/libvirtd.log"]).stdout
        assert line in source_log, f"{done.stderr}\n{_daemons(domain)}"
    else:
        assert line in done.stderr, f"{done.stderr}\n{_daemons(domain)}"
        assert f"`ncdma migrate {domain.name} DESTURI`" in done.stderr
    assert "Traceback" not in done.stderr
    assert running_on(domain) == ["h1"]
    status = json.loads(domain.ncdma("h1", "status", domain.name, "--json").stdout)
    assert status["guard"]["alive"] and tagged_slots(domain, "h1") == 1
    flags = [slot["flag_set"] for slot in status["journal"]["slots"] if slot["decision"] == "tag"]
    assert flags == [domain.enforce]
    assert domain.lab.host("h2").virsh("list", "--all").stdout.count(domain.name) == 0


@pytest.mark.parametrize("how", ["managed", "p2p"])
@pytest.mark.parametrize("policy", ["refuse", "copy", "skip"])
def test_virsh_migrate_managed_and_p2p_is_refused_and_the_source_keeps_its_tags(
        opted_in: OptedIn, policy: str, how: str) -> None:
    start(opted_in, policy)
    done = _virsh_migrate(opted_in, *(("--p2p",) if how == "p2p" else ()))
    _assert_refused_and_intact(opted_in, done, policy, "was not started by `ncdma migrate`")
    assert "refusing the incoming migration" in log_text(opted_in.lab.host("h2"))


def test_the_explicit_opt_in_migrates_plainly_both_ways(opted_in: OptedIn) -> None:
    start(opted_in, "any")
    status = opted_in.ncdma("h1", "status", opted_in.name)
    assert "migration: any (plain libvirt migrations and restores accepted" in status.stdout
    done = _virsh_migrate(opted_in)
    assert done.returncode == 0, done.stderr
    assert running_on(opted_in) == ["h2"]
    back = _virsh_migrate(opted_in, "--p2p", source="h2", dest="h1",
                          xml=opted_in.lab.host("h2").virsh(
                              "dumpxml", "--migratable", opted_in.name).stdout.replace(
                              WRAPPERS["h2"], WRAPPERS["h1"]))
    assert back.returncode == 0, back.stderr
    assert running_on(opted_in) == ["h1"]
    summary, _ = migrate(opted_in, "h1", "h2", "--dry-run")
    assert summary["strategy"] == "plain"
    assert any("migration='any'" in note and "not verified" in note
               for note in summary["notes"])


def test_ncdma_migrate_brings_a_ticket_that_the_destination_uses_up_and_strips(
        opted_in: OptedIn) -> None:
    start(opted_in, "copy")
    summary, _ = migrate(opted_in, "h1", "h2", "--p2p")
    assert_copied(summary, opted_in.enforce)
    assert "ncdma:ticket" not in opted_in.lab.host("h2").virsh("dumpxml", opted_in.name).stdout
    assert "migrate allowed by its policy migration='copy'" in log_text(opted_in.lab.host("h2"))
    tickets = opted_in.lab.host("h2").root_path / "run/ncdma/tickets"
    assert [path.suffix for path in tickets.iterdir()] == [".used"]


def _tagged_soon(domain: OptedIn) -> bool:
    """The guard on h1 tags the vram slot of a domain just started (as start() waits)."""
    deadline = time.monotonic() + 20
    while tagged_slots(domain, "h1") != 1:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def _ticket(domain: OptedIn, uuid: str, age: float = 0.0) -> str:
    """A ticket issued on h2 for ``uuid``, as ``ncdma peer ticket`` issues it, ``age``
    seconds ago."""
    done = domain.lab.host("h2").run([
        f"{PREFIXES['h2']}/bin/python3", "-c",
        "import os, time; from ncdma.settings import load_settings; "
        "from ncdma.store.tickets import issue; "
        f"print(issue(load_settings().state_dir, '{uuid}', os.uname().nodename, "
        f"time.time() - {age}).token)"], check=True)
    return done.stdout.strip()


def test_used_expired_and_foreign_tickets_are_refused(opted_in: OptedIn) -> None:
    start(opted_in, "copy")
    xml = opted_in.lab.host("h1").virsh("dumpxml", "--migratable", opted_in.name).stdout
    answer = json.loads(opted_in.ncdma("h2", "peer", "ticket", opted_in.uuid).stdout)
    ticketed = with_ticket(xml.encode(), answer["ticket"])
    # the ticket's holder may migrate it once (ncdma migrate is that holder) ...
    done = _virsh_migrate(opted_in, xml=ticketed)
    assert done.returncode == 0, done.stderr
    summary, _ = migrate(opted_in, "h2", "h1")
    assert summary["outcome"] == "migrated" and running_on(opted_in) == ["h1"]
    # ... and never again
    _assert_refused_and_intact(opted_in, _virsh_migrate(opted_in, xml=ticketed), "copy",
                               "carries an ncdma ticket that was already used")
    expired = with_ticket(xml.encode(), _ticket(opted_in, opted_in.uuid, age=3600))
    _assert_refused_and_intact(opted_in, _virsh_migrate(opted_in, "--p2p", xml=expired), "copy",
                               "carries an expired ncdma ticket")
    foreign = with_ticket(xml.encode(), _ticket(opted_in, "0b9d6c1e-2f3a-4e5b-8c7d-6e5f4a3b2c1d"))
    _assert_refused_and_intact(opted_in, _virsh_migrate(opted_in, xml=foreign), "copy",
                               "carries an ncdma ticket issued for another domain")


def test_restore_follows_the_rule(opted_in: OptedIn) -> None:
    """copy: `virsh restore` and a managed save's start are refused; `virsh save-image-define`
    with migration='any' lets the image restore; `--force-boot` boots afresh. any: restores."""
    h1 = opted_in.lab.host("h1")
    image = f"/tmp/{opted_in.name}.save"
    start(opted_in, "copy")
    h1.virsh("save", opted_in.name, image)
    done = h1.virsh("restore", image, check=False)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert f"ncdma: refusing to restore {opted_in.name}: its policy is migration='copy'" \
        in done.stderr, done.stderr
    assert opted_in.state() == "shut off"
    saved = h1.virsh("save-image-dumpxml", "--security-info", image).stdout
    h1.run(["tee", f"{image}.xml"], input=saved.replace("migration='copy'", "migration='any'")
           .replace('migration="copy"', 'migration="any"'), check=True)
    h1.virsh("save-image-define", image, f"{image}.xml")
    h1.virsh("restore", image)
    assert opted_in.state() == "running" and _tagged_soon(opted_in)
    h1.run(["rm", "-f", image, f"{image}.xml"])


def test_managed_save_follows_the_rule(opted_in: OptedIn) -> None:
    h1 = opted_in.lab.host("h1")
    start(opted_in, "skip")
    h1.virsh("managedsave", opted_in.name)
    # the restore hook refuses the saved state; libvirt 11.3's `virsh start` then reports
    # success and leaves the domain shut off (seen on the lab)
    h1.virsh("start", opted_in.name, check=False)
    assert f"ncdma: refusing to restore {opted_in.name}: its policy is migration='skip'" \
        in log_text(h1)
    assert opted_in.state() == "shut off"
    h1.virsh("start", "--force-boot", opted_in.name)
    assert opted_in.state() == "running" and _tagged_soon(opted_in)
    opted_in.remove()
    start(opted_in, "any")
    h1.virsh("managedsave", opted_in.name)
    h1.virsh("start", opted_in.name)
    assert opted_in.state() == "running" and _tagged_soon(opted_in)
    assert "restore allowed by its policy migration='any'" in log_text(h1)


def test_offline_migration_is_refused_and_moving_the_definition_is_the_way(
        opted_in: OptedIn) -> None:
    """libvirt runs the migrate hook for --offline too, with nothing that tells it apart."""
    opted_in.define()
    opted_in.enable("h1", "--bars", "vram", "--migration", "copy")
    done = _virsh_migrate(opted_in, "--offline", "--persistent")
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert f"ncdma: refusing the incoming migration of {opted_in.name}: its policy is " \
        "migration='copy'" in done.stderr, done.stderr
    advice = opted_in.ncdma("h1", "migrate", opted_in.name, _uri(opted_in, "h2"))
    assert advice.returncode == 1 and "`virsh define` it there" in advice.stderr
    h2 = opted_in.lab.host("h2")
    h2.run(["tee", f"/tmp/{opted_in.name}.xml"], input=opted_in.inactive_xml(), check=True)
    h2.virsh("define", f"/tmp/{opted_in.name}.xml")
    assert opted_in.state("h2") == "shut off"
