"""GR00T N1.7's graphs as torch wrappers: what the exporter traces, calibration runs and the preflight
compares against. Each wrapper takes its graph's inputs in the declared order (``families.n17.contract``)
and returns its outputs in order; the math is the N1.7 reference's own modules (weights copied by
reference, never by value), rearranged only where an export needs static-shape-friendly ops."""
