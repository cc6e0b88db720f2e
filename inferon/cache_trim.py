"""Keep the build caches under a size limit: least recently used entries go first.

`builds/` (one model.so per generated source + weights) and `compiled/` (hard links to those, by
model + options) grow with every new model and option set: real models are tens to hundreds of MB
each, so without a bound the cache filled a 250 GB disk over a few weeks of development. After each
new build is stored, `trim` removes the least recently used libraries until the two directories
together hold at most `INFERON_CACHE_MAX_GB` (default 10; 0: no limit). A library is counted once
however many links it has (a `compiled/` entry shares its file with a `builds/` entry), and a cache
hit marks its file as used (its modification time), so models in use are never the ones evicted.
The kernel objects (`kernels/`) and precompiled headers (`pch/`) are small and left alone.
"""

from __future__ import annotations

import os
from pathlib import Path

TRIMMED_DIRS = ("builds", "compiled")


def touch(path: Path) -> None:
    """Mark a cache entry as just used (a hit)."""
    try:
        os.utime(path)
    except OSError:
        pass  # a read-only cache: recency is only a hint


def trim(cache_dir: Path, max_bytes: int, keep: Path | None = None) -> list[Path]:
    """Delete least recently used libraries until the cached ones fit in `max_bytes` (never `keep`,
    the entry just stored); returns the paths removed. Entries vanishing meanwhile (another process
    trimming) are skipped."""
    if max_bytes <= 0:
        return []
    try:
        kept = os.stat(keep) if keep is not None else None
    except OSError:
        kept = None
    files: dict[tuple[int, int], list[os.DirEntry[str]]] = {}
    for sub in TRIMMED_DIRS:
        root = cache_dir / sub
        if not root.is_dir():
            continue
        for shard in os.scandir(root):
            if not shard.is_dir(follow_symlinks=False):
                continue
            for entry in os.scandir(shard.path):
                if entry.is_file(follow_symlinks=False) and entry.name.endswith(".so"):
                    st = entry.stat(follow_symlinks=False)
                    files.setdefault((st.st_dev, st.st_ino), []).append(entry)
    sized = []
    for links in files.values():
        stats = [link.stat(follow_symlinks=False) for link in links]
        sized.append((max(s.st_mtime for s in stats), stats[0].st_size, links))
    total = sum(size for _, size, _ in sized)
    removed: list[Path] = []
    for _, size, links in sorted(sized, key=lambda item: item[0]):
        if total <= max_bytes:
            break
        first = links[0].stat(follow_symlinks=False)
        if kept is not None and (first.st_dev, first.st_ino) == (kept.st_dev, kept.st_ino):
            continue
        for link in links:
            try:
                os.unlink(link.path)
                removed.append(Path(link.path))
            except OSError:
                pass
        total -= size
    return removed
