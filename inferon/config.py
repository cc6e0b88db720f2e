"""Inferon settings from the environment, read in one place.

Variables:
    INFERON_CACHE_DIR  build cache directory (default ``~/.cache/inferon``)
    INFERON_CXX        C++ compiler (default ``g++``)
    INFERON_CC         C compiler for the runtime (default ``gcc``)

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


def load_config() -> Config:
    """Read the Inferon environment variables (each call reads them afresh)."""
    env = os.environ
    cache = env.get("INFERON_CACHE_DIR") or str(Path.home() / ".cache" / "inferon")
    return Config(
        cache_dir=Path(cache).expanduser(),
        cxx=env.get("INFERON_CXX") or "g++",
        cc=env.get("INFERON_CC") or "gcc",
    )
