"""A host that fails the preflight (enforce required on this unpatched kernel) fails with
the probe's own reasons, and not one of its files changes; nor does a --check run."""
from __future__ import annotations

import json

import pytest

from lab import Lab
from lab.playbook import playbook
from tests.integration.ansible.conftest import Mode, host_files

pytestmark = pytest.mark.lab


def test_enforce_required_fails_with_the_probes_reasons_and_changes_nothing(
        clean_lab: Lab, mode: Mode) -> None:
    """In both modes: the lab's stand-in flag never makes the real flag's verdict enforce."""
    h1 = clean_lab.host("h1")
    probe = h1.run(["env", "PYTHONPATH=/srv/ncdma/plugin", "python3", "-m", "ncdma", "check",
                    "--json"])
    reasons = json.loads(probe.stdout)["reasons"]
    assert probe.returncode == 1 and reasons, "this kernel is not patched: audit at best"
    before = host_files(h1)
    done = mode.playbook("--limit", "h1", "-e", "ncdma_require_enforce=true")
    assert done.returncode != 0 and done.recap["h1"]["failed"] == 1, done.describe()
    assert done.recap["h1"]["changed"] == 0
    message = done.output.partition("ncdma_require_enforce is true, but ncdma check says")[2]
    assert message, done.describe()
    assert all(reason in message for reason in reasons), done.describe()
    assert host_files(h1) == before
    assert not (h1.root_path / "opt/ncdma").exists()


def test_check_run_on_a_host_without_ncdma_predicts_changes_and_makes_none(
        clean_lab: Lab) -> None:
    h1 = clean_lab.host("h1")
    before = host_files(h1)
    done = playbook("--limit", "h1", "--check", "--diff")
    assert done.returncode == 0 and done.recap["h1"]["changed"] > 0, done.describe()
    assert host_files(h1) == before


def test_the_lab_stand_in_is_refused_on_a_host_that_is_not_a_lab_host(clean_lab: Lab) -> None:
    h1 = clean_lab.host("h1")
    marker = h1.root_path / "etc/ncdma-lab-host"
    text = marker.read_text()
    marker.unlink()  # h1 as any real host: no lab marker
    try:
        before = host_files(h1)
        done = playbook("--limit", "h1", "-e", "ncdma_lab_stand_in=true")
        assert done.returncode != 0 and done.recap["h1"]["failed"] == 1, done.describe()
        assert done.recap["h1"]["changed"] == 0
        assert "ncdma_lab_stand_in is for ncdma's lab only" in done.output, done.describe()
        assert host_files(h1) == before
    finally:
        marker.write_text(text)
