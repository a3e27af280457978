"""The memslot guard of one domain: answers every trapped memslot ioctl of its QEMU.

For each notification it reads the slot from QEMU's memory, classifies it with the
layout known at that moment (never asking QEMU: QEMU's thread holds the big lock while it
waits in the ioctl), writes the change to the journal (fsynced), sets the flag in enforce
mode, answers CONTINUE, then saves the whole table. Whatever goes wrong inside, the ioctl
is answered (untouched) and the error logged; a journal that cannot be written (a full
state directory) means no new tag, never a dead guard.

A layout thread keeps the VM's layout fresh over QEMU's private QMP socket; the
notification loop only reads the latest snapshot. The guard exits when QEMU exits. A
guard taking over from a dead one rebuilds its table from the journal and answers a
notification its predecessor left.

Run by the domain's keeper (:mod:`ncdma.guard.keeper`), in a process it forks
(:func:`run_guard`).
"""

from __future__ import annotations

import logging
import os
import select
import statistics
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from ncdma.errors import NcdmaError
from ncdma.guard.capture import CAPTURE_DEADLINE_S, capture_at_exit
from ncdma.guard.classify import classify
from ncdma.guard.faults import Faults
from ncdma.guard.heartbeat import Heartbeat
from ncdma.kvm.abi import KVM_SET_USER_MEMORY_REGION, KVM_SET_USER_MEMORY_REGION2
from ncdma.kvm.memslot import Memslot, ProcessMemory, blocked_memslot_ioctl
from ncdma.linux import seccomp, syscalls
from ncdma.linux.peercred import is_thread_of
from ncdma.linux.pidfd import alive, pidfd_open
from ncdma.linux.procfs import exiting
from ncdma.model.layout import FlatRange, Layout, learn_vram_hva
from ncdma.model.plan import Plan
from ncdma.model.policy import Method
from ncdma.model.slot import Classification, SlotDecision, SlotRecord
from ncdma.model.verdict import Mode
from ncdma.settings import Settings
from ncdma.store.files import write_json
from ncdma.store.journal import Journal
from ncdma.store.patreport import NOT_REPORTED, read_pat_report
from ncdma.store.state import FLATVIEW_FILE, PENDING_FILE, QMP_SOCKET, write_guard_pid

_PENDING = struct.Struct("<QQQ?")  # notification id, QEMU thread id, struct address, v2
_LATENCIES_KEPT = 4096
_LATENCY_SUMMARY_PERIOD_S = 0.5
_IDLE_SUMMARY_MS = 500
_REFRESH_PERIOD_S = 10.0  # slot changes trigger refreshes; this only catches the rest
_REFRESH_MIN_INTERVAL_S = 0.2
_LOST_IDS_TRIED = 4


class LayoutWatcher(threading.Thread):
    """Keeps ``layout`` fresh from QEMU's private QMP socket; never blocks the guard.

    Each refresh also saves QEMU's flat view for `ncdma status` to cross-check the journal.
    """

    def __init__(self, directory: Path, log: logging.Logger, timeout: float,
                 qemu_pid: int) -> None:
        super().__init__(name="layout", daemon=True)
        self.directory = directory
        self.qemu_pid = qemu_pid
        self.socket_path = directory / QMP_SOCKET
        self.log = log
        self.timeout = timeout
        self.layout: Layout | None = None
        self.wanted = threading.Event()

    def run(self) -> None:
        # Imported here, in the thread: the guard answers QEMU's first ioctls without them.
        import asyncio

        asyncio.run(self._watch())

    async def _watch(self) -> None:
        import asyncio

        from ncdma.qmp.client import connect, discover_layout, flat_view

        # qemu.qmp's reader task ends with EOFError when QEMU exits: not worth a traceback.
        asyncio.get_running_loop().set_exception_handler(
            lambda _loop, context: self.log.debug("layout: %s", context.get("message")))
        try:
            # qmp/ is QEMU's user's: whatever is at the path, only QEMU itself is believed
            client = await connect(str(self.socket_path), self.timeout, self.qemu_pid)
        except (NcdmaError, OSError) as err:
            self.log.error("layout: %s: slots stay untouched", err)
            return
        while True:
            try:
                self.layout = await discover_layout(client, self.timeout)
                self._save_flat_view(await flat_view(client, self.timeout))
            except NcdmaError as err:
                self.log.warning("layout: %s", err)
                if not self.socket_path.exists():
                    return
            await asyncio.sleep(_REFRESH_MIN_INTERVAL_S)  # a churning guest: at most so often
            await asyncio.get_running_loop().run_in_executor(
                None, self.wanted.wait, _REFRESH_PERIOD_S)
            self.wanted.clear()


    def _save_flat_view(self, ranges: Sequence[FlatRange]) -> None:
        try:
            write_json(self.directory / FLATVIEW_FILE, [
                {"start": r.start, "size": r.size, "name": r.name, "kind": r.kind, "kvm": r.kvm}
                for r in ranges])
        except OSError as err:  # a full state directory: the layout matters more
            self.log.warning("layout: flat view not saved: %s", err.strerror)


