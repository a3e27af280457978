"""Core: Linux as ncdma needs it (seccomp, procfs, shared mappings, cache flush); no KVM."""
