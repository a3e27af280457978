#!/bin/busybox sh
# /init of the Intel lab's initramfs (lab/intel/image.py). Runs under Bochs's Skylake-X.
# The kernel command line names the steps (lab_steps=check,quirks,...), the checkout
# (lab_repo) and its venv's python (lab_python). Each step's output goes to the serial
# console between "lab-step-begin NAME" and "lab-step-end NAME STATUS CENTISECONDS" lines,
# which tests/intel reads; then the guest powers off.
/bin/busybox --install -s /bin
export PATH=/bin:/usr/bin:/usr/sbin HOME=/root LC_ALL=C.UTF-8 PYTHONDONTWRITEBYTECODE=1
mount -t devtmpfs devtmpfs /dev
mount -t proc proc /proc
mount -t sysfs sysfs /sys
# /tmp stays the initramfs's own: a checkout under /tmp (a CI clone) lives there
mkdir -p /tmp && chmod 1777 /tmp
mount -t tmpfs tmpfs /run
mkdir -p /dev/shm /root
mount -t tracefs tracefs /sys/kernel/tracing
tracing=/sys/kernel/tracing

uptime_cs() { awk '{ printf "%d", $1 * 100 }' /proc/uptime; }

# EPT entries KVM makes while CMD runs: the kvm_mmu_set_spte events, then the trace is cleared.
ept() {
  echo 1 > "$tracing/events/kvmmmu/kvm_mmu_set_spte/enable"
  "$@"
  rc=$?
  echo 0 > "$tracing/events/kvmmmu/kvm_mmu_set_spte/enable"
  grep kvm_mmu_set_spte "$tracing/trace"
  echo > "$tracing/trace"
  return $rc
}

py() { cd "$lab_repo" && "$lab_python" "$@"; }

step() {
  case "$1" in
    cpuinfo)  grep -m1 '^flags' /proc/cpuinfo; grep -m1 '^vendor_id' /proc/cpuinfo ;;
    check)    py -m ncdma check --json ;;
    quirks)   /bin/eptprobe quirks ;;
    ept-plain)     ept /bin/eptprobe vm ;;
    ept-flag)      ept /bin/eptprobe vm --flag ;;
    ept-quirk-off) ept /bin/eptprobe vm --disable-quirk ;;
    guarded)  ept py -m lab.intel.inside guarded ;;
    startup)  py -m lab.intel.inside startup ;;
    qemu-plain) ept /usr/bin/qemu-system-x86_64 -machine pc,accel=kvm -m 128 -display none \
                  -nodefaults -device isa-debug-exit,iobase=0x501,iosize=2 \
                  -bios /lab/guests/portio.bin ;;
    hostile)  py -m lab.intel.inside hostile ;;
    qemu-ram) ept /usr/bin/qemu-system-x86_64 -machine pc,accel=kvm -m 128 -display none \
                  -nodefaults -device isa-debug-exit,iobase=0x501,iosize=2 \
                  -bios /lab/guests/ramtouch.bin ;;
    method-vm) ept py -m lab.intel.inside method-vm ;;
    *)        echo "unknown step $1"; return 2 ;;
  esac
}

echo "lab-init: kernel $(uname -r), steps $lab_steps"
for name in $(echo "$lab_steps" | tr , ' '); do
  echo "lab-step-begin $name"
  started=$(uptime_cs)
  step "$name" 2>&1
  status=$?
  echo "lab-step-end $name $status $(( $(uptime_cs) - started ))"
done
echo "lab-init: done"
sync
poweroff -f
