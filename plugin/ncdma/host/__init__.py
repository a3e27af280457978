"""Adapter: the host probe (CPU, KVM modules, kernel probe, QEMU and libvirt versions)."""
