"""The migration preflight of a method vm domain against this machine as its destination:
`ncdma peer preflight` (what the source asks over SSH) run for real here, where the kernel
does not offer KVM_X86_QUIRK_IGNORE_GUEST_PAT, and the source's pure decision on its answer."""

from __future__ import annotations

import json

from ncdma.migrate.options import MigrateOptions
from ncdma.migrate.preflight import MigrationRefusal, SourceFacts, decide_migration
from tests.host.conftest import run_ncdma


def test_a_vm_method_domain_is_refused_by_a_destination_without_the_quirk() -> None:
    done = run_ncdma(["peer", "preflight"])
    assert done.returncode == 0, done.stderr
    destination = json.loads(done.stdout)
    assert "vm" not in destination["methods"]
    assert any("KVM_X86_QUIRK_IGNORE_GUEST_PAT" in reason
               for reason in destination["vm_reasons"])
    source = SourceFacts("vm1", "u-1", "refuse", "enforce", False, "enforce", method="vm")
    refusal = decide_migration(source, destination, MigrateOptions("vm1", "qemu+ssh://h2/system"))
    assert isinstance(refusal, MigrationRefusal)
    assert "the destination does not allow method vm: " in refusal.reason
    assert "KVM_X86_QUIRK_IGNORE_GUEST_PAT (0x200)" in refusal.reason
