/* bartoggle: put virtio-vga's vram BAR 0 at BAR_ADDR, then turn the device's memory decode on and
 * off TOGGLES times. Each "on" makes QEMU map vga.vram (8 MiB of RAM): one KVM memslot created;
 * each "off" deletes it. Build symbols: TOGGLES (default 100), BAR_ADDR (default 0xe0000000,
 * 8 MiB aligned, above the 128 MiB of RAM the tests give), HOLD (default 0). Exits with
 * STATUS_TOGGLE_DONE; with HOLD > 0 it instead maps vram, waits HOLD seconds of real time
 * (RTC), unmaps and maps it once more (a fresh slot, created after a guard had time to read
 * the BAR) and halts forever with it mapped, for a test to inspect the VM. With GO = 1 it
 * first maps vram and waits, with it mapped, for a byte on COM1 (-serial), then unmaps it and
 * toggles: a test decides when the memslot ioctls come. RELEASE = 1 (with HOLD) unmaps the fresh
 * slot HOLD seconds after creating it, before halting: the last memslot call is its delete. */
        .include "guest.inc"

        .ifndef TOGGLES
        .set TOGGLES, 100
        .endif
        .ifndef BAR_ADDR
        .set BAR_ADDR, 0xe0000000
        .endif
        .ifndef HOLD
        .set HOLD, 0
        .endif
        .ifndef GO
        .set GO, 0
        .endif
        .ifndef RELEASE
        .set RELEASE, 0
        .endif
        .set COM1_LSR_PORT, 0x3fd       /* line status; bit 0: a byte was received */

start:
        guest_setup
        mov $BAR_ADDR, %esi
        call place_vram                 /* EBX = the device; exits if absent */
        mov $PCI_COMMAND, %ecx          /* select the Command register once: the address */
        call pci_select                 /* port keeps it, DX = data port */
        .if GO
        mov $PCI_COMMAND_MEMORY, %ax
        outw %ax, %dx                   /* on: vram mapped while the guest waits */
        mov %dx, %bp
        mov $COM1_LSR_PORT, %dx
3:      inb %dx, %al                    /* until the test sends a byte */
        test $1, %al
        jz 3b
        mov %bp, %dx
        xor %ax, %ax
        outw %ax, %dx                   /* off */
        .endif
        mov $TOGGLES, %edi
1:      test %edi, %edi                 /* while (edi--) { decode on; decode off } */
        jz 2f
        mov $PCI_COMMAND_MEMORY, %ax
        outw %ax, %dx                   /* on: vram mapped at BAR_ADDR */
        xor %ax, %ax
        outw %ax, %dx                   /* off: unmapped */
        dec %edi
        jmp 1b
2:
        .if HOLD
        mov $PCI_COMMAND_MEMORY, %ax
        outw %ax, %dx                   /* on: vram mapped for HOLD seconds */
        mov $HOLD, %edi
        call rtc_wait
        mov $PCI_COMMAND, %ecx
        call pci_select
        xor %ax, %ax
        outw %ax, %dx                   /* off, then on for good */
        mov $PCI_COMMAND_MEMORY, %ax
        outw %ax, %dx
        .if RELEASE
        mov $HOLD, %edi                 /* RELEASE: HOLD seconds later, unmap it for good */
        call rtc_wait
        mov $PCI_COMMAND, %ecx
        call pci_select
        xor %ax, %ax
        outw %ax, %dx
        .endif
        halt_forever
        .else
        guest_exit STATUS_TOGGLE_DONE
        .endif

        .if HOLD
        .include "rtc.inc"
        .endif

        .include "pci.inc"
        reset_vector
