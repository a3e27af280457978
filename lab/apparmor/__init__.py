"""The AppArmor lab: Debian 12's own kernel, with AppArmor, booted under TCG.

This machine's kernel has no AppArmor. The lab boots Debian's distribution kernel
(linux-image-amd64, fetched with apt-get download and cached) with ``apparmor=1
security=apparmor``, this machine's root shared read-only as in lab/kernel, and runs
lab/apparmor/inside.py, which loads per-domain libvirt profiles with apparmor_parser and
tries one domain's state from a process confined as another domain.
"""
