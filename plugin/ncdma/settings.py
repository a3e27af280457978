"""Host-wide settings: /etc/ncdma/ncdma.conf.

The file is INI, one section ``[ncdma]``; every key is optional::

    [ncdma]
    # KVM_MEM_NON_COHERENT_DMA's value in this host's kernel: one bit, 3..31
    flag = 0x8
    # per-domain plans and journals (root only)
    state_dir = /run/ncdma
    # log file, and whether to log to syslog/journald too
    log_file = /var/log/ncdma/ncdma.log
    syslog = yes
    # the least severe messages logged: debug, info, warning or error
    log_level = info
    # upper bound of one hook operation, seconds
    hook_timeout = 10
    # ncdma's emulator wrapper (domains name it in <emulator>: keep it at the same path on
    # every host a domain can migrate to), and the QEMU it runs by default
    wrapper = /usr/local/libexec/ncdma/ncdma-qemu
    qemu = /usr/bin/qemu-system-x86_64
    # the preload library method="vm" adds to QEMU's LD_PRELOAD (built from preload/)
    preload = /usr/local/libexec/ncdma/libncdma-pat.so
    # the group libvirt runs QEMU with (qemu.conf's group): the only one, besides root,
    # that may connect to the guard service's socket (root only when it does not exist)
    qemu_group = libvirt-qemu
    # THE LAB ONLY: enforce mode with KVM_MEM_READONLY (0x2) in place of the flag, whatever
    # the CPU (see ncdma.standin); refused on a host without the lab's marker file
    lab_stand_in = no

The environment variable NCDMA_CONFIG names another file (tests, several installs).
"""

from __future__ import annotations

import configparser
import grp
import os
from dataclasses import dataclass
from pathlib import Path

from ncdma.errors import ConfigError, UsageError
from ncdma.standin import LAB_MARKER, STAND_IN_FLAG, is_lab_host

DEFAULT_PATH = Path("/etc/ncdma/ncdma.conf")

# The seed series' flag. Bit 3 is free upstream, but other unmerged series claimed it
# too, so every user of the flag takes its value from these settings.
DEFAULT_NON_COHERENT_DMA_FLAG = 1 << 3
# Memslot flags defined upstream (bits 0..2 as of v6.19-rc1: KVM_MEM_LOG_DIRTY_PAGES,
# KVM_MEM_READONLY, KVM_MEM_GUEST_MEMFD in :mod:`ncdma.kvm.abi`): never ours.
UPSTREAM_MEMSLOT_FLAGS = 0b111
_HIGHEST_FLAG_BIT = 31  # memslot flags are a __u32
SECTION = "ncdma"
_MAX_TIMEOUT_S = 300.0
LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True)
class Settings:
    """The host's ncdma settings, validated."""

    flag: int = DEFAULT_NON_COHERENT_DMA_FLAG
    state_dir: Path = Path("/run/ncdma")
    log_file: Path | None = Path("/var/log/ncdma/ncdma.log")
    syslog: bool = True
    log_level: str = "info"
    hook_timeout: float = 10.0
    wrapper: Path = Path("/usr/local/libexec/ncdma/ncdma-qemu")
    qemu: Path = Path("/usr/bin/qemu-system-x86_64")
    preload: Path = Path("/usr/local/libexec/ncdma/libncdma-pat.so")
    qemu_group: str = "libvirt-qemu"
    source: Path | None = None
    stand_in: bool = False  # lab_stand_in: ``flag`` is then ncdma.standin.STAND_IN_FLAG

    def domain_dir(self, uuid: str) -> Path:
        """The state directory of one domain: plan, journal, guard pid, QMP socket."""
        return self.state_dir / "domains" / uuid

    def qemu_group_id(self) -> int:
        """The gid of ``qemu_group`` (a name or a number); 0 when no such group exists."""
        if self.qemu_group.isdigit():
            return int(self.qemu_group)
        try:
            return grp.getgrnam(self.qemu_group).gr_gid
        except KeyError:
            return 0

    @property
    def guard_socket(self) -> Path:
        """Where the guard service listens for wrappers."""
        return self.state_dir / "guard.sock"


def _bad(path: Path, key: str, value: str, wanted: str) -> ConfigError:
    return ConfigError(f"{path}: [{SECTION}] {key} = {value[:60]!r} is invalid: {wanted}",
                       f"fix {path} (see `pydoc ncdma.settings` for the format)", path)


def _absolute(path: Path, key: str, value: str) -> Path:
    if not value.startswith("/"):
        raise _bad(path, key, value, "it must be an absolute path")
    return Path(value)


