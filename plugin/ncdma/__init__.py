"""ncdma: honor guest memory types for virtio-gpu BAR memory of libvirt/QEMU VMs."""

__version__ = "0.1.0"
