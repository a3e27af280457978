"""ncdma_domains (issue 18): the role opts listed domains in with `ncdma enable`, changes
a domain only when its policy differs, and a rerun changes nothing."""
from __future__ import annotations

import json

import pytest

from tests.integration.ansible.conftest import deploy
from tests.integration.ncdma.conftest import OptedIn

pytestmark = pytest.mark.lab



def _domains(*policies: dict[str, str]) -> str:
    return json.dumps({"ncdma_domains": list(policies)})


def test_listed_domains_are_opted_in_once(vm: OptedIn) -> None:
    deploy("--limit", "h1")
    vm.define("h1")
    first = deploy("--limit", "h1", "-e", _domains({"name": vm.name, "bars": "vram",
                                                    "migration": "copy"}))
    assert first.changed()["h1"] == 1, first.describe()
    xml = vm.inactive_xml("h1")
    assert "ncdma-qemu" in xml and 'migration="copy"' in xml and 'bars="vram"' in xml
    again = deploy("--limit", "h1", "-e", _domains({"name": vm.uuid, "bars": "vram",
                                                    "migration": "copy"}))
    assert again.changed()["h1"] == 0, again.describe()
    assert vm.inactive_xml("h1") == xml
    other = deploy("--limit", "h1", "-e", _domains({"name": vm.name, "mode": "audit"}))
    assert other.changed()["h1"] == 1, other.describe()
    assert 'mode="audit"' in vm.inactive_xml("h1")
