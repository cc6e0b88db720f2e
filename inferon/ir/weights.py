"""The weight store: constant tensors live here, outside the IR, referenced by handle."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

ALIGNMENT = 64  # bytes; every weight starts on a cache line in the linked blob


@dataclass
class WeightStore:
    """Maps handles (strings printed in the IR) to numpy arrays: float32 tensors, and the integer
    index arrays of sparse encodings (uint8, uint16, int32), and quantized weights (int8, uint8, int32)."""

    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    def add(self, array: np.ndarray, hint: str = "w", *, keep_dtype: bool = False) -> str:
        """Store a copy of `array` (as float32 unless `keep_dtype`) and return its new handle."""
        safe = "".join(c if c.isalnum() or c in "_." else "_" for c in hint) or "w"
        handle, n = safe, 1
        while handle in self.arrays:
            handle, n = f"{safe}_{n}", n + 1
        if keep_dtype and array.dtype not in (np.uint8, np.int8, np.uint16, np.int32, np.float32):
            raise ValueError(f"weight store: unsupported dtype {array.dtype} for '{hint}'")
        self.arrays[handle] = np.ascontiguousarray(array, dtype=array.dtype if keep_dtype else np.float32)
        return handle

    def __getitem__(self, handle: str) -> np.ndarray:
        try:
            return self.arrays[handle]
        except KeyError:
            raise KeyError(f"weight handle '{handle}' is not in the weight store") from None

    def __contains__(self, handle: str) -> bool:
        return handle in self.arrays

    def pack(self, handles: Iterable[str]) -> tuple[bytes, dict[str, int]]:
        """Concatenate the given weights into one blob; returns it and each handle's offset in floats
        (every array starts 64-byte aligned, so integer arrays too sit at a whole float offset)."""
        chunks: list[bytes] = []
        offsets: dict[str, int] = {}
        size = 0
        for handle in dict.fromkeys(handles):
            data = self[handle].tobytes()
            pad = (-size) % ALIGNMENT
            chunks.append(b"\0" * pad)
            size += pad
            offsets[handle] = size // 4
            chunks.append(data)
            size += len(data)
        return b"".join(chunks), offsets

    def digest(self) -> str:
        """Content hash of all weights (for caches)."""
        h = hashlib.sha256()
        for handle in sorted(self.arrays):
            h.update(handle.encode())
            h.update(self.arrays[handle].tobytes())
        return h.hexdigest()
