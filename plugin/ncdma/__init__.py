"""ncdma: honor guest memory types for virtio-gpu BAR memory of libvirt/QEMU VMs.

The package is layered; from the top:

- entry points: :mod:`ncdma.cli` (the ``ncdma`` command), :mod:`ncdma.hook` (the libvirt
  hook), :mod:`ncdma.wrapper` (the emulator wrapper, ``ncdma-qemu``);
- features: :mod:`ncdma.guard` (seccomp listener, classification, tagging, service) and
  :mod:`ncdma.migrate` (both ends of a migration: preflight, capture, transfer, peer);
- adapters: :mod:`ncdma.host` (host probe), :mod:`ncdma.qmp` (QEMU's QMP),
  :mod:`ncdma.virt` (libvirt and domain XML), :mod:`ncdma.store` (the state directory);
- core: :mod:`ncdma.model` (policy, verdict, plan, slot, layout), then :mod:`ncdma.kvm`
  (KVM's ioctl ABI), then :mod:`ncdma.linux` (seccomp, pidfd, procfs, shared mappings, cache
  flush);
- base: :mod:`ncdma.logs`, then :mod:`ncdma.settings`, then :mod:`ncdma.standin` (the lab's
  stand-in flag), then :mod:`ncdma.errors`.

Import rule: a module imports only from its own subpackage or from a layer below it, where
the subpackages of one layer never import each other and core and base are ordered as
listed (model over kvm over linux; logs over settings over standin over errors).

lab/, bench/ and tests/ may import ncdma; tests/ and bench/ may import lab/; nothing
imports tests/. tests/unit/test_imports.py checks all of it.

:data:`__version__` comes from git: setuptools_scm sets the distribution's version at build
time, read from its metadata.
"""

def __getattr__(name: str) -> str:
    """``ncdma.__version__``, read on first use: the hook's fast path (a domain without
    ncdma) loads nothing it does not need."""
    if name != "__version__":
        raise AttributeError(f"module 'ncdma' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:  # the installed distribution's, which setuptools_scm took from git at build time
        return version("ncdma")
    except PackageNotFoundError:  # a checkout never installed
        return "0+unknown"
