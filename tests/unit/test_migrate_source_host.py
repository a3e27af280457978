"""`ncdma migrate -c URI` where URI names another host: refused with one line naming it (the
domain's plan and journal are on that host, not here)."""

from __future__ import annotations

import pytest

from ncdma.errors import MigrationRefused
from ncdma.migrate.run import require_local_source


class Connection:
    """What the check asks of a libvirt connection: the host it is connected to."""

    def __init__(self, hostname: str) -> None:
        self.hostname = hostname

    def getHostname(self) -> str:  # noqa: N802 - libvirt's name
        return self.hostname


def test_a_connection_to_another_host_is_refused_naming_it() -> None:
    with pytest.raises(MigrationRefused) as err:
        require_local_source(Connection("h2"), "h1")
    assert "names host h2, not this host (h1)" in str(err.value)
    assert err.value.hint == "run `ncdma migrate` on h2"


def test_this_host_under_its_short_or_full_name_is_accepted() -> None:
    require_local_source(Connection("h1.example.org"), "h1")
    require_local_source(Connection("h1"), "h1.example.org")
