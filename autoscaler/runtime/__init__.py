"""The imperative shell: sample, describe, decide (through the pure core), actuate, on a grid."""
