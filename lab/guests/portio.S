/* portio: COUNT writes to port 0x80, each one an I/O exit from KVM to QEMU, then exit.
 * A benchmark of the exit path: QEMU's run time is measured from outside.
 * Build symbol: COUNT (default 1000). Exits with STATUS_PORTIO_DONE. */
        .include "guest.inc"

        .ifndef COUNT
        .set COUNT, 1000
        .endif

start:
        guest_setup
        mov $COUNT, %ecx
        xor %al, %al
1:      test %ecx, %ecx                 /* while (ecx--) out al, 0x80 */
        jz 2f
        out %al, $0x80                  /* POST diagnostic port: nothing listens, QEMU ignores it */
        dec %ecx
        jmp 1b
2:      guest_exit STATUS_PORTIO_DONE

        reset_vector
