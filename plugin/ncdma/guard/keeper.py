"""The keeper of one domain's guard: no QEMU waits on ncdma for long (DESIGN.md section 5).

The guard service forks one keeper per guarded QEMU, in a session of its own: a service
that is restarted, or killed, leaves keepers and their guards running. The keeper holds the
seccomp listener and runs the guard in a child process, which it watches:

- the guard dies: a new one is forked at once (warm, no start-up cost); it rebuilds its
  table from the journal and answers what its predecessor left;
- the guard stalls (stopped, stuck): QEMU waits in a trapped call and the guard has made no
  progress for STALL_S (a capture at exit may hold until its own deadline): the keeper kills
  it, and a new one takes over;
- no guard can start (FUTILE_STARTS in a row fail before answering anything): the keeper
  answers itself, from the journal and without QEMU's layout: deletes pass, a re-issue of a
  tagged slot (same addresses) keeps the flag, everything else runs untouched (fail-open).
  A domain whose policy says require='yes' is stopped instead: one line in QEMU's log
  (libvirt's domain log), then SIGTERM, on which QEMU exits cleanly.

Why a keeper rather than the service re-adopting guards after its own restart: it also
holds when the service is killed and never restarted, and the service stays a plain accept
loop. Why not a wrapper without a listener copy: then a dead guard means ENOSYS for QEMU's
memslot calls, and QEMU aborts instead of running on untagged.

Bound: a trapped call is answered within STALL_S + TICK_S + a guard's start (about 1.3 s;
bench/guard.py measures the takeover).
"""

from __future__ import annotations

import enum
import logging
import os
import select
import signal
import time
from dataclasses import replace

from ncdma.guard.capture import not_captured
from ncdma.guard.heartbeat import Heartbeat
from ncdma.guard.task import Guard, GuardTask, run_guard
from ncdma.errors import SeccompError
from ncdma.linux.pidfd import pidfd_getfd, pidfd_open
from ncdma.logs import configure_logging
from ncdma.store.counters import Sample, record
from ncdma.settings import Settings

STALL_S = 1.0
TICK_S = 0.25
FUTILE_STARTS = 3
_REAP_S = 5.0


class Outcome(enum.Enum):
    """How one guard process ended, as its keeper saw it."""

    QEMU_EXITED = "QEMU exited"
    DIED = "died"
    STALLED = "stalled"


def _readable(fd: int) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


