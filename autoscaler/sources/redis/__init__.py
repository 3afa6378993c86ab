"""Redis queue kinds. Imports flow one way: kinds → sampler → settings, probe."""
