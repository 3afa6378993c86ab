"""Queue-wait autoscaler for GPU inference fleets."""

__version__ = "0.1.0"
