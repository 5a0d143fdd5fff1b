"""Stand-ins for the step probe's child process (``medseg.planning.calibrate._probe_child``):
a native crash or a hang under bf16, the real measurement under float32.

Not a test module: ``test_precision.py`` puts this folder on ``sys.path`` so a spawned child
can import it.
"""

from __future__ import annotations

import ctypes
import time
from typing import Any

from medseg.planning.calibrate import _probe_child


def segfault_in_bf16(
    conn: Any, plan: dict[str, Any], device: str, steps: int, precisions: tuple[str, ...]
) -> None:
    _probe_child(conn, plan, device, steps, tuple(p for p in precisions if p != "bf16"))
    if "bf16" in precisions:
        ctypes.string_at(0)  # reads address 0: SIGSEGV, as a faulting native kernel would


def hang_in_bf16(
    conn: Any, plan: dict[str, Any], device: str, steps: int, precisions: tuple[str, ...]
) -> None:
    _probe_child(conn, plan, device, steps, tuple(p for p in precisions if p != "bf16"))
    if "bf16" in precisions:
        time.sleep(600)
