"""Entry point: the libvirt hook (:mod:`.entry`) and each operation's work (:mod:`.operations`)."""
