"""The Intel lab: the lab's kernels booted under Bochs's emulated Skylake-X (VMX, EPT).

``python3 -m lab.intel build`` builds (or finds cached) the stock and patched 6.1 kernels
and Debian 13's 6.12, and the initramfs archives; ``python3 -m lab.intel run --kernel K``
boots one under Bochs and prints what each step saw. tests/intel asserts on those runs.
See the README's section "Intel lab".
"""
