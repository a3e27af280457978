"""What the host CPU offers for guest memory types, read from /proc/cpuinfo and sysfs."""

from __future__ import annotations

from pathlib import Path

from ncdma.model.hostreport import CpuInfo

# KVM's vendor modules, as they appear under /sys/module.
KVM_VENDOR_MODULES = ("kvm_intel", "kvm_amd", "kvm_pvm")


def _first_block(text: str) -> dict[str, str]:
    """The key/value pairs of the first processor in /proc/cpuinfo."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def parse_cpuinfo(text: str, ept_parameter: str = "") -> CpuInfo:
    """Parse /proc/cpuinfo; ``ept_parameter`` is kvm_intel's 'ept' module parameter, if any.

    EPT shows up in the 'vmx flags' line (Linux 5.9+) or, on older kernels, among the
    'flags'; when kvm_intel is loaded its 'ept' parameter says whether KVM uses it.
    """
    fields = _first_block(text)
    flags = set(fields.get("flags", "").split())
    vmx_flags = set(fields.get("vmx flags", "").split())
    ept = "ept" in vmx_flags or "ept" in flags
    if ept_parameter:
        ept = ept and ept_parameter.upper().startswith("Y")
    return CpuInfo(
        vendor=fields.get("vendor_id", "unknown"),
        model=fields.get("model name", "unknown"),
        vmx="vmx" in flags,
        ept=ept,
        svm="svm" in flags,
        self_snoop="ss" in flags,
    )


def read_cpu(proc: Path = Path("/proc"), sys: Path = Path("/sys")) -> CpuInfo:
    """Read the host's CPU features."""
    ept_file = sys / "module/kvm_intel/parameters/ept"
    ept_parameter = ept_file.read_text().strip() if ept_file.exists() else ""
    return parse_cpuinfo((proc / "cpuinfo").read_text(), ept_parameter)


def loaded_kvm_modules(sys: Path = Path("/sys")) -> tuple[str, ...]:
    """The KVM modules present (built in or loaded): kvm and its vendor module."""
    return tuple(name for name in ("kvm", *KVM_VENDOR_MODULES) if (sys / "module" / name).exists())
