"""The emulator wrapper libvirt starts instead of QEMU (the domain's <emulator>).

It finds the plan the hook wrote for this domain (by QEMU's ``-uuid`` argument). With a
plan in audit or enforce mode it connects to the guard service, installs the seccomp
filter that traps only the memslot ioctls, hands the listener to the service, and execs
the real QEMU with the same pid, arguments and inherited file descriptors, plus a private
QMP socket for the guard. Without a plan (libvirt probing capabilities, a domain that does
not opt in, mode off or none) it execs QEMU untouched.

With method vm (enforce) it also adds ncdma's preload library to QEMU's LD_PRELOAD: it
disables KVM_X86_QUIRK_IGNORE_GUEST_PAT on QEMU's VM fd right after KVM_CREATE_VM, fails
closed as the policy says, and reports to the guard in the domain's ``qmp/`` directory.

If the service cannot be reached, a domain whose policy requires ncdma fails to start
with one line on stderr (libvirt shows it); any other runs unguarded and says so. Once
the filter is installed there is no unguarded way back: a refusal, or no answer within
the bound both sides know (:mod:`ncdma.attach`), stops the start with one line.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

from ncdma.errors import GuardAttachError, NcdmaError, PreloadError
from ncdma.guard.attach import ACK, ATTACH_TIMEOUT_S, MAX_REQUEST, AttachRequest
from ncdma.kvm.abi import MEMSLOT_IOCTLS
from ncdma.linux import seccomp
from ncdma.model.plan import WrapperPlan
from ncdma.model.verdict import Mode
from ncdma.settings import Settings, load_settings
from ncdma.store.state import PAT_REPORT, read_wrapper_plan


def _argument(argv: Sequence[str], option: str) -> str | None:
    """The value following ``option`` in QEMU's command line, if present."""
    for name, value in zip(argv, argv[1:]):
        if name == option:
            return value
    return None


def with_machine_option(argv: Sequence[str], option: str) -> list[str]:
    """QEMU's arguments with ``option`` added to its -machine (or a new -machine)."""
    result = list(argv)
    for index, name in enumerate(result[:-1]):
        if name == "-machine":
            result[index + 1] = f"{result[index + 1]},{option}"
            return result
    return [*result, "-machine", option]


def real_emulator(plan: WrapperPlan | None, settings: Settings) -> str:
    """The QEMU binary to exec."""
    if plan is not None and os.access(plan.emulator, os.X_OK):
        return plan.emulator
    return str(settings.qemu)


def _exchange(connection: socket.socket, request: AttachRequest, listener: int,
              deadline: float) -> dict[str, Any]:
    """Send the request, read the answer, acknowledge an ok; all before ``deadline``."""
    socket.send_fds(connection, [request.to_bytes()], [listener])
    connection.settimeout(max(0.001, deadline - time.monotonic()))
    answer = json.loads(connection.makefile("rb").readline(MAX_REQUEST) or b"{}")
    if not isinstance(answer, dict):
        raise ValueError("the answer is not a JSON object")
    if answer.get("ok") is True:
        connection.sendall(ACK)
    return answer


def attach_guard(settings: Settings, plan: WrapperPlan) -> str:
    """Install the memslot filter and hand its listener to the guard service.

    Returns the private QMP socket path QEMU must serve. The service is reached before
    the filter is installed: a filter whose listener nobody reads would hang QEMU. The
    exchange is bounded by :data:`ncdma.attach.ATTACH_TIMEOUT_S`, as the service's is.

    :raise GuardAttachError: When the service is unreachable (no filter installed yet), or
        ``filtered``: it refused or did not answer in time, with the filter installed.
    """
    path = settings.guard_socket
    deadline = time.monotonic() + ATTACH_TIMEOUT_S
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    connection.settimeout(ATTACH_TIMEOUT_S)
    try:
        connection.connect(str(path))
    except OSError as err:
        raise GuardAttachError(f"the guard service is not reachable at {path}: {err.strerror}",
                               "start it (`ncdma guardd`, or the ncdma-guardd service)",
                               path) from None
    with connection:
        listener = seccomp.install_ioctl_filter(MEMSLOT_IOCTLS, trap_exit=plan.share_device_ram)
        request = AttachRequest(plan.uuid, os.getpid(), listener)
        try:
            answer = _exchange(connection, request, listener, deadline)
        except (OSError, ValueError) as err:
            answer = {"ok": False, "error": f"no answer within {ATTACH_TIMEOUT_S:g} s: {err}"}
    if answer.get("ok") is not True:
        os.close(listener)  # nobody will answer: memslot ioctls would fail (ENOSYS)
        raise GuardAttachError(f"QEMU not started: the guard service did not attach its guard "
                               f"({answer.get('error')}), and with the filter installed QEMU "
                               f"cannot run unguarded", "see the ncdma log on this host", path,
                               filtered=True)
    return str(answer["qmp_socket"])


