"""One `ncdma migrate` per domain: the lock file (real flock on this machine's kernel)."""

from __future__ import annotations

import os

import pytest

from ncdma.errors import MigrationBusy
from ncdma.migrate.lock import acquire, lock_path

UUID = "5e1f0f3c-7a64-4d2b-9a0e-3c1d2b4a5f60"


def test_a_second_migration_of_the_domain_is_refused_until_the_first_ends(tmp_path) -> None:
    first = acquire(tmp_path, UUID, "vm1")
    with pytest.raises(MigrationBusy, match=f"vm1 is already being migrated .*pid {os.getpid()}"):
        acquire(tmp_path, UUID, "vm1")
    other = acquire(tmp_path, "another-uuid", "vm2")  # other domains are not held up
    os.close(first)
    os.close(acquire(tmp_path, UUID, "vm1"))
    os.close(other)
    assert lock_path(tmp_path, UUID).parent == tmp_path / "migrations"
