"""Finding domains the way virsh does: by ID, UUID or name; and the domains opted in.

virsh tries a reference as an ID when it is a whole number, then as a UUID when it
parses as one, then as a name (a domain may be named "7" or like a UUID).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

import libvirt

from ncdma.errors import DomainStateError
from ncdma.model.policy import ELEMENT
from ncdma.virt.connect import libvirt_error
from ncdma.virt.xmldoc import parse_xml

INACTIVE_XML = libvirt.VIR_DOMAIN_XML_INACTIVE


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def lookup_domain(conn: libvirt.virConnect, reference: str) -> libvirt.virDomain:
    """The domain ``reference`` names: an ID, a UUID or a name, tried in virsh's order.

    :raise DomainStateError: When no domain has that ID, UUID or name.
    :raise LibvirtError: When libvirt fails otherwise.
    """
    tries: list[Callable[[], libvirt.virDomain]] = []
    if reference.isdigit():
        tries.append(lambda: conn.lookupByID(int(reference)))
    if _is_uuid(reference):
        tries.append(lambda: conn.lookupByUUIDString(reference))
    tries.append(lambda: conn.lookupByName(reference))
    for attempt in tries:
        try:
            return attempt()
        except libvirt.libvirtError as err:
            if err.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                raise libvirt_error(err, f"cannot look up domain {reference!r}") from None
    raise DomainStateError(f"no domain has the ID, UUID or name {reference!r}",
                           "list the domains with `virsh list --all`", reference)


@dataclass(frozen=True)
class OptedIn:
    """A defined domain whose persistent definition opts in to ncdma."""

    name: str
    uuid: str
    running: bool
    wrapper: bool  # its <emulator> is ncdma's wrapper (it cannot start without ncdma)

    def to_json(self) -> dict[str, object]:
        """This domain in `ncdma list --json`."""
        return {"name": self.name, "uuid": self.uuid, "running": self.running,
                "emulator_is_wrapper": self.wrapper}


def opted_in_domains(conn: libvirt.virConnect, wrapper: str) -> list[OptedIn]:
    """Every persistent domain with ncdma's metadata or the wrapper as its <emulator>.

    :raise LibvirtError: When libvirt cannot list or describe the domains.
    """
    try:
        domains = conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_PERSISTENT)
    except libvirt.libvirtError as err:
        raise libvirt_error(err, "cannot list the defined domains") from None
    found = []
    for domain in domains:
        try:
            root = parse_xml(domain.XMLDesc(INACTIVE_XML))
            running = bool(domain.isActive())
        except libvirt.libvirtError as err:
            if err.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                continue  # undefined since the listing
            raise libvirt_error(err, f"cannot read domain {domain.name()}") from None
        emulator = root.findtext("devices/emulator")
        if root.find(f"metadata/{ELEMENT}") is not None or emulator == wrapper:
            found.append(OptedIn(domain.name(), domain.UUIDString(), running,
                                 emulator == wrapper))
    return sorted(found, key=lambda item: item.name)

