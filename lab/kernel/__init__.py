"""The patched-kernel lab: Debian's 6.1 kernel with and without the flag, booted nested.

``python3 -m lab.kernel build`` builds both kernels (cached in /var/cache/ncdma-lab);
``python3 -m lab.kernel run --kernel patched|stock`` boots one under TCG and prints the
report of the checks run inside it (lab/kernel/inside.py). See the README's section
"Patched-kernel lab".
"""