class Guard:
    """Answers the notifications of one QEMU process."""

    def __init__(self, listener: int, qemu_pid: int, plan: Plan, directory: Path,
                 log: logging.Logger, watcher: LayoutWatcher | None,
                 on_exit: Callable[[float], None] = lambda deadline: None,
                 faults: Faults | None = None, heartbeat: Heartbeat | None = None) -> None:
        self.listener = listener
        self.faults = faults or Faults(None)
        self.heartbeat = heartbeat or Heartbeat()
        self.journal_error: str | None = None
        self.on_exit = on_exit
        self.qemu_pid = qemu_pid
        self.plan = plan
        self.bars = frozenset(plan.bars)
        self.enforce = plan.tags_slots  # method vm: no memslot is ever flagged
        self.directory = directory
        self.log = log
        self.watcher = watcher
        self.journal = Journal(directory, plan.mode.value, plan.flag, qemu_pid,
                               plan.share_device_ram)
        self.memory: ProcessMemory | None = None
        self.pending = os.open(directory / PENDING_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                               0o600)
        self.created: dict[int, float] = {}  # slot id -> when its current memory was mapped
        self.vram_hva: int | None = None  # learned from the flat view (QEMU < 8.0)
        self.latencies_us: deque[float] = deque(maxlen=_LATENCIES_KEPT)
        self.latency_summarised = 0.0
        self.summary_stale = False

    def _memory(self) -> ProcessMemory:
        # Opened at the first notification: QEMU has exec'd by then (before, the pid's
        # memory was the wrapper's).
        if self.memory is None:
            self.memory = ProcessMemory(self.qemu_pid)
        return self.memory

    def layout(self) -> Layout | None:
        """The latest snapshot, with vram's host address filled in once it is proven.

        QEMU < 8.0 does not report it: it is learned from a snapshot of the flat view
        against the slots that existed during the whole snapshot (:func:`learn_vram_hva`).
        """
        layout = self.watcher.layout if self.watcher else None
        if layout is None or layout.host_addresses:
            return layout
        if self.vram_hva is None:
            live = [(r.gpa, r.size, r.hva) for slot, r in self.journal.slots.items()
                    if self.created.get(slot, layout.taken_at) < layout.taken_at]
            self.vram_hva = learn_vram_hva(layout, live)
            if self.vram_hva is not None:
                self.log.info("guard %s: vram's host address is %#x (learned from the flat "
                              "view)", self.plan.domain, self.vram_hva)
        vram = next((b.name for b in layout.ramblocks if b.name.endswith("/vga.vram")), None)
        if self.vram_hva is None or vram is None:
            return layout
        return layout.with_vram_hva(vram, self.vram_hva)

    def classify_request(self, request: Memslot) -> Classification:
        """The classifier's decision with what is known right now."""
        return classify(request, self.layout(), self.bars, self.journal.flagged)

    def handle(self, note: seccomp.Notification, received: float) -> None:
        """Answer one notification; always answers, whatever fails.

        The flag ends up set exactly when the guard decided so in enforce mode: QEMU's own
        flag on any other slot is stripped, and the journal records the flags KVM was asked
        for. A notification from a process other than QEMU (a child that inherited the
        filter) is let through untouched, its memory never read.
        """
        if note.nr == syscalls.NR_EXIT_GROUP:
            self.handle_exit(note)
            return
        self.heartbeat.took()
        if not is_thread_of(note.tid, self.qemu_pid):
            self.log.error("guard %s: notification %#x comes from thread %d, not one of QEMU "
                           "%d's: let through untouched", self.plan.domain, note.id, note.tid,
                           self.qemu_pid)
            seccomp.answer_continue(self.listener, note.id)
            self.heartbeat.answered()
            return
        request: Memslot | None = None
        decision: Classification | None = None
        previous: SlotRecord | None = None
        flag_set = stripped = False
        try:
            self._learn_guest_pat()
            os.pwrite(self.pending, _PENDING.pack(note.id, note.tid, note.args[2],
                                                  self._is_v2(note)), 0)
            asked = self._memory().read_region(note.args[2], self._is_v2(note))
            # QEMU's own use of the flag is stripped; the lab's stand-in (KVM_MEM_READONLY) is
            # QEMU's own flag for ROMs, and stays QEMU's
            own = 0 if self.plan.stand_in else self.plan.flag
            request = replace(asked, flags=asked.flags & ~own)
            previous = self.journal.slots.get(request.slot)
            decision = self.classify_request(request)
            stripped = bool(asked.flags & own) and not (
                decision.decision.wants_flag and self.enforce)
            if stripped:
                decision = replace(decision, reason=f"{decision.reason}; QEMU's own flag "
                                                    f"{self.plan.flag:#x} stripped")
            decision, flag_set = self._write_ahead(request, decision)
            self.journal.record(request, decision, flag_set)
            self._track_mapping(request, decision, previous)
            flags = request.flags | self.plan.flag if flag_set else request.flags
            if flags != asked.flags:
                self._memory().write_flags(note.args[2], flags)
        except Exception as err:  # noqa: BLE001 - the ioctl must be answered regardless
            self.log.error("guard: notification %#x: %r: letting the ioctl run untouched",
                           note.id, err)
        seccomp.answer_continue(self.listener, note.id)
        self.heartbeat.answered()
        self.latencies_us.append((time.perf_counter() - received) * 1e6)
        if request is not None and decision is not None:
            self._fault_point(decision, previous)
            self._journal(request, decision, flag_set, stripped)

    def _learn_guest_pat(self) -> None:
        """Method vm: journal what QEMU's preload library reported. It reports right after
        KVM_CREATE_VM, before any memslot ioctl, so no report at the first one means it did
        not run."""
        if self.plan.method is not Method.VM or self.plan.mode is not Mode.ENFORCE \
                or self.journal.guest_pat is not None:
            return
        state = read_pat_report(self.directory, self.qemu_pid) or NOT_REPORTED
        self.journal.guest_pat = state
        if state.honored:
            self.log.info("guard %s: guest PAT honored for the whole VM: %s", self.plan.domain,
                          state.reason)
        else:
            self.log.warning("guard %s: guest PAT is NOT honored: %s", self.plan.domain,
                             state.reason)

    def _track_mapping(self, request: Memslot, decision: Classification,
                       previous: SlotRecord | None) -> None:
        """Remember when each live slot's memory was mapped (for :meth:`layout`)."""
        if decision.decision is SlotDecision.DELETE:
            self.created.pop(request.slot, None)
        elif previous is None or (previous.gpa, previous.size, previous.hva) != \
                (request.gpa, request.size, request.hva):
            self.created[request.slot] = time.monotonic()

    def _write_ahead(self, request: Memslot,
                     decision: Classification) -> tuple[Classification, bool]:
        """The decision as the journal could record it before the answer, and the flag.

        A tag that cannot be written ahead is not made: a successor would not know the slot
        carries the flag and would drop it on the next re-issue (EINVAL: QEMU aborts).
        """
        flag_set = decision.decision.wants_flag and self.enforce
        try:
            self.journal.write_ahead(request, decision, flag_set)
        except OSError as err:
            self._journal_failed(err)
            if decision.decision is SlotDecision.TAG:
                return Classification(SlotDecision.UNTOUCHED,
                                      f"not tagged: the journal cannot be written "
                                      f"({err.strerror or err})"), False
        return decision, flag_set

    def _journal_failed(self, err: OSError) -> None:
        """Log a journal failure once, until it works again."""
        problem = err.strerror or str(err)
        if problem != self.journal_error:
            self.log.error("guard %s: the journal cannot be written in %s: %s: new slots are "
                           "not tagged until it can (free space there)", self.plan.domain,
                           self.journal.path.parent, problem)
        self.journal_error = problem

    def _fault_point(self, decision: Classification, previous: SlotRecord | None) -> None:
        """A test's fault point (off unless armed): right after the answer."""
        if decision.decision is SlotDecision.TAG:
            self.faults.reached("after-answer:tag")
        elif decision.decision is SlotDecision.DELETE and previous is not None \
                and previous.decision is SlotDecision.TAG:
            self.faults.reached("after-answer:untag")

    def handle_exit(self, note: seccomp.Notification) -> None:
        """QEMU (or a thread of it) calls exit_group: run ``on_exit`` (a capture, bounded by
        CAPTURE_DEADLINE_S), then let it exit."""
        deadline = time.monotonic() + CAPTURE_DEADLINE_S
        self.heartbeat.took()
        self.heartbeat.hold(deadline + 1.0)
        try:
            self.on_exit(deadline)
        finally:
            seccomp.answer_continue(self.listener, note.id)
            self.heartbeat.answered()

    @staticmethod
    def _is_v2(note: seccomp.Notification) -> bool:
        return note.args[1] & 0xFFFFFFFF == KVM_SET_USER_MEMORY_REGION2

    def _journal(self, request: Memslot, decision: Classification, flag_set: bool,
                 stripped: bool) -> None:
        if stripped:
            self.log.warning("guard %s: %s: %s", self.plan.domain, request.describe(),
                             decision.reason)
        if decision.decision is SlotDecision.TAG:
            untagged = "not flagged (method vm)" if self.plan.method is Method.VM \
                else "would be tagged (audit)"
            self.log.info("guard %s: %s %s (%s)", self.plan.domain, request.describe(),
                          "tagged" if flag_set else untagged, decision.owner.describe())
        if self.watcher is not None:
            self.watcher.wanted.set()  # the layout changed (a BAR may have moved): refresh
        self._save()

    def _save(self, final: bool = False) -> None:
        now = time.monotonic()
        if final or now - self.latency_summarised > _LATENCY_SUMMARY_PERIOD_S:
            self.journal.latency_us = self.latency_summary()
            self.latency_summarised = now
            self.summary_stale = False
        else:
            self.summary_stale = True
        try:
            self.journal.save()
        except OSError as err:
            self._journal_failed(err)
            return
        if self.journal_error is not None:
            self.log.info("guard %s: the journal is written again", self.plan.domain)
            self.journal_error = None

    def latency_summary(self) -> dict[str, int]:
        """p50 and p99 of the recent decision latencies (receive to answer), microseconds."""
        samples = list(self.latencies_us)
        if len(samples) < 2:
            return {"p50": int(samples[0]), "p99": int(samples[0]), "samples": 1} \
                if samples else {}
        cuts = statistics.quantiles(samples, n=100)
        return {"p50": int(cuts[49]), "p99": int(cuts[98]), "samples": len(samples)}

    def take_over(self) -> None:
        """Rebuild the table a dead predecessor left (saved at once: `ncdma status` then
        shows it) and answer what it left pending."""
        self.journal.load()
        self._save(final=True)
        self.resume_pending()

    def resume_pending(self) -> None:
        """Answer what a dead predecessor left unanswered.

        Either the notification it recorded, or one it received but was killed before
        recording: ids grow by one per notification, so the next few ids are tried, and the
        waiting thread's argument is read from /proc (QEMU makes one memslot call at a time).
        """
        data = os.pread(self.pending, _PENDING.size, 0)
        if len(data) < _PENDING.size:
            return
        last_id, tid, address, v2 = _PENDING.unpack(data)
        for candidate in range(last_id, last_id + _LOST_IDS_TRIED):
            if not seccomp.is_pending(self.listener, candidate):
                continue
            if candidate != last_id:
                found = blocked_memslot_ioctl(self.qemu_pid)
                if found is None and exiting(self.qemu_pid):
                    self.handle_exit(seccomp.Notification(
                        candidate, self.qemu_pid, syscalls.NR_EXIT_GROUP,
                        syscalls.AUDIT_ARCH_X86_64, (0, 0, 0, 0, 0, 0)))
                    continue
                if found is None:
                    self.log.error("guard %s: notification %#x pending but no thread waits in "
                                   "a memslot ioctl", self.plan.domain, candidate)
                    continue
                tid, address, v2 = found
            self.log.warning("guard %s: answering notification %#x left by the previous guard",
                             self.plan.domain, candidate)
            request = KVM_SET_USER_MEMORY_REGION2 if v2 else KVM_SET_USER_MEMORY_REGION
            self.handle(seccomp.Notification(candidate, tid, syscalls.NR_IOCTL,
                                             syscalls.AUDIT_ARCH_X86_64,
                                             (0, request, address, 0, 0, 0)),
                        time.perf_counter())

    def serve(self) -> None:
        """Answer notifications until QEMU exits."""
        qemu = pidfd_open(self.qemu_pid)
        poller = select.poll()
        poller.register(self.listener, select.POLLIN)
        poller.register(qemu, select.POLLIN)
        while True:
            ready = poller.poll(_IDLE_SUMMARY_MS if self.summary_stale else None)
            if not ready:  # idle: bring the journal's latency summary up to date
                self._save(final=True)
            for fd, events in ready:
                if fd == qemu or events & (select.POLLHUP | select.POLLERR):
                    self._save(final=True)
                    self.log.info("guard %s: QEMU exited; decisions %s, latency %s",
                                  self.plan.domain, dict(self.journal.counts),
                                  self.journal.latency_us)
                    return
                note = seccomp.receive(self.listener)
                if note is not None:
                    self.handle(note, time.perf_counter())


