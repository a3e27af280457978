"""ioctl request numbers as the kernel encodes them (include/uapi/asm-generic/ioctl.h)."""

_IOC_NONE = 0
_IOC_WRITE = 1
_IOC_READ = 2
_IOC_NRSHIFT = 0
_IOC_TYPESHIFT = 8
_IOC_SIZESHIFT = 16
_IOC_DIRSHIFT = 30


def ioc(direction: int, kind: int, nr: int, size: int) -> int:
    """The kernel's _IOC: direction, type (the subsystem's letter), number, argument size."""
    return ((direction << _IOC_DIRSHIFT) | (kind << _IOC_TYPESHIFT) | (nr << _IOC_NRSHIFT)
            | (size << _IOC_SIZESHIFT))


def io(kind: int, nr: int) -> int:
    """_IO: no argument struct."""
    return ioc(_IOC_NONE, kind, nr, 0)


def iow(kind: int, nr: int, size: int) -> int:
    """_IOW: userspace writes a struct of ``size`` bytes to the kernel."""
    return ioc(_IOC_WRITE, kind, nr, size)


def iowr(kind: int, nr: int, size: int) -> int:
    """_IOWR: a struct of ``size`` bytes goes both ways."""
    return ioc(_IOC_READ | _IOC_WRITE, kind, nr, size)
