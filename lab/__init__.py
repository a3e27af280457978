"""Two libvirt/QEMU hosts on one machine for the ncdma integration tests (see README.md)."""
from lab.errors import LabError
from lab.host import Host
from lab.lab import Lab

__all__ = ["Host", "Lab", "LabError"]
