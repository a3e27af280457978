/* Cost of one KVM ioctl and one other syscall under stacked seccomp filters (bench/exitpath.py).
 *
 * Usage: ioctl_cost ITERATIONS [FILTER...]   FILTER: a file of raw struct sock_filter.
 * The program forks: the child installs the filters, the parent none, and the two take
 * turns (a pipe each way) through 21 rounds of batches, so that both see the same load on a
 * shared machine. Each batch times ITERATIONS calls of
 * - ioctl(/dev/kvm, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY): the path KVM_RUN takes
 *   through seccomp (an ioctl whose request is not a memslot one), without KVM_RUN's work;
 * - getppid(): a syscall the filters decide by its number alone;
 * and ITERATIONS / 10 userspace exits: KVM_RUN of a real-mode guest looping on
 * `out %al, $0x80`, each run returning here with KVM_EXIT_IO.
 * Prints the fastest batch of each, in ns per call, without then with the filters:
 * "IOCTL IOCTL_FILTERED GETPPID GETPPID_FILTERED EXIT EXIT_FILTERED".
 * Filters are installed without a listener (the calls they would notify are never made
 * while measuring). Both processes end with SIGKILL: an exit_group under a filter with
 * trap_exit, and even a plain exit, left an unreaped process here (kernel 6.18).
 */
#include <fcntl.h>
#include <signal.h>
#include <linux/filter.h>
#include <linux/kvm.h>
#include <linux/seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define BATCHES 21

static double now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e9 + t.tv_nsec;
}

static int install(const char *path) {
  static struct sock_filter program[4096];
  FILE *file = fopen(path, "rb");
  if (!file) { perror(path); return -1; }
  size_t count = fread(program, sizeof(program[0]), 4096, file);
  fclose(file);
  struct sock_fprog prog = {.len = (unsigned short)count, .filter = program};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) { perror("prctl"); return -1; }
  if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0) {
    perror("seccomp");
    return -1;
  }
  return 0;
}

/* A vCPU at 0x1000 running `out %al, $0x80; jmp .-2` in real mode; its kvm_run in *run. */
static int make_vcpu(int kvm, struct kvm_run **run) {
  int vm = ioctl(kvm, KVM_CREATE_VM, 0);
  if (vm < 0) { perror("KVM_CREATE_VM"); return -1; }
  unsigned char *memory = mmap(NULL, 0x1000, PROT_READ | PROT_WRITE,
                               MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  static const unsigned char code[] = {0xe6, 0x80, 0xeb, 0xfc};  /* out %al,$0x80; jmp .-2 */
  memcpy(memory, code, sizeof(code));
  struct kvm_userspace_memory_region region = {
      .slot = 0, .guest_phys_addr = 0x1000, .memory_size = 0x1000,
      .userspace_addr = (unsigned long)memory};
  if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0) { perror("memslot"); return -1; }
  int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
  if (vcpu < 0) { perror("KVM_CREATE_VCPU"); return -1; }
  int size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
  *run = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
  struct kvm_sregs sregs;
  if (ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0) { perror("KVM_GET_SREGS"); return -1; }
  sregs.cs.base = 0;
  sregs.cs.selector = 0;
  if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0) { perror("KVM_SET_SREGS"); return -1; }
  struct kvm_regs regs = {.rip = 0x1000, .rflags = 0x2};
  if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0) { perror("KVM_SET_REGS"); return -1; }
  return vcpu;
}

/* The fastest of this process's batches: ioctl, getppid and exit, in ns per call. */
static void measure(int kvm, int vcpu, struct kvm_run *run, long iterations, int wait_fd,
                    int signal_fd, double best[3]) {
  char token = 0;
  for (int batch = 0; batch < BATCHES; batch++) {
    if (read(wait_fd, &token, 1) != 1) exit(1);  /* our turn */
    double began = now_ns();
    for (long i = 0; i < iterations; i++)
      if (ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY) != 1) { perror("ioctl"); exit(1); }
    double ioctl_ns = (now_ns() - began) / iterations;
    began = now_ns();
    for (long i = 0; i < iterations; i++) syscall(SYS_getppid);
    double other_ns = (now_ns() - began) / iterations;
    long exits = iterations / 10;
    began = now_ns();
    for (long i = 0; i < exits; i++)
      if (ioctl(vcpu, KVM_RUN, 0) < 0 || run->exit_reason != KVM_EXIT_IO) {
        fprintf(stderr, "KVM_RUN: exit reason %u\n", run->exit_reason);
        exit(1);
      }
    double exit_ns = (now_ns() - began) / exits;
    if (ioctl_ns < best[0]) best[0] = ioctl_ns;
    if (other_ns < best[1]) best[1] = other_ns;
    if (exit_ns < best[2]) best[2] = exit_ns;
    if (write(signal_fd, &token, 1) != 1) exit(1);  /* the other's turn */
  }
}

int main(int argc, char **argv) {
  if (argc < 2) { fprintf(stderr, "usage: ioctl_cost ITERATIONS [FILTER...]\n"); return 2; }
  long iterations = atol(argv[1]);
  int to_child[2], to_parent[2], results[2];
  if (pipe(to_child) || pipe(to_parent) || pipe(results)) { perror("pipe"); return 1; }
  pid_t child = fork();
  if (child < 0) { perror("fork"); return 1; }
  int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (kvm < 0) { perror("/dev/kvm"); return 1; }
  struct kvm_run *run;
  int vcpu = make_vcpu(kvm, &run);  /* made before the filters: its memslot is not trapped */
  if (vcpu < 0) return 1;
  double best[3] = {1e18, 1e18, 1e18};
  if (child == 0) {
    for (int i = 2; i < argc; i++)
      if (install(argv[i])) return 1;
    measure(kvm, vcpu, run, iterations, to_child[0], to_parent[1], best);
    if (write(results[1], best, sizeof(best)) != sizeof(best)) return 1;
    kill(getpid(), SIGKILL);
  }
  char token = 0;
  if (write(to_parent[1], &token, 1) != 1) return 1;  /* the parent goes first */
  measure(kvm, vcpu, run, iterations, to_parent[0], to_child[1], best);
  double filtered[3];
  if (read(results[0], filtered, sizeof(filtered)) != sizeof(filtered)) {
    fprintf(stderr, "the filtered child failed\n");
    return 1;
  }
  printf("%.1f %.1f %.1f %.1f %.1f %.1f\n", best[0], filtered[0], best[1], filtered[1], best[2],
         filtered[2]);
  fflush(stdout);
  kill(getpid(), SIGKILL);
  return 0;
}
