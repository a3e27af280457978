"""ncdma's main job on the built-in lab: `python3 -m lab.demo` (scripts/demo runs it).

Brings the lab up, runs `ncdma check` on this machine and inside h1, deploys ncdma on
both hosts with the Ansible playbook (ansible/site.yml, over SSH), opts a firmware-only
virtio-vga VM in (bars=vram: the lab's stand-in for blob mappings), starts it on h1,
shows its virtio-gpu BARs as QEMU reports them, ncdma's plan and its tagged slots, migrates
it live to h2 with `ncdma migrate` (policy copy: the tagged vram is carried cache-flushed
and verified), shows its slots on h2, migrates it back (--p2p) and prints a summary, then
removes ncdma again (ncdma_state=absent). The lab is left as it was found.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from lab.errors import LabError
from lab.host import Host
from lab.lab import Lab

REPO = Path(__file__).resolve().parents[1]
ANSIBLE_DIR = REPO / "ansible"
VM = "ncdma-demo"
VM_XML = "/srv/ncdma/xml/examples/lab-virtio-vga.xml"


def step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def show(done: subprocess.CompletedProcess[str]) -> None:
    print((done.stdout + done.stderr).rstrip())


def ansible_playbook(*extra: str) -> subprocess.CompletedProcess[str]:
    """ansible/site.yml on the lab's hosts (its inventory and ansible.cfg), from this
    Python's environment; raises LabError with Ansible's output if it fails."""
    argv = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "inventory.lab.yml",
            "site.yml", *extra]
    done = subprocess.run(argv, cwd=ANSIBLE_DIR, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise LabError(f"{' '.join(argv)} failed:\n{done.stdout[-4000:]}{done.stderr}")
    return done


def print_bars(h1: Host) -> None:
    """virtio-vga's BARs from QMP query-pci, through libvirt."""
    answer = h1.virsh("qemu-monitor-command", VM, json.dumps({"execute": "query-pci"})).stdout
    for bus in json.loads(answer)["return"]:
        for device in bus["devices"]:
            if device["id"]["vendor"] != 0x1AF4 or device["id"]["device"] != 0x1050:
                continue
            print(f"  virtio-vga {device['qdev_id'] or '?'} at 00:{device['slot']:02x}."
                  f"{device['function']}")
            for region in device["regions"]:
                kind = "io" if region["type"] == "io" else " ".join(
                    filter(None, ("64-bit" if region.get("mem_type_64") else "32-bit",
                                  "prefetchable" if region.get("prefetch") else "", "memory")))
                address = "unassigned" if region["address"] in (-1, 0xFFFFFFFFFFFFFFFF) \
                    else f"{region['address']:#x}"
                print(f"    BAR {region['bar']}: {region['size'] >> 10:>6} KiB  {kind:<20} "
                      f"at {address}")


def print_plan(host: Host, uuid: str) -> None:
    path = host.root_path / f"run/ncdma/domains/{uuid}/plan.json"
    plan = json.loads(path.read_text())
    print(f"  {host.name}: mode {plan['mode']} (requested {plan['requested']}), devices "
          f"{', '.join(plan['devices'])}, migration {plan['migration']}")
    for reason in plan["reasons"]:
        print(f"    why: {reason}")


