/* A stand-in for QEMU making one memslot ioctl the way a compromised or unusual VMM could
   (the attack tests run it through ncdma's wrapper as the domain's emulator):
     NCDMA_ABI=int80    KVM_SET_USER_MEMORY_REGION through the 32-bit syscall entry
                        (int $0x80), which a filter checking only x86_64 lets through;
     NCDMA_ABI=ownflag  the native ioctl with flag 0x8 already set on a plain RAM slot.
   Prints "rc=R" (0, or -errno) and exits 0. Built static and non-PIE by the test, so the
   region struct sits below 4 GiB, where a 32-bit syscall can point to it. */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define SLOT_SIZE 0x200000UL
#define NR_IOCTL_I386 54

static struct kvm_userspace_memory_region region;

int main(void) {
    const char *abi = getenv("NCDMA_ABI");
    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    int vm = kvm < 0 ? -1 : ioctl(kvm, KVM_CREATE_VM, 0);
    void *memory = mmap(NULL, SLOT_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                        -1, 0);
    long rc;
    if (vm < 0 || memory == MAP_FAILED) {
        perror("memslot_abi: /dev/kvm");
        return 2;
    }
    region.slot = 0;
    region.guest_phys_addr = 0;
    region.memory_size = SLOT_SIZE;
    region.userspace_addr = (unsigned long)memory;
    if (abi && strcmp(abi, "int80") == 0) {
        __asm__ volatile("int $0x80"
                         : "=a"(rc)
                         : "a"((long)NR_IOCTL_I386), "b"((long)vm),
                           "c"((long)KVM_SET_USER_MEMORY_REGION), "d"((long)&region)
                         : "memory");
    } else {
        region.flags = 0x8;
        rc = ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0 ? -errno : 0;
    }
    printf("rc=%ld\n", rc);
    return 0;
}
