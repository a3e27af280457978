/* eptprobe: one tiny VM on /dev/kvm whose vCPU touches two memslots, for the Intel lab.
 *
 * Built static on the host (lab/intel/image.py) and run inside the Bochs guest, where KVM's
 * kvmmmu trace events then show the EPT entries KVM made for the two slots.
 *
 *   eptprobe quirks            KVM_CHECK_EXTENSION(KVM_CAP_DISABLE_QUIRKS2) on a VM fd
 *   eptprobe vm [OPTIONS]      the VM: a code slot (gfn CODE_GFN, never flagged) and a data
 *                              slot (gfn DATA_GFN); the real-mode guest reads the data slot's
 *                              first byte and writes it + 1 to the second, then halts
 *     --flag                   create the data slot with KVM_MEM_NON_COHERENT_DMA (0x8)
 *     --disable-quirk          KVM_ENABLE_CAP(KVM_CAP_DISABLE_QUIRKS2, 0x200) right after
 *                              KVM_CREATE_VM, before any slot or vCPU exists
 *
 * Every line it prints starts with "eptprobe:" and is KEY VALUE; errors are errno names. It
 * exits 0 once the guest halted with the data slot read and written, else 1.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define CODE_GFN 0x1UL
#define DATA_GFN 0x100UL
#define PAGE 4096UL
#define NON_COHERENT_DMA 0x8U
#define CAP_DISABLE_QUIRKS2 213
#define QUIRK_IGNORE_GUEST_PAT (1ULL << 9)
#define SEED 0x5a

/* mov ax,0xffff; mov ds,ax; mov al,[0x10]; inc al; mov [0x11],al; hlt
 * (0xffff:0x0010 is 0x100000, the data slot's first byte: DATA_GFN << 12) */
static const uint8_t guest_code[] = {0xb8, 0xff, 0xff, 0x8e, 0xd8, 0xa0, 0x10, 0x00,
                                     0xfe, 0xc0, 0xa2, 0x11, 0x00, 0xf4};

static const char *err_name(int err)
{
    switch (err) {
    case 0: return "OK";
    case EINVAL: return "EINVAL";
    case EEXIST: return "EEXIST";
    case EFAULT: return "EFAULT";
    case EPERM: return "EPERM";
    case ENOMEM: return "ENOMEM";
    default: return strerror(err);
    }
}

static int report(const char *what, int rc)
{
    printf("eptprobe: %s %s\n", what, rc < 0 ? err_name(errno) : "OK");
    return rc;
}

static int open_vm(void)
{
    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0) {
        printf("eptprobe: open_kvm %s\n", err_name(errno));
        return -1;
    }
    int vm = ioctl(kvm, KVM_CREATE_VM, 0);
    if (report("create_vm", vm) < 0)
        return -1;
    return vm;
}

static uint8_t *slot(int vm, uint32_t id, uint32_t flags, unsigned long gfn, const char *name)
{
    uint8_t *mem = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED)
        return NULL;
    struct kvm_userspace_memory_region region = {
        .slot = id, .flags = flags, .guest_phys_addr = gfn * PAGE, .memory_size = PAGE,
        .userspace_addr = (uintptr_t)mem};
    char what[64];
    snprintf(what, sizeof what, "slot_%s gfn %#lx flags %#x", name, gfn, flags);
    return report(what, ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region)) < 0 ? NULL : mem;
}

static int quirks(void)
{
    int vm = open_vm();
    if (vm < 0)
        return 1;
    int mask = ioctl(vm, KVM_CHECK_EXTENSION, CAP_DISABLE_QUIRKS2);
    printf("eptprobe: quirks2 %#x\n", mask);
    printf("eptprobe: ignore_guest_pat_offered %s\n",
           mask > 0 && (mask & QUIRK_IGNORE_GUEST_PAT) ? "yes" : "no");
    return 0;
}

static int run_vm(int flag, int disable_quirk)
{
    int vm = open_vm();
    if (vm < 0)
        return 1;
    if (disable_quirk) {
        struct kvm_enable_cap cap = {.cap = CAP_DISABLE_QUIRKS2,
                                     .args = {QUIRK_IGNORE_GUEST_PAT}};
        report("disable_quirk", ioctl(vm, KVM_ENABLE_CAP, &cap));
    }
    uint8_t *code = slot(vm, 0, 0, CODE_GFN, "code");
    uint8_t *data = slot(vm, 1, flag ? NON_COHERENT_DMA : 0, DATA_GFN, "data");
    if (!code || !data)
        return 1;
    memcpy(code, guest_code, sizeof guest_code);
    data[0] = SEED;
    int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
    if (report("create_vcpu", vcpu) < 0)
        return 1;
    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    long size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    struct kvm_run *run = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
    struct kvm_sregs sregs;
    struct kvm_regs regs = {.rip = CODE_GFN * PAGE, .rflags = 0x2};
    if (run == MAP_FAILED || ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0)
        return 1;
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    if (report("set_sregs", ioctl(vcpu, KVM_SET_SREGS, &sregs)) < 0 ||
        report("set_regs", ioctl(vcpu, KVM_SET_REGS, &regs)) < 0 ||
        report("run", ioctl(vcpu, KVM_RUN, 0)) < 0)
        return 1;
    printf("eptprobe: exit_reason %u\n", run->exit_reason);
    printf("eptprobe: data_read %#x\n", data[0]);
    printf("eptprobe: data_written %#x\n", data[1]);
    return run->exit_reason == KVM_EXIT_HLT && data[1] == SEED + 1 ? 0 : 1;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc >= 2 && !strcmp(argv[1], "quirks"))
        return quirks();
    if (argc >= 2 && !strcmp(argv[1], "vm")) {
        int flag = 0, disable_quirk = 0;
        for (int i = 2; i < argc; i++) {
            if (!strcmp(argv[i], "--flag"))
                flag = 1;
            else if (!strcmp(argv[i], "--disable-quirk"))
                disable_quirk = 1;
            else
                goto usage;
        }
        return run_vm(flag, disable_quirk);
    }
usage:
    fprintf(stderr, "usage: eptprobe quirks | vm [--flag] [--disable-quirk]\n");
    return 2;
}
