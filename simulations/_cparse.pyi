"""Types of the C extension ``autoscaler.simulations._cparse`` (see _cparse.c and _parse.py)."""

import numpy as np
import numpy.typing as npt

def count_lines(buf: npt.NDArray[np.uint8] | bytes, start: int, /) -> int: ...
def parse_csv(
    buf: npt.NDArray[np.uint8] | bytes, start: int, kinds: npt.NDArray[np.int64],
    out: npt.NDArray[np.float64], /,
) -> tuple[int, int, int, int]: ...
def parse_jsonl(
    buf: npt.NDArray[np.uint8] | bytes, keys: npt.NDArray[np.uint8],
    key_len: npt.NDArray[np.int64], out: npt.NDArray[np.float64], /,
) -> tuple[int, int, int, int]: ...
