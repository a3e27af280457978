"""The guard through real libvirt on the lab (QEMU 10.0, which reports RAMBlock HVAs)."""

from __future__ import annotations

import json
import subprocess
import time
import uuid

from lab.install import FLEET_WRAPPER
from tests.integration.ncdma.conftest import OptedIn


def _status(opted_in: OptedIn, host: str = "h1") -> dict:
    done = opted_in.ncdma(host, "status", opted_in.name, "--json")
    assert done.returncode in (0, 1), done.stderr
    return json.loads(done.stdout)


def _wait_for(condition, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.3)
    return condition()


def test_enable_start_status_shows_the_vram_slot_selected(opted_in: OptedIn) -> None:
    opted_in.define()
    opted_in.enable("h1", "--bars", "vram")
    opted_in.lab.host("h1").virsh("start", opted_in.name)

    def vram_journaled():
        status = _status(opted_in)
        slots = (status.get("journal") or {}).get("slots", [])
        # the guard re-reads the flat view after each slot change: wait until it agrees
        return status if any(slot["decision"] == "tag" for slot in slots) \
            and status["flatview_checked"] and not status["mismatches"] else None

    status = _wait_for(vram_journaled)
    assert status, f"no vram slot journaled: {_status(opted_in)}"
    assert status["plan"]["mode"] == opted_in.mode and status["guard"]["alive"]
    slots = status["journal"]["slots"]
    [vram] = [slot for slot in slots if slot["decision"] == "tag"]
    # enforce: the stand-in flag set on the tagged slot, and QEMU runs on with it
    assert vram["size"] == 0x800000 and vram["owner"]["kind"] == "vram"
    assert vram["flag_set"] is opted_in.enforce
    ram = [slot for slot in slots if slot["owner"]["kind"] == "system RAM"]
    assert ram and all(slot["decision"] == "untouched" for slot in ram)
    assert status["mismatches"] == []
    human = opted_in.ncdma("h1", "status", opted_in.name)
    assert human.returncode == 0 and "guard: alive" in human.stdout
    assert f"mode: {opted_in.mode_text} (requested enforce" in human.stdout
    [row] = [line for line in human.stdout.splitlines() if "vga.vram" in line]
    assert (" set " in row) is opted_in.enforce, human.stdout
    assert "every journaled slot matches a KVM range" in human.stdout
    # QEMU's own seccomp sandbox, which libvirt asks for, runs stacked on ncdma's filter
    cmdline = (opted_in.lab.host("h1").root_path / f"proc/{opted_in.qemu_pid()}/cmdline")
    arguments = cmdline.read_bytes().split(b"\0")
    assert b"-sandbox" in arguments and arguments[arguments.index(b"-sandbox") + 1].startswith(b"on")
    directory = opted_in.lab.host("h1").root_path / f"run/ncdma/domains/{opted_in.uuid}"
    assert (directory / "qmp").stat().st_mode & 0o777 == 0o700  # QEMU's user's (and root's)
    assert directory.stat().st_mode & 0o777 == 0o710
    assert (directory / "slots.json").stat().st_mode & 0o777 == 0o600


def test_system_reset_recreates_the_slots_and_the_journal_follows(opted_in: OptedIn) -> None:
    h1 = opted_in.lab.host("h1")
    opted_in.define()
    opted_in.enable("h1", "--bars", "vram")
    h1.virsh("start", opted_in.name)
    first = _wait_for(lambda: (s := _status(opted_in))["journal"] and
                      s["journal"]["counts"].get("tag") and not s["mismatches"] and s)
    assert first, _status(opted_in)
    h1.virsh("reset", opted_in.name)

    def settled_after_reset():
        status = _status(opted_in)
        counts = status["journal"]["counts"]
        return status if counts.get("tag", 0) > first["journal"]["counts"]["tag"] \
            and counts["delete"] > first["journal"]["counts"]["delete"] \
            and status["flatview_checked"] and not status["mismatches"] else None

    status = _wait_for(settled_after_reset)
    assert status, _status(opted_in)
    assert [slot["size"] for slot in status["journal"]["slots"] if slot["decision"] == "tag"] \
        == [0x800000]


def test_started_hook_sees_the_guard_and_require_is_satisfied(opted_in: OptedIn) -> None:
    opted_in.define()
    opted_in.enable("h1", "--bars", "vram", "--mode", "audit", "--require", "yes")
    done = opted_in.lab.host("h1").virsh("start", opted_in.name, check=False)
    assert done.returncode == 0, done.stderr
    assert opted_in.state() == "running"


def test_migration_keeps_the_domain_guarded_on_the_destination(opted_in: OptedIn) -> None:
    h1, h2 = opted_in.lab.host("h1"), opted_in.lab.host("h2")
    opted_in.define()
    opted_in.enable("h1", "--bars", "vram", "--migration", "any")  # plain virsh: opted into
    h1.virsh("start", opted_in.name)
    h1.virsh("migrate", "--live", opted_in.name, f"qemu+ssh://{h2.address}/system")
    status = _wait_for(lambda: (s := _status(opted_in, "h2"))["guard"]["alive"] and s)
    assert status["guard"]["alive"], status
    assert status["plan"]["mode"] == opted_in.mode


