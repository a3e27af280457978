"""Whether the guard service may attach a guard for a caller: the pure part of the check.

A caller is believed only for what the kernel says about it (:mod:`ncdma.peercred`). It
gets a guard for domain UUID only when all of these hold:

- the request's pid is the caller's own (SO_PEERCRED): the guard serves the caller only;
- the domain has a plan (root wrote it in the prepare hook) and the caller's uid and gid
  are the ones that plan names for QEMU;
- the caller runs the wrapper the plan names (the domain's ``<emulator>``, as libvirt
  execs it) for that UUID (``-uuid UUID`` on its command line);
- no guard serves a live QEMU of that domain already.

The listener itself is checked by the service (the caller must hold it) and by the guard
(every notification must come from a thread of the caller).
"""

from __future__ import annotations

from collections.abc import Sequence

from ncdma.guard.attach import AttachRequest
from ncdma.linux.peercred import Caller
from ncdma.model.plan import Plan


def runs_wrapper_for(argv: Sequence[str], wrapper: str, uuid: str) -> bool:
    """``argv`` is the wrapper's (run directly, or by its script interpreter) for ``uuid``."""
    named = wrapper in argv[:2]
    pairs = zip(argv, argv[1:])
    return named and any(name == "-uuid" and value.lower() == uuid.lower()
                         for name, value in pairs)


def refusal_reason(request: AttachRequest, caller: Caller, plan: Plan | None,
                   argv: Sequence[str], attached: bool) -> str | None:
    """Why the caller gets no guard, or None when it may have one."""
    if request.pid != caller.pid:
        return (f"the request names pid {request.pid} but comes from pid {caller.pid}: the "
                f"guard serves only the process that asks")
    if plan is None:
        return (f"no plan for domain {request.uuid}: the prepare hook did not run "
                f"(is ncdma's libvirt hook installed?)")
    if (caller.uid, caller.gid) != (plan.qemu_uid, plan.qemu_gid):
        return (f"pid {caller.pid} runs as {caller.uid}:{caller.gid}, but the plan of "
                f"{plan.domain} names QEMU's user {plan.qemu_uid}:{plan.qemu_gid}")
    if not plan.wrapper or not runs_wrapper_for(argv, plan.wrapper, request.uuid):
        return (f"pid {caller.pid} is not the wrapper {plan.wrapper or '(none planned)'} "
                f"started for {request.uuid}")
    if attached:
        return f"{plan.domain} already has a guard serving its running QEMU"
    return None