def preload_environment(plan: WrapperPlan, settings: Settings, qmp_socket: str | None,
                        environment: Mapping[str, str]) -> dict[str, str]:
    """QEMU's environment: with method vm (enforce), ncdma's preload library first in
    LD_PRELOAD, told the policy's require, the domain and where to report (next to the QMP
    socket, when the guard is attached).

    :raise PreloadError: When the library is not readable and the policy requires it.
    """
    result = dict(environment)
    if not plan.disables_quirk:
        return result
    library = str(settings.preload)
    if not os.access(library, os.R_OK):
        problem = (f"method vm needs ncdma's preload library {library}, which is missing or "
                   f"unreadable")
        if plan.require:
            raise PreloadError(f"QEMU not started: {problem}", "run install-host, or set "
                               "preload in /etc/ncdma/ncdma.conf", settings.preload)
        print(f"ncdma-qemu: warning: {plan.domain}: {problem}: guest PAT is NOT honored",
              file=sys.stderr)
        return result
    result["LD_PRELOAD"] = " ".join(filter(None, (library, environment.get("LD_PRELOAD"))))
    result["NCDMA_PAT_REQUIRE"] = "1" if plan.require else "0"
    result["NCDMA_PAT_DOMAIN"] = plan.domain
    if qmp_socket is not None:
        report = os.path.join(os.path.dirname(qmp_socket), os.path.basename(PAT_REPORT))
        result["NCDMA_PAT_REPORT"] = report
    return result


def qemu_argv(argv: Sequence[str], settings: Settings,
              environment: Mapping[str, str]) -> tuple[str, list[str], dict[str, str]]:
    """The QEMU binary, arguments and environment to exec, the guard attached when the plan
    asks."""
    uuid = _argument(argv, "-uuid")
    plan = read_wrapper_plan(settings, uuid) if uuid else None
    emulator = real_emulator(plan, settings)
    if plan is None or plan.mode is Mode.NONE:
        return emulator, list(argv), dict(environment)
    if plan.disables_quirk and plan.require:
        preload_environment(plan, settings, None, environment)  # refuse before any filter
    try:
        qmp_socket = attach_guard(settings, plan)
    except GuardAttachError as err:
        if plan.require or err.filtered:
            raise
        print(f"ncdma-qemu: warning: {plan.domain} runs unguarded: {err}", file=sys.stderr)
        return emulator, list(argv), preload_environment(plan, settings, None, environment)
    if plan.share_device_ram:
        argv = with_machine_option(argv, "aux-ram-share=on")
    return emulator, [*argv, "-qmp", f"unix:{qmp_socket},server=on,wait=off"], \
        preload_environment(plan, settings, qmp_socket, environment)


def main() -> int:
    """Entry point ``ncdma-qemu``: become the real QEMU, or say in one line why not."""
    try:
        emulator, argv, environment = qemu_argv(sys.argv[1:], load_settings(), os.environ)
        os.execve(emulator, [emulator, *argv], environment)
    except NcdmaError as err:
        print(f"ncdma-qemu: {err}", file=sys.stderr)
    except OSError as err:
        print(f"ncdma-qemu: cannot run QEMU: {err} (set qemu in /etc/ncdma/ncdma.conf)",
              file=sys.stderr)
    return 1
