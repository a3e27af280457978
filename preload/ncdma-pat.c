/*
 * libncdma-pat.so: honor guest PAT for a whole VM from inside QEMU (ncdma, method="vm").
 *
 * KVM refuses ioctls on a VM fd from any process but the one that created it, so the
 * quirk KVM_X86_QUIRK_IGNORE_GUEST_PAT can only be disabled by QEMU itself. ncdma's
 * wrapper adds this library to QEMU's LD_PRELOAD. It interposes ioctl(); right after a
 * KVM_CREATE_VM returns a VM fd (before QEMU can create a vCPU on it) it checks that
 * KVM_CHECK_EXTENSION(KVM_CAP_DISABLE_QUIRKS2) offers bit 9 and calls
 * KVM_ENABLE_CAP(KVM_CAP_DISABLE_QUIRKS2, args[0] = 1 << 9) on it. Disabling does not zap
 * EPT entries made before, hence this moment.
 *
 * Environment (set by the wrapper; the library does nothing without NCDMA_PAT_REQUIRE):
 *   NCDMA_PAT_REQUIRE  "1": the disable must work, else QEMU exits (status 1) with one
 *                      line on stderr (libvirt's domain log); "0": QEMU goes on, guest PAT
 *                      not honored, and the report says why
 *   NCDMA_PAT_REPORT   a file to write the outcome to, one JSON line, which ncdma's guard
 *                      journals and `ncdma status` shows
 *   NCDMA_PAT_DOMAIN   the domain's name, for the messages
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/kvm.h>

#define QUIRK_IGNORE_GUEST_PAT (1ULL << 9)
#ifndef KVM_CAP_DISABLE_QUIRKS2
#define KVM_CAP_DISABLE_QUIRKS2 213
#endif

typedef int (*ioctl_fn)(int, unsigned long, ...);

static ioctl_fn real_ioctl(void)
{
	static ioctl_fn real;
	if (!real)
		real = (ioctl_fn)dlsym(RTLD_NEXT, "ioctl");
	return real;
}

static const char *domain(void)
{
	const char *name = getenv("NCDMA_PAT_DOMAIN");
	return name && *name ? name : "this VM";
}

/* The outcome as one JSON line in NCDMA_PAT_REPORT (reason: our own text, no quotes). */
static void report(int honored, long mask, int err, const char *reason)
{
	const char *path = getenv("NCDMA_PAT_REPORT");
	char line[512];
	int fd, length;

	if (!path || !*path)
		return;
	length = snprintf(line, sizeof(line),
			  "{\"honored\": %s, \"quirks2_mask\": %ld, \"errno\": %d, "
			  "\"pid\": %d, \"reason\": \"%s\"}\n",
			  honored ? "true" : "false", mask, err, (int)getpid(), reason);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, line, (size_t)length) != length)
		dprintf(2, "ncdma: %s: the guest PAT report %s not written: %s\n", domain(),
			path, strerror(errno));
	if (fd >= 0)
		close(fd);
}

/* Disable the quirk on a new VM fd; fail closed as the policy says. */
static void honor_guest_pat(int vm)
{
	const char *require = getenv("NCDMA_PAT_REQUIRE");
	struct kvm_enable_cap cap;
	char reason[256];
	long mask;
	int saved = errno, err = 0;

	if (!require)
		return;
	mask = real_ioctl()(vm, KVM_CHECK_EXTENSION, KVM_CAP_DISABLE_QUIRKS2);
	if (mask < 0) {
		err = errno;
		snprintf(reason, sizeof(reason), "KVM_CHECK_EXTENSION(KVM_CAP_DISABLE_QUIRKS2) "
			 "failed: %s", strerror(err));
	} else if (!(mask & QUIRK_IGNORE_GUEST_PAT)) {
		snprintf(reason, sizeof(reason), "the kernel does not offer "
			 "KVM_X86_QUIRK_IGNORE_GUEST_PAT (0x200) in "
			 "KVM_CHECK_EXTENSION(KVM_CAP_DISABLE_QUIRKS2) (mask %#lx)", mask);
	} else {
		memset(&cap, 0, sizeof(cap));
		cap.cap = KVM_CAP_DISABLE_QUIRKS2;
		cap.args[0] = QUIRK_IGNORE_GUEST_PAT;
		if (real_ioctl()(vm, KVM_ENABLE_CAP, &cap) == 0) {
			snprintf(reason, sizeof(reason), "KVM_X86_QUIRK_IGNORE_GUEST_PAT disabled "
				 "on VM fd %d right after KVM_CREATE_VM", vm);
			report(1, mask, 0, reason);
			errno = saved;
			return;
		}
		err = errno;
		snprintf(reason, sizeof(reason), "KVM_ENABLE_CAP(KVM_CAP_DISABLE_QUIRKS2, 0x200) "
			 "failed: %s", strerror(err));
	}
	report(0, mask, err, reason);
	if (strcmp(require, "1") == 0) {
		dprintf(2, "ncdma: %s: guest PAT cannot be honored for the whole VM: %s; its "
			"policy requires it (method='vm', require='yes'): QEMU stops\n",
			domain(), reason);
		_exit(1);
	}
	dprintf(2, "ncdma: %s: guest PAT is NOT honored: %s (require='no': running on)\n",
		domain(), reason);
	errno = saved;
}

int ioctl(int fd, unsigned long request, ...)
{
	va_list args;
	void *argument;
	int result;

	va_start(args, request);
	argument = va_arg(args, void *);
	va_end(args);
	result = real_ioctl()(fd, request, argument);
	if (request == KVM_CREATE_VM && result >= 0)
		honor_guest_pat(result);
	return result;
}
