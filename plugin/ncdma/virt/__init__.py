"""Adapter: libvirt (connections, ``ncdma enable``/``disable``) and the domain XML parser."""
