"""Feature: `ncdma migrate`, both ends: live migration like `virsh migrate`, safe for tagged
(non-coherent) slots; :mod:`.peer` is the destination's side, run over SSH.

One job per module: :mod:`.options` (virsh's options to libvirt's flags and
parameters), :mod:`.preflight` (what the source and the destination say, and the pure
decision of what to do), :mod:`.channel` (SSH to the destination's ``ncdma peer``),
:mod:`.job` (libvirt's migration job: progress, --timeout, abort), :mod:`.progress`
(terminal and plain output), :mod:`.summary` and :mod:`.run` (the phases in order).
"""
