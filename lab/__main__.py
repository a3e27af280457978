"""Command line: python3 -m lab up|down|status|shell HOST|exec HOST -- CMD...|build."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from lab import rootfs
from lab.errors import LabError
from lab.host import LAB_CODE
from lab.lab import Lab, locked, check_requirements


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python3 -m lab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start both hosts (idempotent; builds the root once)")
    sub.add_parser("down", help="stop both hosts (idempotent)")
    status = sub.add_parser("status", help="show each host")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    shell = sub.add_parser("shell", help="interactive shell inside a host")
    shell.add_argument("host")
    run = sub.add_parser("exec", help="run a command inside a host; exits with its status")
    run.add_argument("host")
    run.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD [ARG...]")
    sub.add_parser("build", help="only build (or find) the cached root")
    return parser.parse_args(argv)


def print_status(records: list[dict[str, object]]) -> None:
    for r in records:
        if not r["running"]:
            print(f"{r['host']}: down  address {r['address']}")
            continue
        health = "healthy" if r["libvirt_answers"] and r["ssh_answers"] else "UNHEALTHY"
        print(f"{r['host']}: running ({health})  pid {r['pid']}  address {r['address']}\n"
              f"    libvirt {r.get('libvirt', '?')}  QEMU {r.get('qemu', '?')}"
              f"  libvirtd {'ok' if r['libvirt_answers'] else 'NOT answering'}"
              f"  sshd {'ok' if r['ssh_answers'] else 'NOT answering'}\n"
              f"    uri {r['uri']}")


def main(argv: list[str]) -> int:
    args = parse(argv)
    lab = Lab(LAB_CODE)
    if args.command == "up":
        lab.up()
    elif args.command == "down":
        lab.down()
    elif args.command == "build":
        check_requirements()
        with locked():
            print(rootfs.ensure_root())
    elif args.command == "status":
        records = lab.status()
        if args.json:
            print(json.dumps(records, indent=2))
        else:
            print_status(records)
    elif args.command == "shell":
        argv = lab.host(args.host).nsenter_argv(["bash", "-l"])
        os.execvp(argv[0], argv)
    elif args.command == "exec":
        cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
        if not cmd:
            print("usage: python3 -m lab exec HOST -- CMD [ARG...]", file=sys.stderr)
            return 2
        return lab.host(args.host).run(cmd, capture=False).returncode
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except (LabError, subprocess.CalledProcessError) as error:
        print(f"lab: error: {error}", file=sys.stderr)
        sys.exit(1)
