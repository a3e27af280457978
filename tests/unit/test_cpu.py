"""/proc/cpuinfo parsing."""

from ncdma.host.cpu import parse_cpuinfo

INTEL = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Gold 6338
flags\t\t: fpu vme ss ht vmx pat clflush
vmx flags\t: vnmi preemption_timer invvpid ept_x_only ept ept_ad
bugs\t\t: spectre_v1

processor\t: 1
vendor_id\t: SomethingElse
"""

AMD = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC
flags\t\t: fpu vme svm npt pat
"""

OLD_INTEL = """vendor_id\t: GenuineIntel
model name\t: Intel Core
flags\t\t: fpu vmx ept
"""


def test_intel_with_vmx_flags_line() -> None:
    cpu = parse_cpuinfo(INTEL)
    assert cpu.is_intel and cpu.vmx and cpu.ept and cpu.self_snoop and not cpu.svm
    assert cpu.model == "Intel(R) Xeon(R) Gold 6338"


def test_only_the_first_processor_counts() -> None:
    assert parse_cpuinfo(INTEL).vendor == "GenuineIntel"


def test_amd() -> None:
    cpu = parse_cpuinfo(AMD)
    assert not cpu.is_intel and cpu.svm and not cpu.vmx and not cpu.ept and not cpu.self_snoop


def test_ept_in_flags_on_old_kernels_and_kvm_intel_parameter_wins() -> None:
    assert parse_cpuinfo(OLD_INTEL).ept
    assert not parse_cpuinfo(OLD_INTEL, ept_parameter="N").ept
    assert parse_cpuinfo(OLD_INTEL, ept_parameter="Y").ept


def test_garbage_gives_unknown_vendor_and_no_features() -> None:
    cpu = parse_cpuinfo("nonsense without colon\n\n")
    assert cpu.vendor == "unknown" and not (cpu.vmx or cpu.ept or cpu.svm)