def _parse(path: Path, values: dict[str, str]) -> Settings:
    defaults = Settings()
    known = {"flag", "state_dir", "log_file", "syslog", "log_level", "hook_timeout", "wrapper",
             "qemu", "preload", "qemu_group", "lab_stand_in"}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown key '{unknown[0]}' in [{SECTION}]",
                          f"known keys: {', '.join(sorted(known))}", path)
    flag = defaults.flag
    if "flag" in values:
        try:
            flag = parse_flag_value(values["flag"])
        except UsageError as err:
            raise _bad(path, "flag", values["flag"], err.hint) from None
    timeout = defaults.hook_timeout
    if "hook_timeout" in values:
        try:
            timeout = float(values["hook_timeout"])
        except ValueError:
            timeout = -1.0
        if not 0 < timeout <= _MAX_TIMEOUT_S:
            raise _bad(path, "hook_timeout", values["hook_timeout"],
                       f"seconds, more than 0 and at most {_MAX_TIMEOUT_S:.0f}")
    syslog = values.get("syslog", "yes")
    if syslog not in ("yes", "no"):
        raise _bad(path, "syslog", syslog, "yes or no")
    log_file = values.get("log_file")
    log_level = values.get("log_level", defaults.log_level)
    if log_level not in LOG_LEVELS:
        raise _bad(path, "log_level", log_level, ", ".join(LOG_LEVELS))
    stand_in = _stand_in(path, values)
    return Settings(
        flag=STAND_IN_FLAG if stand_in else flag,
        state_dir=_absolute(path, "state_dir", values["state_dir"])
        if "state_dir" in values else defaults.state_dir,
        log_file=(None if log_file == "" else _absolute(path, "log_file", log_file))
        if log_file is not None else defaults.log_file,
        syslog=syslog == "yes",
        log_level=log_level,
        hook_timeout=timeout,
        wrapper=_absolute(path, "wrapper", values["wrapper"])
        if "wrapper" in values else defaults.wrapper,
        qemu=_absolute(path, "qemu", values["qemu"]) if "qemu" in values else defaults.qemu,
        preload=_absolute(path, "preload", values["preload"])
        if "preload" in values else defaults.preload,
        qemu_group=values.get("qemu_group", defaults.qemu_group),
        source=path,
        stand_in=stand_in,
    )


def _stand_in(path: Path, values: dict[str, str]) -> bool:
    """lab_stand_in: yes only on a lab host, and never together with a flag value."""
    value = values.get("lab_stand_in", "no")
    if value not in ("yes", "no"):
        raise _bad(path, "lab_stand_in", value, "yes or no")
    if value == "no":
        return False
    if not is_lab_host():
        raise ConfigError(f"{path}: lab_stand_in = yes is for ncdma's lab only, and this host "
                          f"is not a lab host (no {LAB_MARKER})",
                          f"remove lab_stand_in from {path}")
    if "flag" in values:
        raise ConfigError(f"{path}: lab_stand_in = yes and flag = {values['flag']} exclude "
                          f"each other (the stand-in flag is {STAND_IN_FLAG:#x})",
                          f"remove flag from {path}")
    return True


def load_settings(path: Path | None = None) -> Settings:
    """Read the settings file; a missing file means every default.

    :raise ConfigError: When the file cannot be read or a value is invalid.
    """
    path = path or Path(os.environ.get("NCDMA_CONFIG", DEFAULT_PATH))
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=None)
    try:
        with open(path, encoding="utf-8") as handle:
            parser.read_file(handle)
    except FileNotFoundError:
        return Settings(source=path)
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read {path}: {err}", "check the file's permissions",
                          path) from None
    except configparser.Error as err:
        raise ConfigError(f"{path} is not valid INI: {str(err).splitlines()[0]}",
                          f"write it as [{SECTION}] followed by key = value lines", path) from None
    extra = [name for name in parser.sections() if name != SECTION]
    if extra:
        raise ConfigError(f"{path}: unknown section [{extra[0]}]", f"use only [{SECTION}]", path)
    values = dict(parser[SECTION]) if parser.has_section(SECTION) else {}
    return _parse(path, values)


def parse_flag_value(text: str) -> int:
    """Parse the KVM_MEM_NON_COHERENT_DMA value: one bit, 3..31, decimal or 0x-hex.

    Shared by the command line and the configuration file.

    :raise UsageError: When the text is not such a value.
    """
    try:
        value = int(text, 0)
    except ValueError:
        raise UsageError(f"flag value {text!r} is not a number",
                         "give one bit as decimal or hex, for example 8 or 0x8") from None
    if value <= 0 or value & (value - 1) or value.bit_length() - 1 > _HIGHEST_FLAG_BIT:
        raise UsageError(f"flag value {text!r} is not a single bit of a 32-bit memslot flags word",
                         "give one bit, for example 8 (1 << 3, the series' value)")
    if value & UPSTREAM_MEMSLOT_FLAGS:
        raise UsageError(f"flag value {text!r} is an upstream memslot flag "
                         "(LOG_DIRTY_PAGES, READONLY or GUEST_MEMFD)",
                         "give the bit your patched kernel uses for KVM_MEM_NON_COHERENT_DMA, "
                         "by default 8")
    return value
