/* hostile: a guest that wants device memory over its own RAM. It puts virtio-vga's vram BAR 0 at
 * BAR_ADDR, inside guest RAM, turns memory decode on, spins SPIN iterations (no exits), then
 * either exits (STAY = 0) or halts forever so a test can inspect the VM (STAY = 1).
 * Build symbols: BAR_ADDR (default 0x04000000, 64 MiB: inside 128 MiB of RAM, 8 MiB aligned),
 * SPIN (default 0x10000), STAY (default 0). Exits with STATUS_HOSTILE_DONE. */
        .include "guest.inc"

        .ifndef BAR_ADDR
        .set BAR_ADDR, 0x04000000
        .endif
        .ifndef SPIN
        .set SPIN, 0x10000
        .endif
        .ifndef STAY
        .set STAY, 0
        .endif

start:
        guest_setup
        mov $BAR_ADDR, %esi
        call place_vram                 /* EBX = the device; exits if absent */
        mov $PCI_COMMAND, %ecx
        call pci_select
        mov $PCI_COMMAND_MEMORY, %ax
        outw %ax, %dx                   /* memory decode on: vram now claims BAR_ADDR */
        mov $SPIN, %ecx
1:      test %ecx, %ecx                 /* while (ecx--) ; a wait that stays in the guest */
        jz 2f
        dec %ecx
        jmp 1b
2:
        .if STAY
        halt_forever
        .else
        guest_exit STATUS_HOSTILE_DONE
        .endif

        .include "pci.inc"
        reset_vector
