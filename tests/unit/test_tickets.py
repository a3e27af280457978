"""The destination's one-time migration tickets (real files, real rename, real users)."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from ncdma.errors import StateFileError
from ncdma.model.incoming import TicketState
from ncdma.store.tickets import TICKET_TTL_S, issue, redeem, tickets_dir

UUID = "5e1f0f3c-7a64-4d2b-9a0e-3c1d2b4a5f60"
OTHER = "0b9d6c1e-2f3a-4e5b-8c7d-6e5f4a3b2c1d"
HOST, NOW = "h2", 1_800_000_000.0


def test_a_ticket_is_a_random_256_bit_token_whose_hash_alone_is_stored_root_only(
        tmp_path: Path) -> None:
    ticket = issue(tmp_path, UUID, HOST, NOW)
    assert len(ticket.token) == 64 and int(ticket.token, 16) >= 0
    assert ticket.expires == NOW + TICKET_TTL_S
    assert issue(tmp_path, UUID, HOST, NOW).token != ticket.token
    directory = tickets_dir(tmp_path)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    stored = directory / hashlib.sha256(ticket.token.encode()).hexdigest()
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600 and stored.stat().st_uid == 0
    for path in directory.iterdir():
        assert ticket.token not in path.name and ticket.token not in path.read_text()


def test_a_valid_ticket_is_accepted_once(tmp_path: Path) -> None:
    token = issue(tmp_path, UUID, HOST, NOW).token
    assert redeem(tmp_path, token, UUID, HOST, NOW + 1) is TicketState.VALID
    assert redeem(tmp_path, token, UUID, HOST, NOW + 2) is TicketState.USED


def test_an_expired_ticket_is_refused(tmp_path: Path) -> None:
    token = issue(tmp_path, UUID, HOST, NOW).token
    assert redeem(tmp_path, token, UUID, HOST, NOW + TICKET_TTL_S) is TicketState.EXPIRED


def test_a_ticket_from_the_future_is_refused_as_expired(tmp_path: Path) -> None:
    """A clock set back must not stretch a ticket's life."""
    token = issue(tmp_path, UUID, HOST, NOW).token
    assert redeem(tmp_path, token, UUID, HOST, NOW - 1) is TicketState.EXPIRED


def test_a_ticket_for_another_domain_or_host_is_refused_and_stays_valid_for_its_own(
        tmp_path: Path) -> None:
    token = issue(tmp_path, UUID, HOST, NOW).token
    assert redeem(tmp_path, token, OTHER, HOST, NOW) is TicketState.OTHER_DOMAIN
    assert redeem(tmp_path, token, UUID, "h3", NOW) is TicketState.OTHER_HOST
    assert redeem(tmp_path, token, UUID, HOST, NOW) is TicketState.VALID


@pytest.mark.parametrize("token", ["", "../../etc/passwd", "A" * 64, "0" * 63, "0" * 65,
                                   "g" * 64])
def test_a_malformed_token_is_refused_without_touching_a_path(tmp_path: Path,
                                                              token: str) -> None:
    issue(tmp_path, UUID, HOST, NOW)
    assert redeem(tmp_path, token, UUID, HOST, NOW) is TicketState.MALFORMED


def test_a_forged_token_is_unknown(tmp_path: Path) -> None:
    issue(tmp_path, UUID, HOST, NOW)
    assert redeem(tmp_path, "0" * 64, UUID, HOST, NOW) is TicketState.UNKNOWN
    assert redeem(tmp_path / "nowhere", "0" * 64, UUID, HOST, NOW) is TicketState.UNKNOWN


def _redeem_in_child(args: tuple[Path, str]) -> str:
    return redeem(args[0], args[1], UUID, HOST, NOW).value


def test_concurrent_redeems_of_one_ticket_accept_exactly_one(tmp_path: Path) -> None:
    token = issue(tmp_path, UUID, HOST, NOW).token
    with multiprocessing.get_context("fork").Pool(8) as pool:
        answers = pool.map(_redeem_in_child, [(tmp_path, token)] * 32)
    assert answers.count("valid") == 1 and answers.count("used") == 31


def test_expired_and_used_tickets_are_purged_when_a_new_one_is_issued(tmp_path: Path) -> None:
    used = issue(tmp_path, UUID, HOST, NOW).token
    redeem(tmp_path, used, UUID, HOST, NOW)
    issue(tmp_path, OTHER, HOST, NOW)
    issue(tmp_path, UUID, HOST, NOW + 2 * TICKET_TTL_S + 1)
    assert len(list(tickets_dir(tmp_path).iterdir())) == 1


def test_an_unprivileged_user_can_neither_read_nor_plant_a_ticket() -> None:
    """The attack: a local user (nobody) lists the store, or plants a record whose hash it
    knows the token of. Run as uid 65534 against the real directory, whose parents it may
    enter (only the store itself stops it)."""
    with tempfile.TemporaryDirectory(dir="/tmp") as scratch:
        state = Path(scratch)
        os.chmod(state, 0o755)
        issue(state, UUID, HOST, NOW)
        forged = hashlib.sha256(b"f" * 64).hexdigest()
        for command in (f"ls {state}", f"ls {tickets_dir(state)}",
                        f"echo '{{}}' > {tickets_dir(state)}/{forged}"):
            done = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534",
                                   "--clear-groups", "sh", "-c", command],
                                  capture_output=True, text=True, check=False)
            if command == f"ls {state}":
                assert done.returncode == 0 and done.stdout.split() == ["tickets"], done
                continue
            assert done.returncode != 0 and "Permission denied" in done.stderr, done
        assert redeem(state, "f" * 64, UUID, HOST, NOW) is TicketState.UNKNOWN


def test_a_store_another_user_could_write_is_not_trusted(tmp_path: Path) -> None:
    token = issue(tmp_path, UUID, HOST, NOW).token
    os.chmod(tickets_dir(tmp_path), 0o777)
    with pytest.raises(StateFileError, match="tickets"):
        redeem(tmp_path, token, UUID, HOST, NOW)
