/* bartoggle: put virtio-vga's vram BAR 0 at BAR_ADDR, then turn the device's memory decode on and
 * off TOGGLES times. Each "on" makes QEMU map vga.vram (8 MiB of RAM): one KVM memslot created;
 * each "off" deletes it. Build symbols: TOGGLES (default 100), BAR_ADDR (default 0xe0000000,
 * 8 MiB aligned, above the 128 MiB of RAM the tests give). Exits with STATUS_TOGGLE_DONE. */
        .include "guest.inc"

        .ifndef TOGGLES
        .set TOGGLES, 100
        .endif
        .ifndef BAR_ADDR
        .set BAR_ADDR, 0xe0000000
        .endif

start:
        guest_setup
        mov $BAR_ADDR, %esi
        call place_vram                 /* EBX = the device; exits if absent */
        mov $PCI_COMMAND, %ecx          /* select the Command register once: the address */
        call pci_select                 /* port keeps it, DX = data port */
        mov $TOGGLES, %edi
1:      test %edi, %edi                 /* while (edi--) { decode on; decode off } */
        jz 2f
        mov $PCI_COMMAND_MEMORY, %ax
        outw %ax, %dx                   /* on: vram mapped at BAR_ADDR */
        xor %ax, %ax
        outw %ax, %dx                   /* off: unmapped */
        dec %edi
        jmp 1b
2:      guest_exit STATUS_TOGGLE_DONE

        .include "pci.inc"
        reset_vector
