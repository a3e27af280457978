"""Per-domain AppArmor rules (issue 12): each QEMU reaches its own ncdma state only.

This machine's kernel has no AppArmor, so the profiles are checked by apparmor_parser
without loading them (-Q -K: parse and compile only). Debian's apparmor package provides
it (scripts/bootstrap installs it).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from ncdma.errors import ConfinementError
from ncdma.settings import Settings
from ncdma.virt.apparmor import confine_domain, domain_rules, with_domain_rules

UUID = "0b7e2a4c-1f2d-4d7a-9a51-0c3b6f1e2d44"
OTHER = "11111111-2222-3333-4444-555555555555"
SETTINGS = Settings(state_dir=Path("/run/ncdma"))
CHECK = ("apparmor_parser", "-Q", "-K")


@pytest.fixture
def profiles(tmp_path: Path) -> Path:
    """A domain's profile and files as virt-aa-helper writes them (TEMPLATE.qemu's shape)."""
    if shutil.which(CHECK[0]) is None:
        pytest.fail("apparmor_parser is missing: install Debian's apparmor (scripts/bootstrap)")
    (tmp_path / f"libvirt-{UUID}.files").write_text('  "/var/lib/libvirt/images/vm.qcow2" rwk,\n')
    (tmp_path / f"libvirt-{UUID}").write_text(
        "#include <tunables/global>\n\n"
        f"profile libvirt-{UUID} flags=(attach_disconnected) {{\n"
        "  #include <abstractions/base>\n"
        f'  #include "{tmp_path}/libvirt-{UUID}.files"\n'
        "}\n")
    return tmp_path


def test_the_rules_name_this_domain_only() -> None:
    rules = domain_rules(SETTINGS, UUID)
    assert f"/run/ncdma/domains/{UUID}/qmp/qmp.sock" in rules
    assert OTHER not in rules and "**" not in rules and "domains/*" not in rules


def test_adding_the_rules_twice_keeps_one_block_and_libvirts_rules() -> None:
    libvirt = '  "/var/lib/libvirt/images/vm.qcow2" rwk,\n'
    once = with_domain_rules(libvirt, domain_rules(SETTINGS, UUID))
    assert with_domain_rules(once, domain_rules(SETTINGS, UUID)) == once
    assert once.startswith(libvirt) and once.count("BEGIN ncdma") == 1


def test_the_domains_profile_with_ncdmas_rules_compiles(profiles: Path) -> None:
    profile = confine_domain(SETTINGS, UUID, profiles, CHECK)
    assert profile == profiles / f"libvirt-{UUID}"
    assert "qmp.sock" in (profiles / f"libvirt-{UUID}.files").read_text()
    print("AppArmor: profile parsed and compiled with apparmor_parser -Q -K; this kernel has "
          "no AppArmor, so it was not loaded")


def test_a_broken_profile_is_a_refusal_with_the_parsers_reason(profiles: Path) -> None:
    files = profiles / f"libvirt-{UUID}.files"
    files.write_text(files.read_text() + "  not a rule\n")
    with pytest.raises(ConfinementError, match="refused .*syntax error"):
        confine_domain(SETTINGS, UUID, profiles, CHECK)


def test_no_profile_from_libvirt_means_nothing_to_do(tmp_path: Path) -> None:
    assert confine_domain(SETTINGS, UUID, tmp_path, CHECK) is None


def test_the_abstraction_ncdmas_role_extends_compiles_and_grants_no_domain_state(
        tmp_path: Path) -> None:
    import jinja2

    template = Path(__file__).resolve().parents[2] / \
        "ansible/roles/ncdma/templates/apparmor-libvirt-qemu.j2"
    rules = jinja2.Template(template.read_text()).render(
        ansible_managed="test", ncdma_wrapper="/usr/local/libexec/ncdma/ncdma-qemu",
        ncdma_prefix="/opt/ncdma", _ncdma_conf="/etc/ncdma/ncdma.conf",
        ncdma_qemu="/usr/bin/qemu-system-x86_64", _ncdma_guard_socket="/run/ncdma/guard.sock",
        ncdma_log_file="/var/log/ncdma/ncdma.log", ncdma_state_dir="/run/ncdma",
        _ncdma_preload="/usr/local/libexec/ncdma/libncdma-pat.so")
    assert "/run/ncdma/domains" not in rules
    assert "/usr/local/libexec/ncdma/libncdma-pat.so mr," in rules  # method vm in QEMU
    (tmp_path / "ncdma").write_text(rules)
    profile = tmp_path / "profile"
    profile.write_text("#include <tunables/global>\nprofile t {\n  #include <abstractions/base>\n"
                       f'  #include "{tmp_path}/ncdma"\n}}\n')
    done = subprocess.run([*CHECK, str(profile)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
