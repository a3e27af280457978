#!/bin/busybox sh
# /init of the patched-kernel lab's initramfs (lab/kernel/initramfs.py packs it with a
# static busybox). It mounts this machine's root read-only over 9p (tag hostroot), gives it
# writable tmpfs at /tmp /run /var/tmp, mounts the checkout (tag repo) read-only at its own
# path (it may lie under /tmp), mounts the run's writable share (tag report) at
# /run/lab, runs the driver `python -m lab.kernel.inside` from the checkout in a chroot,
# and powers off. The kernel command line sets lab_python, lab_repo, lab_kernel and
# lab_selftest. An initramfs that carries /modules/order (a distribution kernel's, see
# lab/apparmor) has those modules loaded first; one that carries /driver runs that module
# (with --out) instead of lab.kernel.inside.
/bin/busybox --install -s /bin
export PATH=/bin
say() { echo "lab-init: $*"; }
stop() { say "$*"; sync; poweroff -f; }

mount -t devtmpfs devtmpfs /dev
mount -t proc proc /proc
if [ -f /modules/order ]; then
  for module in $(cat /modules/order); do
    insmod "/modules/$module" || stop "cannot load module $module"
  done
fi
p9=trans=virtio,version=9p2000.L,msize=512000
mkdir -p /newroot
mount -t 9p -o "$p9,ro,cache=loose" hostroot /newroot || stop "cannot mount the host root"
for dir in tmp run var/tmp; do
  mount -t tmpfs -o mode=1777 tmpfs "/newroot/$dir" || stop "cannot mount tmpfs at /$dir"
done
# the checkout (with its .venv) at its own path, even under /tmp (a clone in CI)
mkdir -p "/newroot$lab_repo" 2>/dev/null
mount -t 9p -o "$p9,ro,cache=loose" repo "/newroot$lab_repo" || stop "cannot mount the checkout"
mkdir /newroot/run/lab
mount -t 9p -o "$p9" report /newroot/run/lab || stop "cannot mount the report share"
mount --bind /dev /newroot/dev
mount -t proc proc /newroot/proc
mount -t sysfs sysfs /newroot/sys
mount -t securityfs securityfs /newroot/sys/kernel/security 2>/dev/null  # LSM kernels only
mkdir -p /newroot/dev/shm
driver="lab.kernel.inside --kernel '$lab_kernel' --selftest '$lab_selftest'"
newroot=/newroot
if [ -f /driver ]; then
  driver=$(cat /driver)
  # An LSM names a path from the namespace's root, not from a chroot's: the host root is
  # moved onto / (as switch_root does) so that profiles see /usr, /run...; this shell keeps
  # the initramfs as its root (for poweroff)
  cd /newroot && mount --move . / || stop "cannot move the host root onto /"
  newroot=.
fi

say "kernel $(uname -r), driver starting"
chroot $newroot /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/tmp LC_ALL=C.UTF-8 \
  PYTHONDONTWRITEBYTECODE=1 /bin/sh -c \
  "cd '$lab_repo' && exec '$lab_python' -m $driver --out /run/lab"
stop "driver exited with status $?"
