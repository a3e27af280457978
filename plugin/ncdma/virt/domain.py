"""The domain XML parser: what ncdma needs from a libvirt domain, parsed once with lxml.

virtio-gpu devices come in every form libvirt can express them:
``<video><model type='virtio'>`` (with ``<acceleration>``, ``blob``, ``<driver
name='vhostuser'>``, and QEMU properties given through ``<qemu:override>``), and raw
arguments in ``<qemu:commandline>``: ``-device`` in QEMU's key=value form (``driver=`` first
or not) or JSON, and ``-vga virtio``, with properties given by ``-global`` (to every device of
a driver that sets none) and ``-set device.ID`` (to a key=value ``-device``).

Which QEMU device a ``<video>`` becomes follows libvirt's own rule (qemuDeviceVideoGetModel):
the primary video is a VGA flavour only where QEMU has one (x86 and ppc64 machines), only on
PCI; else virtio-gpu, with the bus's suffix (``-pci``, ``-ccw`` for s390x, ``-device`` on
virtio-mmio); ``vhostuser`` gives the vhost-user-* devices; ``accel3d`` the ``-gl`` ones.
Where that rule depends on what this parser cannot see (an architecture or machine it does not
know, without an <address>; a ``<model device=...>``, which libvirt 11.3's schema does not have
and whose meaning this version cannot check), it says so (DomainXmlError) instead of guessing.
Devices are named as libvirt names them: the primary is ``video0`` (libvirt moves it first),
the others ``video1``... in document order, unless the XML carries aliases.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace

from lxml import etree

from ncdma.errors import DomainXmlError, PolicyError
from ncdma.model.domain import Domain, VideoDevice
from ncdma.model.policy import ELEMENT, Policy, parse_policy
from ncdma.virt.xmldoc import parse_xml, xml_text

QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"
_Q = f"{{{QEMU_NS}}}"
_GPU_DRIVER = re.compile(r"^(virtio-(gpu|vga)|vhost-user-(gpu|vga))[-a-z0-9]*$")
_SIZE = re.compile(r"^(?:0x(?P<hex>[0-9a-f]+)|(?P<number>\d+(?:\.\d+)?))\s*"
                   r"(?P<unit>[kmgtpe]?)(?:i?b)?$", re.IGNORECASE)
_SIZE_SHIFT = {"": 0, "k": 10, "m": 20, "g": 30, "t": 40, "p": 50, "e": 60}
#: Architectures whose QEMU has the VGA flavours of virtio-gpu (libvirt's rule).
_VGA_ARCHES = frozenset({"i686", "x86_64", "ppc64", "ppc64le"})
#: Architectures whose QEMU has none (their PCI virtio-gpu is virtio-gpu-pci), with the
#: machine prefixes on which libvirt puts an unaddressed virtio device on PCI.
_NO_VGA_PCI_MACHINES = {"aarch64": ("virt",), "riscv64": ("virt",)}
_BUS_SUFFIX = {"pci": "-pci", "ccw": "-ccw", "virtio-mmio": "-device"}
#: Displays whose guest drivers may map VRAM uncached (the 6.11 bochs-drm regression).
_UNCACHED_VIDEO_MODELS = frozenset({"vga", "bochs", "cirrus"})
_UNCACHED_VGA_OPTIONS = frozenset({"std", "cirrus"})
_UNCACHED_DEVICES = frozenset({"VGA", "secondary-vga", "isa-vga", "bochs-display", "cirrus-vga",
                               "isa-cirrus-vga"})


def parse_size(text: str) -> int:
    """A QEMU size in bytes, in QEMU's syntax: '67108864', '0x4000000', '64M', '1.5G',
    '64k', '64MiB'.

    :raise ValueError: When the text is not a size, or a fraction of a byte.
    """
    found = _SIZE.match(text.strip())
    if not found:
        raise ValueError(f"not a size: {text!r}")
    shift = _SIZE_SHIFT[found.group("unit").lower()]
    if found.group("hex") is not None:
        return int(found.group("hex"), 16) << shift
    whole, _, fraction = found.group("number").partition(".")
    scale: int = 10 ** len(fraction)
    value = (int(whole) * scale + int(fraction or "0")) << shift
    if value % scale:
        raise ValueError(f"not a whole number of bytes: {text!r}")
    return value // scale


def _override_properties(root: etree._Element) -> dict[str, dict[str, str]]:
    """<qemu:override> frontend properties by device alias: {alias: {name: value}}."""
    found: dict[str, dict[str, str]] = {}
    for device in root.iterfind(f"{_Q}override/{_Q}device"):
        props = found.setdefault(device.get("alias", ""), {})
        for prop in device.iterfind(f"{_Q}frontend/{_Q}property"):
            if prop.get("type") != "remove":
                props[prop.get("name", "")] = prop.get("value", "")
    return found


def _size_property(props: dict[str, str], where: str) -> int:
    text = props.get("hostmem")
    if text is None:
        return 0
    try:
        return parse_size(text)
    except ValueError:
        raise DomainXmlError(f"{where}: hostmem {text[:40]!r} is not a size",
                             "give bytes or a size such as 64M") from None


def _cannot_tell(alias: str, why: str) -> DomainXmlError:
    return DomainXmlError(f"video device {alias}: cannot tell which QEMU device libvirt makes "
                          f"of it: {why}", "give the device an <address type=...> or describe "
                          "it in <qemu:commandline> (-device DRIVER,...), or opt the domain out")


def _bus(video: etree._Element, arch: str, machine: str, alias: str) -> str:
    """The bus libvirt puts a video device on: its <address type>, else the machine's
    default (s390x: ccw; PCI on x86, ppc64 and the virt machines of aarch64 and riscv64).

    :raise DomainXmlError: When neither tells it.
    """
    address = video.find("address")
    if address is not None and address.get("type"):
        return str(address.get("type"))
    if arch == "s390x" or machine.startswith("s390"):
        return "ccw"
    if arch in _VGA_ARCHES or machine.startswith(_NO_VGA_PCI_MACHINES.get(arch, ())):
        return "pci"
    raise _cannot_tell(alias, f"no <address>, and arch {arch!r} machine {machine!r} is not "
                              f"one whose default bus ncdma knows")


def _video_model(video: etree._Element, primary: bool, arch: str, machine: str,
                 alias: str) -> str:
    """The QEMU device libvirt makes of a <video><model type='virtio'> (qemuDeviceVideoGetModel).

    :raise DomainXmlError: When the bus is one virtio-gpu cannot sit on, or the device cannot
        be told (see the module's docstring).
    """
    model = video.find("model")
    if model is not None and model.get("device") is not None:
        raise _cannot_tell(alias, f"<model device={model.get('device')!r}> is newer than the "
                                  f"libvirt ncdma knows (11.3 has no such attribute)")
    accel = model.find("acceleration") if model is not None else None
    accel3d = accel is not None and accel.get("accel3d") == "yes"
    vhost_user = video.find("driver[@name='vhostuser']") is not None or \
        video.find("driver[@name='vhost-user']") is not None
    bus = _bus(video, arch, machine, alias)
    if bus not in _BUS_SUFFIX:
        raise DomainXmlError(f"a virtio video device on a {bus!r} bus", "libvirt puts virtio "
                             "video on pci, ccw or virtio-mmio: fix its <address type>")
    prefix = "vhost-user-" if vhost_user else "virtio-"
    gl = "-gl" if accel3d and not vhost_user else ""
    if primary and bus == "pci" and arch in _VGA_ARCHES:
        return f"{prefix}vga{gl}"
    if primary and bus == "pci" and arch not in _NO_VGA_PCI_MACHINES:
        raise _cannot_tell(alias, f"whether QEMU for arch {arch!r} has a VGA flavour of "
                                  f"virtio-gpu (libvirt asks the emulator)")
    return f"{prefix}gpu{gl}{_BUS_SUFFIX[bus]}"


def _video_gpus(root: etree._Element,
                overrides: dict[str, dict[str, str]]) -> list[VideoDevice]:
    videos = root.findall("devices/video")
    primary = next((v for v in videos if v.find("model[@primary='yes']") is not None),
                   videos[0] if videos else None)
    os_type = root.find("os/type")
    arch = os_type.get("arch", "x86_64") if os_type is not None else "x86_64"
    machine = os_type.get("machine", "") if os_type is not None else ""
    ordered = ([primary] if primary is not None else []) + \
        [video for video in videos if video is not primary]  # libvirt moves the primary first
    gpus = []
    for index, video in enumerate(ordered):
        model = video.find("model")
        if model is None or model.get("type") != "virtio":
            continue
        alias_element = video.find("alias")
        alias = alias_element.get("name", "") if alias_element is not None else f"video{index}"
        qemu_model = _video_model(video, video is primary, arch, machine, alias)
        props = overrides.get(alias, {})
        gpus.append(VideoDevice(alias=alias, qemu_model=qemu_model,
                                hostmem=_size_property(props, f"video device {alias}")))
    return gpus


def _device_options(value: str) -> dict[str, str]:
    """The options of one -device argument, in QEMU's key=value or JSON form."""
    if value.lstrip().startswith("{"):
        try:
            options = json.loads(value)
        except ValueError:
            raise DomainXmlError(f"qemu:commandline: -device {value[:60]!r} is not valid JSON",
                                 "fix the domain's <qemu:commandline>") from None
        if not isinstance(options, dict):
            raise DomainXmlError("qemu:commandline: a JSON -device must be an object",
                                 "fix the domain's <qemu:commandline>")
        return {str(k): str(v).lower() if isinstance(v, bool) else str(v)
                for k, v in options.items()}
    first, _, rest = value.partition(",")
    options = {} if "=" in first else {"driver": first}
    for item in filter(None, (first, *rest.split(",")) if "=" in first else rest.split(",")):
        key, _, option = item.partition("=")
        options[key] = option
    return options


def _commandline_args(root: etree._Element) -> list[str]:
    return [arg.get("value", "") for arg in root.iterfind(f"{_Q}commandline/{_Q}arg")]


def _property_settings(args: list[str]) -> dict[tuple[str, str], dict[str, str]]:
    """Properties that ``-global`` (by driver: ``("driver", NAME)``) and ``-set device``
    (by device id: ``("id", ID)``) give devices, in QEMU's forms:
    ``-global DRIVER.PROP=VALUE``, ``-global driver=D,property=P,value=V``,
    ``-set device.ID.PROP=VALUE``."""
    found: dict[tuple[str, str], dict[str, str]] = {}
    for flag, value in zip(args, args[1:]):
        if flag == "-global" and value.startswith("driver="):
            options = dict(item.partition("=")[::2] for item in value.split(","))
            key, prop, setting = ("driver", options.get("driver", "")), \
                options.get("property", ""), options.get("value", "")
        elif flag == "-global":
            target, _, setting = value.partition("=")
            driver, _, prop = target.rpartition(".")
            key = ("driver", driver)
        elif flag == "-set" and value.startswith("device."):
            target, _, setting = value.partition("=")
            _, device, prop = (target.split(".", 2) + ["", ""])[:3]
            key = ("id", device)
        else:
            continue
        found.setdefault(key, {})[prop] = setting
    return found


def _with_globals(gpus: list[VideoDevice],
                  settings: dict[tuple[str, str], dict[str, str]]) -> list[VideoDevice]:
    """``gpus`` with the hostmem -global gives their driver, where they set none."""
    return [replace(gpu, hostmem=_size_property(settings.get(("driver", gpu.qemu_model), {}),
                                                f"-global {gpu.qemu_model}"))
            if not gpu.hostmem else gpu for gpu in gpus]


def _commandline_gpus(root: etree._Element,
                      settings: dict[tuple[str, str], dict[str, str]]) -> list[VideoDevice]:
    """The virtio-gpu devices of -device and -vga; -set device.ID applies to the -device
    given in key=value form (QEMU keeps no options of a JSON one to set)."""
    args = _commandline_args(root)
    gpus = []
    for flag, value in zip(args, args[1:]):
        if flag == "-vga" and value == "virtio":
            gpus.append(VideoDevice(alias="-vga virtio", qemu_model="virtio-vga", hostmem=0))
        if flag != "-device":
            continue
        options = _device_options(value)
        driver = options.get("driver", "")
        if not _GPU_DRIVER.match(driver):
            continue
        alias = options.get("id", "")
        if alias and not value.lstrip().startswith("{"):
            options.update(settings.get(("id", alias), {}))
        gpus.append(VideoDevice(
            alias=alias, qemu_model=driver,
            hostmem=_size_property(options, f"qemu:commandline device {alias or driver}")))
    return gpus


def _uncached_displays(root: etree._Element) -> tuple[str, ...]:
    """The bochs, stdvga and cirrus displays of the domain, named as its XML gives them."""
    found = [f"<video><model type='{model.get('type')}'>"
             for model in root.iterfind("devices/video/model")
             if model.get("type") in _UNCACHED_VIDEO_MODELS]
    args = _commandline_args(root)
    for flag, value in zip(args, args[1:]):
        if flag == "-vga" and value in _UNCACHED_VGA_OPTIONS:
            found.append(f"-vga {value}")
        elif flag == "-device" and _device_options(value).get("driver") in _UNCACHED_DEVICES:
            found.append(f"-device {_device_options(value)['driver']}")
    return tuple(found)


def _policy(root: etree._Element) -> Policy | None:
    elements = root.findall(f"metadata/{ELEMENT}")
    if not elements:
        return None
    if len(elements) > 1:
        raise PolicyError(f"ncdma metadata: {len(elements)} <ncdma:ncdma> elements",
                          "keep exactly one; `ncdma enable` rewrites it")
    return parse_policy({key: value for key, value in elements[0].attrib.items()
                         if not key.startswith("{")})


def parse_domain(xml: str | bytes) -> Domain:
    """Parse a libvirt domain XML document into the model.

    :raise DomainXmlError: When the XML is not a well-formed domain.
    :raise PolicyError: When its ncdma metadata is invalid.
    """
    root = parse_xml(xml, remove_comments=True)
    if root.tag != "domain":
        raise DomainXmlError(f"root element is <{str(root.tag)[:40]}>, not <domain>",
                             "pass a libvirt domain XML")
    name = root.findtext("name")
    if not name:
        raise DomainXmlError("domain XML has no <name>", "pass a complete libvirt domain XML")
    settings = _property_settings(_commandline_args(root))
    return Domain(
        name=name,
        uuid=root.findtext("uuid") or "",
        emulator=root.findtext("devices/emulator"),
        gpus=tuple(_with_globals(_video_gpus(root, _override_properties(root))
                                 + _commandline_gpus(root, settings), settings)),
        policy=_policy(root),
        dac_label=root.findtext("seclabel[@model='dac']/label"),
        uncached_displays=_uncached_displays(root),
    )


def with_emulator(data: bytes, emulator: str) -> str:
    """The same domain XML with only <emulator> changed (ABI-neutral)."""
    root = parse_xml(data)
    element = root.find("devices/emulator")
    if element is None:
        element = etree.SubElement(root.find("devices"), "emulator")
    element.text = emulator
    return xml_text(root)
