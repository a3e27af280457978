/* intruder: memory that is not the GPU's, moved into the vram BAR's window. It puts virtio-vga's
 * vram BAR 0 at BAR_ADDR with memory decode on (the vram slot is created), waits WAIT seconds
 * of real time (the guard learns the layout), then programs another device's BAR register
 * INTRUDER_REG (0x30: the expansion ROM, enabled) at OUTSIDE, turns that device's memory decode
 * on (its slot is created outside every GPU window), moves it to INTRUDER_AT (inside the vram
 * window: QEMU maps the later BAR over vram there, a slot of the intruder's own memory) and back
 * MOVES times as fast as the guest can, leaves it at INTRUDER_AT and halts forever so the test
 * can read the journal. Build symbols: BAR_ADDR (0xe0000000), INTRUDER_ID (device << 16 |
 * vendor; 0x00051b36 pci-testdev), INTRUDER_REG (0x30), INTRUDER_64 (0; 1: a 64-bit BAR, its
 * high dword is set to 0), INTRUDER_AT (BAR_ADDR + 4 MiB), OUTSIDE (0xd0000000), MOVES (0),
 * WAIT (2), HOSTMEM_ADDR (0; else the address of virtio-vga's 64-bit hostmem BAR 4, below
 * 4 GiB and aligned to its size: put INTRUDER_AT inside it to intrude there).
 * Exits only with STATUS_NOT_FOUND or STATUS_BAD_BAR. */
        .include "guest.inc"

        .ifndef BAR_ADDR
        .set BAR_ADDR, 0xe0000000
        .endif
        .ifndef INTRUDER_ID
        .set INTRUDER_ID, 0x00051b36
        .endif
        .ifndef INTRUDER_REG
        .set INTRUDER_REG, 0x30
        .endif
        .ifndef INTRUDER_64
        .set INTRUDER_64, 0
        .endif
        .ifndef INTRUDER_AT
        .set INTRUDER_AT, BAR_ADDR + 0x400000
        .endif
        .ifndef OUTSIDE
        .set OUTSIDE, 0xd0000000
        .endif
        .ifndef MOVES
        .set MOVES, 0
        .endif
        .ifndef WAIT
        .set WAIT, 2
        .endif
        .ifndef HOSTMEM_ADDR
        .set HOSTMEM_ADDR, 0
        .endif
        .set PCI_BAR4, 0x20
        .if INTRUDER_REG == 0x30
        .set ENABLE, 1                  /* an expansion ROM decodes only with bit 0 set */
        .else
        .set ENABLE, 0
        .endif

start:
        guest_setup
        mov $BAR_ADDR, %esi
        call place_vram                 /* EBX = virtio-vga */
        .if HOSTMEM_ADDR
        mov $PCI_BAR4, %ecx
        call pci_select
        mov $HOSTMEM_ADDR, %eax
        outl %eax, %dx                  /* hostmem BAR 4: low dword ... */
        mov $PCI_BAR4 + 4, %ecx
        call pci_select
        xor %eax, %eax
        outl %eax, %dx                  /* ... and high dword */
        .endif
        mov $PCI_COMMAND, %ecx
        call pci_select
        mov $PCI_COMMAND_MEMORY, %ax
        outw %ax, %dx                   /* vram mapped at BAR_ADDR (and hostmem's window) */
        mov $WAIT, %edi
        call rtc_wait

        mov $INTRUDER_ID, %edi
        call find_device                /* EBX = the intruder */
        .if INTRUDER_64
        mov $INTRUDER_REG + 4, %ecx
        call pci_select
        xor %eax, %eax
        outl %eax, %dx                  /* high dword of a 64-bit BAR: below 4 GiB */
        .endif
        mov $OUTSIDE | ENABLE, %esi
        call set_intruder
        mov $PCI_COMMAND, %ecx
        call pci_select
        mov $PCI_COMMAND_MEMORY, %ax
        outw %ax, %dx                   /* its memory mapped at OUTSIDE */
        mov $MOVES, %edi
1:      test %edi, %edi                 /* while (edi--) { into the window; out again } */
        jz 2f
        mov $INTRUDER_AT | ENABLE, %esi
        call set_intruder
        mov $OUTSIDE | ENABLE, %esi
        call set_intruder
        dec %edi
        jmp 1b
2:      mov $INTRUDER_AT | ENABLE, %esi
        call set_intruder               /* inside the vram window for good */
        halt_forever

/* set_intruder: write ESI to the intruder's (EBX) BAR register INTRUDER_REG. Clobbers EAX,
 * ECX, DX. */
set_intruder:
        mov $INTRUDER_REG, %ecx
        call pci_select
        mov %esi, %eax
        outl %eax, %dx
        ret

        .include "rtc.inc"
        .include "pci.inc"
        reset_vector
