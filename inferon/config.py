"""Inferon settings from the environment, read in one place.

Variables:
    INFERON_CACHE_DIR  build cache directory (default ``~/.cache/inferon``)
    INFERON_CACHE_MAX_GB  size limit of the cached model libraries in GB (default 10; 0: none),
                       least recently used evicted first (``inferon/cache_trim.py``)
    INFERON_CXX        C++ compiler (default ``g++``)
    INFERON_CC         C compiler for the runtime (default ``gcc``)
    INFERON_PCH        ``0`` builds without the precompiled kernel header (default ``1``: GCC only)

``INFERON_ISA`` (scalar|avx2|avx512) is read by the C runtime itself when a context is created.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Config:
    cache_dir: Path
    cxx: str = "g++"
    cc: str = "gcc"
    pch: bool = True
    cache_max_bytes: int = 10 * 2**30


def load_config() -> Config:
    """Read the Inferon environment variables (each call reads them afresh)."""
    env = os.environ
    cache = env.get("INFERON_CACHE_DIR") or str(Path.home() / ".cache" / "inferon")
    return Config(
        cache_dir=Path(cache).expanduser(),
        cxx=env.get("INFERON_CXX") or "g++",
        cc=env.get("INFERON_CC") or "gcc",
        pch=env.get("INFERON_PCH", "1").strip().lower() not in ("0", "false", "no", "off"),
        cache_max_bytes=_gigabytes(env.get("INFERON_CACHE_MAX_GB"), 10.0),
    )


def _gigabytes(text: str | None, default: float) -> int:
    """A size in GB from the environment as bytes (the default when unset or not a number)."""
    try:
        value = float(text) if text not in (None, "") else default
    except ValueError:
        value = default
    return int(max(value, 0.0) * 2**30)
