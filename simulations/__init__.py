"""The trace-driven simulator: recorded traffic replayed through the daemon's decision core.

The shell is replaced (simulated queue, fleet and clock); ``autoscaler.core.pipeline`` is not.
Per-request FCFS work runs in a C kernel (``_ckernel``) resumed between controller ticks, so the
Python side only does what the daemon does: observe, decide, actuate, once per tick.
"""
