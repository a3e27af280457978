"""`ncdma migrate`, phase by phase: preflight, memory, tagged slots, verify, switchover.

copy: the migration runs with VIR_MIGRATE_PAUSED, so the destination stays paused after
libvirt's switchover. The source's guard reads the tagged slots when the source QEMU
exits (:mod:`ncdma.guard.capture`); they go over SSH to the destination's ``ncdma peer
receive``, which writes them (caches flushed) and checksums them; the destination's
`ncdma status` must show the slots tagged; only then is the guest resumed (unless
--suspend). Up to libvirt's switchover any failure leaves the source running with its
tags (libvirt rolls the migration back). After it, the source is gone: a failure then
leaves the destination paused, never resumed with stale slots, and keeps the captured
content on this host, from which `ncdma migrate --finish` completes the migration
(:mod:`ncdma.migrate.finish`): the same last phases (tagged slots, verify, switchover).
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import libvirt

from ncdma.errors import MigrationFailed, MigrationRefused, PeerError, UsageError
from ncdma.migrate.channel import Peer, SshTarget
from ncdma.migrate.finish import kept_capture
from ncdma.migrate.interrupts import Interrupts
from ncdma.migrate.job import MigrationJob, Steering
from ncdma.migrate.lock import acquire
from ncdma.migrate.options import PAUSED, MigrateOptions
from ncdma.migrate.preflight import (MigrationDecision, MigrationRefusal, Strategy,
                                     decide_migration)
from ncdma.migrate.progress import ProgressDisplay
from ncdma.migrate.source import gather_source
from ncdma.migrate.summary import Summary
from ncdma.model.slot import SlotRecord
from ncdma.settings import Settings
from ncdma.store import capture
from ncdma.store.journal import journal_from_json
from ncdma.virt.connect import libvirt_error
from ncdma.virt.domain import parse_domain, with_emulator
from ncdma.virt.lookup import lookup_domain
from ncdma.virt.ticket import with_ticket

_CAPTURE_WAIT_S = 15.0
_STATES = {libvirt.VIR_DOMAIN_RUNNING: "running", libvirt.VIR_DOMAIN_SHUTOFF: "shut off",
           libvirt.VIR_DOMAIN_CRASHED: "crashed"}
# the definition as libvirt migrates it, passwords included (virsh's --xml files have them)
_XML_FLAGS = libvirt.VIR_DOMAIN_XML_MIGRATABLE | libvirt.VIR_DOMAIN_XML_SECURE


def _read_xml_option(option: str, path: str | None) -> str | None:
    if path is None:
        return None
    try:
        return Path(path).read_text()
    except OSError as err:
        raise UsageError(f"cannot read {option} {path}: {err.strerror}") from None


def require_local_source(conn: libvirt.virConnect, here: str) -> None:
    """The source's facts (plan, journal, capture) are this host's: refuse a ``-c`` URI that
    names another host (``here``: this host's name), with one line naming it.

    :raise MigrationRefused: When the connection's host is not this one.
    """
    there = conn.getHostname()
    if there.split(".")[0] != here.split(".")[0]:
        raise MigrationRefused(f"the source connection names host {there}, not this host "
                               f"({here}): ncdma migrate reads the domain's plan and journal "
                               f"on the host it runs on", f"run `ncdma migrate` on {there}")


def preflight(options: MigrateOptions, settings: Settings, domain: libvirt.virDomain,
              peer: Peer) -> MigrationDecision:
    """The preflight: source facts, the destination's answer, the decision.

    :raise MigrationRefused: With the reason and what to change.
    """
    if not domain.isActive():
        raise MigrationRefused(f"{options.domain} is not running",
                               "start it; to move its definition, `virsh dumpxml --inactive "
                               "--security-info` it here and `virsh define` it there (the "
                               "destination refuses a plain `virsh migrate --offline` unless "
                               "its policy accepts plain migrations)")
    source = gather_source(settings, domain.name(), domain.UUIDString(), domain.XMLDesc())
    destination = peer.preflight() if source.opted_in else None
    decision = decide_migration(source, destination, options)
    if isinstance(decision, MigrationRefusal):
        raise MigrationRefused(decision.reason)
    return decision


def _slot_entry(slot: SlotRecord, action: str) -> dict[str, Any]:
    return {"slot": slot.slot, "gpa": slot.gpa, "size": slot.size,
            "owner": slot.owner.describe(), "owner_kind": slot.owner.kind.value,
            "in_ram_stream": slot.in_qemu_stream, "flag_set_source": slot.flag_set,
            "action": action}


class MigrationRun:
    """One `ncdma migrate` run."""

    def __init__(self, options: MigrateOptions, settings: Settings, conn: libvirt.virConnect,
                 display: ProgressDisplay) -> None:
        self.options = options
        self.settings = settings
        self.conn = conn
        self.display = display
        require_local_source(conn, os.uname().nodename)
        self.captured: dict[str, Any] = {}
        if options.finish:  # the domain is no longer here: the kept capture names it
            kept, self.captured = kept_capture(settings, options.domain)
            self.options = options = replace(options, desturi=options.desturi or kept.desturi,
                                             remote_ncdma=kept.remote_ncdma)
            self.uuid, name = kept.uuid, kept.domain
        else:
            self.domain = lookup_domain(conn, options.domain)
            self.uuid, name = self.domain.UUIDString(), self.domain.name()
        self.peer = Peer(SshTarget.from_uri(options.desturi), options.remote_ncdma,
                         settings.state_dir / "ssh")
        self.summary = Summary(name, options.desturi)
        self.memory_done = 0.0
        # the destination's ncdma found the domain paused when it wrote the slots (--p2p:
        # no libvirt connection to the destination to ask)
        self.paused_at_receive: bool | None = None
        self.dconn: Future[libvirt.virConnect] | None = None
        # the destination's one-time ticket, carried in the XML its migrate hook gets
        self.ticket: str | None = None
        self.interrupts = Interrupts()

    def _phase(self, name: str, detail: str = "") -> None:
        self.summary.begin(name)
        self.display.phase(name, detail)

    def run(self) -> Summary:
        """Preflight, then (unless --dry-run) migrate; the summary says what happened."""
        lock = None if self.options.dry_run else acquire(self.settings.state_dir, self.uuid,
                                                          self.summary.domain)
        try:
            with ThreadPoolExecutor(max_workers=1) as pool, self.interrupts.installed():
                # the destination's libvirt connection opens while the preflight runs
                # (--p2p, --direct: the source's libvirt opens it, as with virsh: never here;
                # --finish is ncdma's own: it needs the destination)
                self.dconn = None if self.options.source_opens_destination \
                    and not self.options.finish else pool.submit(libvirt.open,
                                                                 self.options.desturi)
                try:
                    return self._run()
                finally:
                    self.peer.close()
        finally:
            if lock is not None:
                os.close(lock)

    def _run(self) -> Summary:
        if self.options.finish:
            return self._finish()
        self._phase("preflight")
        decision = preflight(self.options, self.settings, self.domain, self.peer)
        self.summary.strategy = decision.strategy.value
        self.summary.notes.extend(decision.notes)
        action = {Strategy.COPY: "copied", Strategy.SKIP: "skipped"}.get(decision.strategy,
                                                                          "none")
        self.summary.slots = [_slot_entry(slot, action) for slot in decision.source.selected]
        if self.options.dry_run:
            self.summary.outcome = "dry-run"
            for entry in self.summary.slots:
                entry["action"] = f"would be {entry['action']}"
            params = sorted(self._params(decision))
            self.summary.notes.append(f"would call libvirt with flags {self._flags(decision):#x}"
                                      f" and parameters {', '.join(params) or 'none'}")
            return self.summary
        if decision.source.opted_in:
            self.peer.lock(self.uuid)
            if decision.source.migration != "any":
                self.ticket = self.peer.ticket(self.uuid)
        copy = decision.strategy is Strategy.COPY
        if copy:
            self.peer.start_receive(self.uuid)  # ready before the switchover (issue 17)
            capture.arm(self.settings, self.uuid, decision.source.selected)
            capture.remember(self.settings, capture.KeptMigration(
                self.uuid, self.summary.domain, self.options.desturi, self.options.remote_ncdma))
        destination = self._memory(decision)
        status = self._copy_slots() if copy else None
        self._verify(destination, decision.source.opted_in, copy, status)
        self._switchover(destination, copy)
        self.summary.outcome = "migrated"
        return self.summary

    def _flags(self, decision: MigrationDecision) -> int:
        return self.options.flags(PAUSED if decision.strategy is Strategy.COPY else 0)

    def _params(self, decision: MigrationDecision) -> dict[str, Any]:
        """libvirt's parameters; for an opted-in domain, its XML carries the destination's
        ticket, and names the destination's wrapper when that differs (hosts may install
        ncdma at different paths, and libvirt checks <emulator> before any hook runs there)."""
        xml = _read_xml_option("--xml", self.options.xml)
        persistent = _read_xml_option("--persistent-xml", self.options.persistent_xml)
        wrapper = str((decision.destination or {}).get("wrapper_path") or "")
        live = xml or self.domain.XMLDesc(_XML_FLAGS)
        rewrite = decision.source.opted_in and bool(wrapper) \
            and parse_domain(live.encode()).emulator != wrapper
        if not rewrite and self.ticket is None:
            return self.options.params(xml, persistent)
        moved = with_emulator(live.encode(), wrapper) if rewrite else live
        if rewrite and persistent is not None:
            persistent = with_emulator(persistent.encode(), wrapper)
        params = self.options.params(moved if self.ticket is None
                                     else with_ticket(moved.encode(), self.ticket), persistent)
        if rewrite and self.options.persistent and persistent is None:
            params["persistent_xml"] = with_emulator(self.domain.XMLDesc(
                _XML_FLAGS | libvirt.VIR_DOMAIN_XML_INACTIVE).encode(), wrapper)
        return params

    def _memory(self, decision: MigrationDecision) -> libvirt.virDomain | None:
        """libvirt's migration; on failure the source keeps running and nothing is armed."""
        self._phase("memory")
        flags, params = self._flags(decision), self._params(decision)
        try:
            dconn = self.dconn.result() if self.dconn is not None else None
        except libvirt.libvirtError as err:
            capture.disarm(self.settings, self.uuid)
            raise libvirt_error(err, f"cannot connect to {self.options.desturi}") from None
        if dconn is None:
            job = MigrationJob(self.domain, lambda: self.domain.migrateToURI3(
                self.options.desturi, params, flags))
        else:
            job = MigrationJob(self.domain, lambda: self.domain.migrate3(dconn, params, flags))
        job.start()
        steering = Steering(self.options.timeout, self.options.timeout_postcopy,
                            self.options.postcopy_after_precopy)
        try:
            job.wait(lambda progress: self.display.update("memory", progress), steering)
            self.interrupts.hold()
        except KeyboardInterrupt as err:  # Ctrl-C, SIGTERM, SIGHUP: see ncdma.migrate.interrupts
            self.interrupts.hold()
            if not job.settle():
                capture.disarm(self.settings, self.uuid)
                raise MigrationFailed(f"interrupted: migration aborted ({err}); "
                                      f"{self.summary.domain} keeps running on this host with "
                                      f"its tags", "nothing to clean up") from None
            self.summary.notes.append(f"interrupted ({err}) after libvirt's switchover: the "
                                      f"migration could no longer be stopped, so it was "
                                      f"completed")
        except MigrationFailed as err:
            capture.disarm(self.settings, self.uuid)
            raise MigrationFailed(f"{err}; {self.summary.domain} keeps running on this host"
                                  " with its tags", "see libvirtd's log on both hosts") from None
        self.memory_done = time.monotonic()
        destination = dconn.lookupByUUIDString(self.uuid) if dconn is not None else None
        self._record_job_stats(destination or self.domain)
        return destination

    def _record_job_stats(self, domain: libvirt.virDomain) -> None:
        """The completed job's figures (the source keeps them too: --p2p has no other)."""
        try:
            stats = domain.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
        except libvirt.libvirtError:
            return
        self.summary.memory_bytes = int(stats.get("memory_processed", 0))
        if "downtime" in stats:
            self.summary.downtime_ms["libvirt"] = float(stats["downtime"])

    def _left_paused(self, problem: str) -> MigrationFailed:
        for entry in self.summary.slots:
            entry["action"] = "not copied"
        directory = capture.migration_dir(self.settings, self.uuid)
        return MigrationFailed(
            f"{problem}; the memory has moved, so {self.summary.domain} is PAUSED on "
            f"{self.options.desturi} and was not resumed with unverified tagged slots",
            f"the source's captured slots, if any, are kept in {directory}; fix the cause, "
            f"then run `ncdma migrate --finish {self.summary.domain}` on this host (it writes "
            f"them there, checks them and the tags, and resumes it), or `virsh resume` it "
            f"there only if its tagged content does not matter")

    def _captured(self) -> dict[str, Any]:
        deadline = time.monotonic() + _CAPTURE_WAIT_S
        while (result := capture.read_captured(self.settings, self.uuid)) is None:
            if time.monotonic() > deadline:
                raise self._left_paused("the source's guard did not capture the tagged slots")
            time.sleep(0.005)  # each wait here is downtime
        if result.get("error"):
            raise self._left_paused(f"capturing the tagged slots failed: {result['error']}")
        return result

    def _copy_slots(self) -> dict[str, Any]:
        """Send the captured slots; the destination's status, read right after the write."""
        self._phase("tagged slots", f"{len(self.summary.slots)} slot(s), cache-flushed copy")
        captured = self._captured()
        directory = capture.migration_dir(self.settings, self.uuid)
        header = {"slots": [{key: slot[key] for key in ("gpa", "size", "sha256")}
                            for slot in captured["slots"]]}
        chunks = [json.dumps(header).encode() + b"\n"]
        chunks.extend((directory / slot["file"]).read_bytes() for slot in captured["slots"])
        try:
            answer = self.peer.receive(self.uuid, b"".join(chunks))
        except PeerError as err:
            raise self._left_paused(f"writing the tagged slots there failed: {err}") from None
        restored = {slot["gpa"]: slot for slot in answer["slots"]}
        for entry, source in zip(self.summary.slots, captured["slots"]):
            there = restored.get(source["gpa"], {})
            entry.update(sha256_source=source["sha256"],
                         sha256_destination=there.get("sha256"),
                         capture_seconds=source["seconds"], held_seconds=source["held_seconds"],
                         restore_seconds=there.get("seconds"),
                         flush=answer.get("flush"))
            if there.get("sha256") != source["sha256"]:
                raise self._left_paused(f"slot {source['gpa']:#x} differs after the copy")
        self.paused_at_receive = answer.get("paused") is True
        return dict(answer["status"])

    def _verify(self, destination: libvirt.virDomain | None, opted_in: bool, copy: bool,
                status: dict[str, Any] | None) -> None:
        """The destination's guard runs the domain and has tagged the slots (before resume).

        ``status`` is the destination's `ncdma status` when the copy brought it along.
        """
        self._phase("verify")
        if not opted_in:
            return
        if status is None:
            try:
                status = self.peer.status(self.uuid)
            except PeerError as err:
                raise MigrationFailed(f"the destination's `ncdma status` failed: {err}") from None
        journal = journal_from_json(status["journal"], "the destination's journal") \
            if status.get("journal") else None
        there = {(slot.gpa, slot.size): slot for slot in journal.slots} if journal else {}
        paused = self.paused_at_receive if destination is None else \
            destination.state()[0] == libvirt.VIR_DOMAIN_PAUSED
        for entry in self.summary.slots:
            slot = there.get((entry["gpa"], entry["size"]))
            entry["destination"] = {"action": slot.decision.value, "flag_set": slot.flag_set} \
                if slot else None
            entry["destination_paused_at_verify"] = paused
            if copy and (slot is None or not slot.selected):
                raise self._left_paused(f"the destination's guard has not tagged slot "
                                        f"{entry['gpa']:#x}")
        self.summary.notes.append(f"destination: guard "
                                  f"{'alive' if status['guard']['alive'] else 'NOT running'}, "
                                  f"mode {status['plan']['mode']}")

    def _finish(self) -> Summary:
        """--finish: the copy's last phases on the paused destination, from the kept capture
        (its files already checked against their checksums)."""
        self.interrupts.hold()  # the memory moved long ago: a signal now would help nothing
        self._phase("destination")
        self.summary.strategy = "copy"
        self.summary.notes.append("finished from the capture kept on this host")
        self.summary.slots = [_slot_entry(SlotRecord.from_json(slot), "copied")
                              for slot in self.captured["slots"]]
        assert self.dconn is not None  # --finish always opens the destination (run())
        try:
            destination = self.dconn.result().lookupByUUIDString(self.uuid)
            state = destination.state()[0]
        except libvirt.libvirtError as err:
            raise libvirt_error(err, f"{self.summary.domain} ({self.uuid}) cannot be found on "
                                     f"{self.options.desturi}") from None
        if state != libvirt.VIR_DOMAIN_PAUSED:
            raise MigrationRefused(f"{self.summary.domain} on {self.options.desturi} is not "
                                   f"paused ({_STATES.get(state, state)}): --finish writes tagged "
                                   f"slots only into the paused destination of the migration",
                                   "nothing was changed; if it was resumed by hand, its tagged "
                                   "slots hold what QEMU carried")
        self.peer.lock(self.uuid)
        self.memory_done = time.monotonic()
        status = self._copy_slots()
        self._verify(destination, True, True, status)
        self._switchover(destination, True)
        self.summary.outcome = "migrated"
        return self.summary

    def _switchover(self, destination: libvirt.virDomain | None, copy: bool) -> None:
        if copy:
            self._phase("switchover")
            if not self.options.suspend and destination is not None:
                destination.resume()
            elif not self.options.suspend:  # --p2p, --direct: the destination's ncdma does
                try:
                    self.peer.resume(self.uuid)
                except PeerError as err:
                    raise MigrationFailed(f"{err}; {self.summary.domain} is PAUSED there with "
                                          f"its tagged slots verified",
                                          "`virsh resume` it there") from None
            self.summary.downtime_ms["source_capture"] = 1e3 * sum(
                slot.get("held_seconds", 0.0) for slot in self.summary.slots)
            self.summary.downtime_ms["after_memory"] = (time.monotonic() - self.memory_done) * 1e3
            self.summary.downtime_ms["total"] = sum(self.summary.downtime_ms.values())
            capture.disarm(self.settings, self.uuid)
        self.summary.end()

