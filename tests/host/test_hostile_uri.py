"""A hostile destination URI never runs a command on this host (issue 12), with real ssh."""

from __future__ import annotations

import pytest

from ncdma.errors import NcdmaError
from ncdma.migrate.channel import Peer, SshTarget


def test_proxycommand_in_the_uri_runs_nothing(tmp_path, monkeypatch) -> None:
    uri = "qemu+ssh://-oProxyCommand=touch${IFS}pwned@h2/system"
    monkeypatch.chdir(tmp_path)  # where the injected command would leave its file
    with pytest.raises(NcdmaError):
        Peer(SshTarget.from_uri(uri), "/bin/true", tmp_path / "ssh").preflight()
    assert not list(tmp_path.glob("pwned*")), "the URI ran a command on this host"