def wait_for_status(host: Host, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    """`ncdma status` once the guard has journaled the vram slot and read the flat view."""
    deadline = time.monotonic() + timeout
    while True:
        done = host.run(["/opt/ncdma/bin/ncdma", "status", VM])
        settled = "tag " in done.stdout and "every journaled slot matches" in done.stdout
        if settled or time.monotonic() > deadline:
            return done
        time.sleep(0.5)


def ncdma_migrate(source: Host, destination: Host, *options: str) -> str:
    """`ncdma migrate --live` inside ``source``; prints its progress and summary."""
    done = source.run(["/opt/ncdma/bin/ncdma", "migrate", VM,
                       f"qemu+ssh://{destination.address}/system", "--live", *options],
                      timeout=120)
    if done.returncode != 0:
        raise LabError(f"ncdma migrate failed: {done.stderr.strip()}")
    for line in done.stderr.rstrip().splitlines():
        print(f"  | {line}")
    print(f"  now {destination.virsh('domstate', VM).stdout.strip()} on {destination.name}")
    return done.stdout


def run_demo(lab: Lab) -> None:
    h1, h2 = lab.host("h1"), lab.host("h2")
    step("ncdma check on this machine")
    show(subprocess.run([sys.executable, "-m", "ncdma", "check"], capture_output=True,
                        text=True, check=False))
    step("deploying ncdma on h1 and h2 with Ansible (ansible/site.yml over SSH)")
    began = time.monotonic()
    recap = ansible_playbook().stdout.rpartition("PLAY RECAP")[2]
    print(f"  done in {time.monotonic() - began:.1f} s: venv /opt/ncdma, hook in "
          "/etc/libvirt/hooks/qemu.d, guard service, libvirtd reloaded")
    print("\n".join(f"  {line}" for line in recap.split("\n")[1:] if line.strip()))
    step("ncdma check inside h1 (Debian 13, libvirt and QEMU of the lab)")
    show(h1.run(["/opt/ncdma/bin/ncdma", "check"]))
    step(f"opting {VM} in on h1 and starting it")
    h1.run(["sh", "-c", f"sed 's|<name>lab-virtio-vga</name>|<name>{VM}</name>|' {VM_XML} "
                        f"> /tmp/{VM}.xml && virsh define /tmp/{VM}.xml"], check=True)
    show(h1.run(["/opt/ncdma/bin/ncdma", "enable", VM, "--bars", "vram", "--migration", "copy"],
                check=True))
    began = time.monotonic()
    h1.virsh("start", VM)
    print(f"  started in {time.monotonic() - began:.2f} s")
    uuid = h1.virsh("domuuid", VM).stdout.strip()
    time.sleep(1)  # SeaBIOS assigns the BAR addresses in its first moments
    step("the VM's virtio-gpu BARs, as QEMU reports them (QMP query-pci)")
    print_bars(h1)
    step("ncdma's plan for the VM (written by the prepare hook)")
    print_plan(h1, uuid)
    step("ncdma status on h1: the guard's slots table, checked against QEMU's flat view")
    show(wait_for_status(h1))
    step("ncdma migrate h1 -> h2 (policy copy; progress on stderr, like virsh --verbose)")
    print(ncdma_migrate(h1, h2, "--verbose").rstrip())
    step("ncdma status on h2: the guard there tagged the new vram slot before the resume")
    print_plan(h2, uuid)
    show(wait_for_status(h2))
    step("ncdma migrate h2 -> h1 (--p2p), and its summary")
    summary = json.loads(ncdma_migrate(h2, h1, "--p2p", "--json"))
    for phase in summary["phases"]:
        print(f"  {phase['phase']:<13} {phase['seconds'] * 1e3:8.1f} ms")
    downtime = summary["downtime_ms"]
    libvirt_part = (f"libvirt {downtime['libvirt']:.1f} ms" if "libvirt" in downtime
                    else "libvirt's own figure not reported with --p2p")
    print(f"  downtime      {downtime['total']:8.1f} ms ({libvirt_part} + tagged slots and "
          f"checks {downtime['after_memory']:.1f} ms)")
    for slot in summary["slots"]:
        print(f"  slot {slot['gpa']:#x}+{slot['size']:#x} {slot['owner']}: {slot['action']}, "
              f"sha256 {slot['sha256_source'][:16]}.. on h2, "
              f"{slot['sha256_destination'][:16]}.. on h1, flushed with {slot['flush']}")
    step("what this lab cannot show")
    print("  The kernel here rejects KVM_MEM_NON_COHERENT_DMA and the CPU is not Intel: the\n"
          "  guard runs in audit mode, so the vram slot is journaled as selected ('tag') but\n"
          "  its flag is not set. On a patched Intel host the same VM runs in enforce mode.")


def main() -> int:
    lab = Lab(REPO)
    was_up = lab.is_up()
    try:
        step("bringing the lab up")
        began = time.monotonic()
        lab.up()
        print(f"  up in {time.monotonic() - began:.1f} s")
        run_demo(lab)
    except (LabError, subprocess.CalledProcessError) as err:
        detail = getattr(err, "stderr", "") or ""
        print(f"demo: failed: {err} {detail.strip()}", file=sys.stderr)
        return 1
    finally:
        for host in lab.hosts.values():
            if host.running:
                host.virsh("destroy", VM, check=False)
                host.virsh("undefine", VM, check=False)
        if all(host.running for host in lab.hosts.values()):
            try:
                ansible_playbook("-e", "ncdma_state=absent", "-e", "ncdma_purge=true")
            except LabError as err:
                print(f"demo: removing ncdma failed: {err}", file=sys.stderr)
        if not was_up:
            lab.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
