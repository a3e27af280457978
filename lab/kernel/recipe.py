"""What a lab kernel is built from, and where its build is cached.

Three variants come from one recipe: ``stock`` (Debian's linux-source-6.1 as shipped),
``patched`` (the same plus 0001-kvm-non-coherent-dma-memslot-flag.patch) and ``6.12``
(Debian 13's linux-source-6.12 as shipped, which has upstream's
KVM_X86_QUIRK_IGNORE_GUEST_PAT; lab/kernel/trixie.py fetches it), all configured with
``make tinyconfig`` plus lab.config and built as a bzImage only, so stock and patched
differ by the patch alone. The patched build also builds the KVM selftest the patch extends
(set_memory_region_test), so that the same test runs in both kernels. A build is cached
outside the repository under a key that hashes everything it depends on: the source
package's version, the config fragment, the build steps and, for ``patched``, the patch.
"""
from __future__ import annotations

import enum
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

KERNEL_DIR = Path(__file__).resolve().parent
PATCH = KERNEL_DIR / "0001-kvm-non-coherent-dma-memslot-flag.patch"
CONFIG_FRAGMENT = KERNEL_DIR / "lab.config"
CACHE_DIR = Path("/var/cache/ncdma-lab")
# The build steps, as hashed: change any of them and every kernel is rebuilt.
BASE_CONFIG = "tinyconfig"
MAKE_VARIABLES = ("ARCH=x86_64",)
TARGET = "bzImage"
IMAGE_PATH = "arch/x86/boot/bzImage"
# The patched build also builds the KVM selftest the patch extends, run in both kernels.
SELFTEST = "set_memory_region_test"
SELFTEST_DIR = "tools/testing/selftests/kvm"
# Bump when build.py changes in a way the constants above do not show.
RECIPE_VERSION = 1


@dataclass(frozen=True)
class Source:
    """A Debian kernel source package and where its tarball lies once installed or fetched."""

    package: str
    tarball: Path


SOURCE_6_1 = Source("linux-source-6.1", Path("/usr/src/linux-source-6.1.tar.xz"))
SOURCE_6_12 = Source("linux-source-6.12", CACHE_DIR / "source-6.12" / "linux-source-6.12.tar.xz")


class Variant(str, enum.Enum):
    """Which kernel: Debian 12's 6.1 as shipped or with the lab's patch, or Debian 13's 6.12."""

    STOCK = "stock"
    PATCHED = "patched"
    UPSTREAM = "6.12"

    @property
    def source(self) -> Source:
        """The source package this variant is built from."""
        return SOURCE_6_12 if self is Variant.UPSTREAM else SOURCE_6_1


@dataclass(frozen=True)
class Recipe:
    """One kernel to build: a variant of one version of the source package."""

    variant: Variant
    source_version: str

    @property
    def key(self) -> str:
        """A short hash of every input of the build."""
        inputs = {
            "recipe": RECIPE_VERSION,
            "variant": self.variant.value,
            "source": [self.variant.source.package, self.source_version],
            "steps": [BASE_CONFIG, *MAKE_VARIABLES, TARGET],
            "config": hashlib.sha256(CONFIG_FRAGMENT.read_bytes()).hexdigest(),
            "patch": ([hashlib.sha256(PATCH.read_bytes()).hexdigest(), SELFTEST]
                      if self.variant is Variant.PATCHED else None),
        }
        return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def cache_dir(self) -> Path:
        """Where the finished build lives: bzImage, config, build.json."""
        return CACHE_DIR / f"kernel-{self.variant.value}-{self.key}"

    @property
    def bzimage(self) -> Path:
        """The cached kernel image (present once the build finished)."""
        return self.cache_dir / "bzImage"

    @property
    def selftest(self) -> Path:
        """The cached KVM selftest binary (``patched`` builds only)."""
        return self.cache_dir / SELFTEST
