/* vramfill: guest writes to vram, read back and checked. It puts virtio-vga's vram BAR 0 at
 * BAR_ADDR, maps it, waits WAIT seconds of real time (the guard learns the layout), then turns
 * on the VGA's chain-4 mode: QEMU maps the start of vram at 0xa0000 (an alias: a memslot with
 * vram's host address, reachable from real mode), 64 KiB. It writes COUNT dwords (an
 * incrementing pattern from SEED) there and reads them back. Exits with STATUS_VRAMFILL_OK, or
 * STATUS_VRAMFILL_BAD at the first dword that differs; with HOLD = 1 it halts instead of
 * exiting OK, for a test to compare vram's content. With KVM_MEM_READONLY on the slot every
 * write is an MMIO exit that QEMU completes through its memory API: this guest shows whether
 * vram stays correct, and how fast, under that flag.
 * GO = 1 replaces the timed wait with a handshake on COM1 (-serial), for hosts whose clock is
 * too slow to guess a wait (the Intel lab under Bochs): after mapping vram the guest waits for a
 * byte (the test sends it once the guard has learned the layout), and after the read-back for
 * another before it exits, so the test sees the VM alive with its slots; it never halts (a
 * nested guest's halt stalls Bochs), it polls the line status with a spin between reads.
 * Build symbols: BAR_ADDR (0xe0000000), COUNT (16384: 64 KiB), SEED (0x12345678), WAIT (2),
 * HOLD (0), GO (0). */
        .include "guest.inc"

        .ifndef BAR_ADDR
        .set BAR_ADDR, 0xe0000000
        .endif
        .ifndef COUNT
        .set COUNT, 16384
        .endif
        .ifndef SEED
        .set SEED, 0x12345678
        .endif
        .ifndef WAIT
        .set WAIT, 2
        .endif
        .ifndef HOLD
        .set HOLD, 0
        .endif
        .ifndef GO
        .set GO, 0
        .endif
        .set COM1_DATA_PORT, 0x3f8
        .set COM1_LSR_PORT, 0x3fd       /* line status; bit 0: a byte was received */
        .set POLL_SPIN, 0x400000        /* guest-only iterations between two reads of COM1 */
        .set VGA_SEQ_INDEX, 0x3c4       /* sequencer: index, then data at +1 */
        .set VGA_GFX_INDEX, 0x3ce       /* graphics controller: index, then data at +1 */
        .set CHAIN4_SEGMENT, 0xa000

start:
        guest_setup
        mov $BAR_ADDR, %esi
        call place_vram                 /* EBX = virtio-vga */
        mov $PCI_COMMAND, %ecx
        call pci_select
        mov $PCI_COMMAND_MEMORY, %ax
        outw %ax, %dx                   /* vram mapped */
        .if GO
        call wait_byte                  /* until the test says the guard knows the layout */
        .else
        mov $WAIT, %edi
        call rtc_wait
        .endif
        mov $VGA_SEQ_INDEX, %dx
        mov $0x0f02, %ax                /* SR2 map mask: all planes */
        outw %ax, %dx
        mov $0x0804, %ax                /* SR4 memory mode: chain 4 */
        outw %ax, %dx
        mov $VGA_GFX_INDEX, %dx
        mov $0x0506, %ax                /* GR6: graphics, 0xa0000 + 64 KiB: vram mapped there */
        outw %ax, %dx
        mov $CHAIN4_SEGMENT, %ax
        mov %ax, %es

        xor %di, %di                    /* for (i = 0; i < COUNT; i++) vram[i] = SEED + i */
        mov $COUNT, %ecx
        mov $SEED, %eax
1:      mov %eax, %es:(%di)
        add $4, %di
        inc %eax
        dec %ecx
        jnz 1b

        xor %di, %di                    /* ... and read back */
        mov $COUNT, %ecx
        mov $SEED, %eax
2:      cmp %es:(%di), %eax
        jne 3f
        add $4, %di
        inc %eax
        dec %ecx
        jnz 2b
        .if HOLD
        halt_forever
        .else
        .if GO
        call wait_byte                  /* until the test has looked at the live VM */
        .endif
        guest_exit STATUS_VRAMFILL_OK
        .endif
3:      guest_exit STATUS_VRAMFILL_BAD

        .if GO
/* Wait, without halting, for a byte on COM1 and read it. */
wait_byte:
        mov $POLL_SPIN, %ecx
4:      dec %ecx                        /* a wait that stays in the guest (no exit) */
        jnz 4b
        mov $COM1_LSR_PORT, %dx
        inb %dx, %al
        test $1, %al
        jz wait_byte
        mov $COM1_DATA_PORT, %dx
        inb %dx, %al                    /* consume it: the next wait needs a new byte */
        ret
        .endif

        .include "rtc.inc"
        .include "pci.inc"
        reset_vector
