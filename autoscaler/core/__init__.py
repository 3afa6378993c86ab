"""The pure decision core: no I/O, no asyncio, no wall clock.

Everything here is a function of its inputs; time arrives inside the observation. The daemon and
the simulator both drive this package, so what a user tunes offline is what runs online.
"""
