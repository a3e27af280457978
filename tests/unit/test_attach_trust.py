"""The attach protocol's schema and the guard service's trust decision (pure parts)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ncdma.errors import AttachRequestError
from ncdma.guard.attach import AttachRequest, parse_request
from ncdma.linux.peercred import Caller
from ncdma.model.plan import Plan
from ncdma.model.policy import PolicyMode
from ncdma.guard.trust import refusal_reason
from ncdma.model.verdict import Mode

UUID = "0b7e2a4c-1f2d-4d7a-9a51-0c3b6f1e2d44"
WRAPPER = "/usr/local/libexec/ncdma/ncdma-qemu"
PLAN = Plan("vm", UUID, PolicyMode.ENFORCE, Mode.AUDIT, False, ("vram",), "refuse", 8,
            "/usr/bin/qemu-system-x86_64", ("video0",), (), qemu_uid=64055, qemu_gid=994,
            wrapper=WRAPPER)
CALLER = Caller(pid=4242, uid=64055, gid=994, pidfd=-1)
ARGV = ["/opt/ncdma/bin/python3", WRAPPER, "-name", "guest=vm", "-uuid", UUID]
REQUEST = AttachRequest(UUID, 4242, 7)


def test_a_request_round_trips() -> None:
    assert parse_request(REQUEST.to_bytes()) == REQUEST


@pytest.mark.parametrize("message", [
    b"[]", b"null", b"1e999", b'"x"', b"{" * 100000, b"\xff", b"",
    b'{"uuid":"x","pid":[]}',
    json.dumps({"uuid": UUID, "pid": True, "listener_fd": 3}).encode(),
    json.dumps({"uuid": UUID, "pid": 1.5, "listener_fd": 3}).encode(),
    json.dumps({"uuid": UUID, "pid": 2 ** 80, "listener_fd": 3}).encode(),
    json.dumps({"uuid": UUID, "pid": 1, "listener_fd": -1}).encode(),
    json.dumps({"uuid": "../../etc", "pid": 1, "listener_fd": 3}).encode(),
    json.dumps({"uuid": UUID, "pid": 1, "listener_fd": 3, "extra": 1}).encode(),
])
def test_wrong_shapes_are_request_errors(message: bytes) -> None:
    with pytest.raises(AttachRequestError):
        parse_request(message)


@given(st.binary(max_size=512) | st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children) | st.dictionaries(st.text(max_size=12), children),
    max_leaves=20).map(lambda value: json.dumps(value).encode()))
def test_any_input_is_a_request_or_a_request_error(message: bytes) -> None:
    try:
        parse_request(message)
    except AttachRequestError:
        pass


def test_the_wrapper_of_the_planned_user_gets_a_guard() -> None:
    assert refusal_reason(REQUEST, CALLER, PLAN, ARGV, attached=False) is None


@pytest.mark.parametrize(("request_", "caller", "plan", "argv", "attached", "why"), [
    (AttachRequest(UUID, 1, 7), CALLER, PLAN, ARGV, False, "comes from pid 4242"),
    (REQUEST, CALLER, None, ARGV, False, "no plan"),
    (REQUEST, Caller(4242, 65534, 65534, -1), PLAN, ARGV, False, "names QEMU's user"),
    (REQUEST, Caller(4242, 64055, 0, -1), PLAN, ARGV, False, "names QEMU's user"),
    (REQUEST, CALLER, PLAN, ["/usr/bin/python3", "/tmp/x", "-uuid", UUID], False,
     "not the wrapper"),
    (REQUEST, CALLER, PLAN, ARGV[:-1] + ["11111111-2222-3333-4444-555555555555"], False,
     "not the wrapper"),
    (REQUEST, CALLER, PLAN, ARGV, True, "already has a guard"),
])
def test_every_other_caller_is_refused(request_, caller, plan, argv, attached, why) -> None:
    reason = refusal_reason(request_, caller, plan, argv, attached)
    assert reason is not None and why in reason