@dataclass(frozen=True)
class GuardTask:
    """What one guard serves: the domain and its plan, its QEMU, the seccomp listener (an fd
    of this process), and whether a predecessor died (``recovering``). ``pidfd`` refers to
    QEMU's process, taken when its wrapper connected, whatever happens to its pid number."""

    uuid: str
    qemu_pid: int
    plan: Plan
    listener: int
    recovering: bool = False
    pidfd: int | None = None


def _write_guard_pid(directory: Path, log: logging.Logger) -> None:
    try:
        write_guard_pid(directory)
    except OSError as err:  # a full state directory: serve all the same
        log.error("guard: the guard's pid file in %s not written: %s", directory, err.strerror)


def _serve(task: GuardTask, settings: Settings, log: logging.Logger,
           heartbeat: Heartbeat) -> int:
    directory = settings.domain_dir(task.uuid)
    plan = task.plan
    faults = Faults.from_environment(os.environ)
    if task.recovering and faults.armed("guard-start"):
        log.error("guard %s: cannot start (fault injected by a test)", plan.domain)
        return 1
    heartbeat.reset()
    _write_guard_pid(directory, log)
    watcher = LayoutWatcher(directory, log, settings.hook_timeout, task.qemu_pid)
    guard = Guard(task.listener, task.qemu_pid, plan, directory, log, watcher,
                  lambda deadline: capture_at_exit(settings, plan.uuid, task.qemu_pid, log,
                                                   deadline, faults), faults, heartbeat)
    if task.recovering:
        guard.take_over()
    watcher.start()
    log.info("guard %s: serving QEMU %d in %s mode (flag %#x, bars %s)%s", plan.domain,
             task.qemu_pid, plan.mode_text, plan.flag, ",".join(plan.bars),
             " after taking over" if task.recovering else "")
    guard.serve()
    return 0


def run_guard(task: GuardTask, settings: Settings, heartbeat: Heartbeat,
              log: logging.Logger) -> int:
    """Run one guard until its QEMU exits: 0 then (or if QEMU is already gone), 1 on failure.

    Called in a process of its own (the domain's keeper forks one), with the page
    ``heartbeat`` shared with the keeper.
    """
    sys.setswitchinterval(0.0005)  # the layout thread must not hold the GIL for long
    # qemu.qmp logs a failed handshake (QEMU exiting as the guard connects) as an error on
    # the service's stderr; the layout thread reports QMP failures in ncdma's log itself
    logging.getLogger("qemu.qmp").setLevel(logging.CRITICAL)
    try:
        return _serve(task, settings, log, heartbeat)
    except (NcdmaError, OSError) as err:
        gone = not alive(task.qemu_pid)
        log.log(logging.INFO if gone else logging.ERROR, "guard %s: %s%s", task.uuid, err,
                " (QEMU is gone)" if gone else "")
        return 0 if gone else 1