def _write_plan(host, domain: str, mode: str, name: str, user: str = "root",
                group: str = "root") -> None:
    """The plan the prepare hook would write, written by hand (forcing a mode past the hook),
    for QEMU running as ``user``:``group``."""
    host.run(["/opt/ncdma/bin/python3", "-c",
              "import grp, pwd; "
              "from ncdma.model.plan import Plan; from ncdma.model.policy import PolicyMode; "
              "from ncdma.model.verdict import Mode; from ncdma.settings import load_settings; "
              "from ncdma.store.state import write_plan; "
              f"write_plan(load_settings(), Plan('{name}', '{domain}', PolicyMode.ENFORCE, "
              f"Mode('{mode}'), False, ('vram',), 'refuse', 8, '/usr/bin/qemu-system-x86_64', "
              f"('video0',), (), qemu_uid=pwd.getpwnam('{user}').pw_uid, "
              f"qemu_gid=grp.getgrnam('{group}').gr_gid, wrapper='{FLEET_WRAPPER}'))"],
             check=True)


def test_enforce_forced_on_this_kernel_fails_the_vram_ioctl_with_einval_on_qemu_10(
        installed) -> None:
    h1 = installed["h1"]
    domain = str(uuid.uuid4())
    _write_plan(h1, domain, "enforce", "forced-enforce")
    try:
        done = h1.run([FLEET_WRAPPER, "-uuid", domain, "-machine", "pc,accel=kvm", "-m", "128",
                       "-display", "none", "-nodefaults", "-device", "virtio-vga,id=video0"],
                      timeout=60)
        assert done.returncode != 0 and "Invalid argument" in done.stderr, done.stderr
        journal = json.loads((h1.root_path / f"run/ncdma/domains/{domain}/slots.json").read_text())
        [tagged] = [slot for slot in journal["slots"] if slot["flag_set"]]
        assert tagged["size"] == 0x800000 and tagged["owner"]["region"].endswith("vga.vram")
        # recognised by host address at its very first creation (QEMU >= 8.0)
        assert journal["counts"]["tag"] == 1
    finally:
        h1.run(["rm", "-rf", f"/run/ncdma/domains/{domain}"])


def test_qemu_running_as_an_unprivileged_user_is_guarded_by_the_root_service(installed) -> None:
    """libvirt usually runs QEMU as libvirt-qemu without capabilities: the wrapper hands its
    listener to the root service, whose guard reads and writes QEMU's memory."""
    h1 = installed["h1"]
    domain = str(uuid.uuid4())
    _write_plan(h1, domain, "audit", "unprivileged", "libvirt-qemu", "kvm")
    # /dev/kvm is root's on these machines: a private copy of the node for the QEMU user
    # (on a filesystem that allows device nodes; the host's /tmp is nodev),
    # bound over /dev/kvm in a mount namespace of its own.
    script = (f"mknod /var/tmp/kvm-{domain[:8]} c 10 232 && "
              f"chown libvirt-qemu:kvm /var/tmp/kvm-{domain[:8]} && "
              f"mount --bind /var/tmp/kvm-{domain[:8]} /dev/kvm && "
              # as libvirt runs it: qemu.conf's group, the user's groups as supplementary ones
              "exec setpriv --reuid=libvirt-qemu --regid=kvm --groups=libvirt-qemu "
              "--inh-caps=-all "
              f"--bounding-set=-all {FLEET_WRAPPER} -uuid {domain} -machine pc,accel=kvm -m 128 "
              "-display none -nodefaults -device virtio-vga,id=video0")
    runner = subprocess.Popen(h1.nsenter_argv(["unshare", "-m", "--propagation", "private",
                                               "sh", "-c", script]),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        def vram_journaled():
            done = h1.run(["/opt/ncdma/bin/ncdma", "status", domain, "--json"])
            if done.returncode not in (0, 1) or not done.stdout:
                return None
            status = json.loads(done.stdout)
            slots = (status.get("journal") or {}).get("slots", [])
            return status if any(slot["decision"] == "tag" for slot in slots) else None

        status = _wait_for(vram_journaled)
        assert status, runner.poll() is None or runner.stderr.read()
        assert status["guard"]["alive"]
        qemu = h1.run(["pgrep", "-f", f"qemu-system-x86_64 -uuid {domain}"]).stdout.split()
        assert qemu, "QEMU is running"
        owner = h1.run(["stat", "-c", "%U", f"/proc/{qemu[0]}"]).stdout.strip()
        assert owner == "libvirt-qemu"
        capabilities = h1.run(["grep", "CapEff", f"/proc/{qemu[0]}/status"]).stdout
        assert capabilities.split()[-1] == "0000000000000000"
    finally:
        h1.run(["pkill", "-f", f"qemu-system-x86_64 -uuid {domain}"])
        runner.wait(timeout=30)
        h1.run(["rm", "-rf", f"/run/ncdma/domains/{domain}", f"/var/tmp/kvm-{domain[:8]}"])
