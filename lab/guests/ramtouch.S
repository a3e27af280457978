/* ramtouch: writes one byte into each of PAGES pages of guest RAM from FIRST_PAGE on (real
 * mode: below 640 KiB), reads each back, then exits. Every page gets its EPT entry from
 * the write's EPT violation: the Intel lab reads those entries (their memory type and
 * ignore-PAT bit) from KVM's trace. Exits with STATUS_RAMTOUCH_DONE, or STATUS_RAMTOUCH_BAD
 * when a byte did not read back.
 * Build symbols: FIRST_PAGE (default 0x10), PAGES (default 16). */
        .include "guest.inc"

        .ifndef FIRST_PAGE
        .set FIRST_PAGE, 0x10
        .endif
        .ifndef PAGES
        .set PAGES, 16
        .endif

start:
        guest_setup
        mov $(FIRST_PAGE << 8), %bx     /* segment of the page: page << 8 (4 KiB = 0x100 paras) */
        mov $PAGES, %cx
1:      mov %bx, %es
        movb $0x5a, %es:0               /* the write: an EPT violation, then the entry */
        cmpb $0x5a, %es:0
        jne 2f
        add $0x100, %bx
        loop 1b
        guest_exit STATUS_RAMTOUCH_DONE
2:      guest_exit STATUS_RAMTOUCH_BAD

        reset_vector