class Keeper:
    """Keeps one guard answering one QEMU."""

    def __init__(self, task: GuardTask, settings: Settings, log: logging.Logger) -> None:
        self.task = task
        self.settings = settings
        self.log = log
        self.domain = task.plan.domain
        self.heartbeat = Heartbeat()

    def _fork(self, task: GuardTask) -> int:
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = run_guard(task, self.settings, self.heartbeat, self.log)
            finally:
                os._exit(code)
        return pid

    def _reap(self, worker: int, worker_fd: int) -> int:
        """The worker's exit status, once it is gone (killed if it lingers)."""
        if not select.select([worker_fd], [], [], _REAP_S)[0]:
            os.kill(worker, signal.SIGKILL)
        os.close(worker_fd)
        return os.waitstatus_to_exitcode(os.waitpid(worker, 0)[1])

    def watch(self, worker: int, qemu: int) -> tuple[Outcome, int, bool]:
        """Until the worker ends: how, its exit status, and whether it answered anything."""
        worker_fd = pidfd_open(worker)
        poller = select.poll()
        poller.register(qemu, select.POLLIN)
        poller.register(worker_fd, select.POLLIN)
        last, changed, answered = self.heartbeat.read(), time.monotonic(), False
        waiting_since: float | None = None
        while True:
            ready = {fd for fd, _ in poller.poll(TICK_S * 1000)}
            if qemu in ready:
                return Outcome.QEMU_EXITED, self._reap(worker, worker_fd), answered
            if worker_fd in ready:  # status 0: the guard saw QEMU go (its filter went first)
                status = self._reap(worker, worker_fd)
                return Outcome.QEMU_EXITED if status == 0 else Outcome.DIED, status, answered
            beat, now = self.heartbeat.read(), time.monotonic()
            if beat != last:
                answered = answered or beat.answered > 0
                last, changed = beat, now
                continue
            if not (beat.busy or _readable(self.task.listener)):
                waiting_since = None
                continue
            waiting_since = waiting_since or now
            if now - max(changed, waiting_since) > STALL_S and now > beat.hold_until:
                self.log.error("keeper %s: guard %d made no progress for %.1f s while QEMU "
                               "waits: killing it", self.domain, worker, now - changed)
                os.kill(worker, signal.SIGKILL)
                return Outcome.STALLED, self._reap(worker, worker_fd), answered

    def run(self) -> int:
        """Keep a guard running until QEMU exits; answer alone when none can start."""
        try:
            qemu = self.task.pidfd if self.task.pidfd is not None \
                else pidfd_open(self.task.qemu_pid)
        except SeccompError:
            return 0  # QEMU is already gone
        task, futile = self.task, 0
        while futile < FUTILE_STARTS:
            worker = self._fork(task)
            outcome, status, answered = self.watch(worker, qemu)
            if outcome is Outcome.QEMU_EXITED:
                return 0
            failed = outcome is Outcome.DIED and status > 0 and not answered
            futile = futile + 1 if failed else 0
            self.log.warning("keeper %s: guard %d %s (status %d): a new guard takes over",
                             self.domain, worker, outcome.value, status)
            self._count_restart(outcome)
            task = replace(task, recovering=True)
        return self.answer_alone()

    def _count_restart(self, outcome: Outcome) -> None:
        """ncdma_guard_restarts_total{domain,uuid,reason} (see ncdma.cli.metrics)."""
        labels = {"domain": self.domain, "uuid": self.task.uuid, "reason": outcome.value}
        try:
            record(self.settings, Sample("guard_restarts_total", labels))
        except OSError as err:
            self.log.warning("keeper %s: cannot count the restart: %s", self.domain, err)

    def _tell_domain_log(self, line: str) -> None:
        """Write ``line`` on QEMU's stderr: libvirt's log of the domain."""
        try:
            stderr = pidfd_getfd(pidfd_open(self.task.qemu_pid), 2)
            try:
                os.write(stderr, f"{line}\n".encode())
            finally:
                os.close(stderr)
        except (SeccompError, OSError) as err:
            self.log.error("keeper %s: cannot write to QEMU's log: %s", self.domain, err)

    def answer_alone(self) -> int:
        """Fail-open: answer QEMU from the journal, with no layout (nothing new is tagged);
        for require='yes', stop QEMU cleanly first."""
        plan = self.task.plan
        self.log.error("keeper %s: no guard could start %d times in a row: answering QEMU's "
                       "memslot calls without one (nothing new is tagged; deletes pass, tagged "
                       "slots keep their flag)", self.domain, FUTILE_STARTS)
        if plan.require:
            self._tell_domain_log(
                f"ncdma: {self.domain}: no guard can run (see the ncdma log); its policy "
                f"requires ncdma (require='yes'): stopping the VM")
            os.kill(self.task.qemu_pid, signal.SIGTERM)
        directory = self.settings.domain_dir(self.task.uuid)
        guard = Guard(self.task.listener, self.task.qemu_pid, plan, directory, self.log, None,
                      lambda _deadline: not_captured(self.settings, plan.uuid, self.log,
                                                     "no guard could run at QEMU's exit"))
        guard.take_over()
        guard.serve()
        return 0


def keep(task: GuardTask, settings: Settings) -> int:
    """Run the keeper of ``task`` until its QEMU exits (in a process of its own)."""
    return Keeper(task, settings, configure_logging(settings, "guard")).run()
