"""Build a model.so from generated C++ plus a weight blob, with a content-hash cache.

A model library is linked from three objects:

* ``model.cpp``  -- the generated code (includes ``inferon/model.hpp``: the kernels and
  ``inferon/model_abi.h``), compiled as C++17;
* ``runtime.c``  -- the C runtime implementing ``runtime.h``, compiled as C11;
* ``weights.S``  -- ``.incbin`` of ``weights.bin`` as the hidden symbol ``inferon_weights``.

Everything is built with ``-fvisibility=hidden``; only the ``runtime.h`` API is exported.
No ``-march``: the kernels pick AVX2/scalar code at run time.

Build time: the kernels are header-only C++, and compiling the heavy families (GEMM, sparse,
INT8 GEMM, depthwise: 5-25 s of g++ each) with every model would dominate it. Generated models
include ``inferon/model.hpp``, which only declares those families' entry points; each family used
is compiled once into ``$INFERON_CACHE_DIR/kernels/<hash>/<family>.o`` (hash: compilers, flags,
runtime files) and linked in (:func:`kernel_object`). Parsing the headers is most of what is left,
so with GCC ``inferon/model.hpp`` is also precompiled once (``pch/<hash>/inferon/model.hpp.gch``,
first on the include path); GCC ignores a ``.gch`` it cannot use and parses the header instead
(``INFERON_PCH=0`` turns it off). A ResNet-50 build is then ~4 s once the objects exist.

The runtime sources are found by :func:`runtime_dir`: ``inferon/_runtime`` when installed
(package data), else ``<repo>/runtime`` in a source checkout.

Packaging note: a wheel must carry ``runtime/`` as ``inferon/_runtime``. With hatchling::

    [tool.hatch.build.targets.wheel.force-include]
    "runtime" = "inferon/_runtime"

(setuptools' package-data cannot reach outside the package: copy ``runtime/`` to
``inferon/_runtime`` before building and list ``inferon = ["_runtime/**/*"]``.)
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path

from inferon.cache_trim import touch, trim
from inferon.config import load_config
from inferon.errors import BuildError

#: Flags for the generated C++ (model.cpp); extra_flags are appended.
CXX_FLAGS: tuple[str, ...] = ("-O3", "-std=c++17", "-fPIC", "-fopenmp", "-fvisibility=hidden")
#: Flags for the C runtime (runtime.c).
CC_FLAGS: tuple[str, ...] = ("-O2", "-std=c11", "-fPIC", "-fopenmp", "-fvisibility=hidden")
#: Link flags; -z defs turns a missing symbol into a build error instead of a load error.
LD_FLAGS: tuple[str, ...] = ("-shared", "-fopenmp", "-Wl,-z,defs", "-Wl,-z,noexecstack")

#: Bumped when the build recipe changes in a way the hashed inputs do not show.
_RECIPE_VERSION = "1"
_MAX_STDERR_CHARS = 6000


def runtime_dir() -> Path:
    """Directory holding ``include/``, ``kernels/`` and ``src/`` of the C/C++ runtime."""
    package = Path(__file__).resolve().parent.parent  # .../inferon
    for candidate in (package / "_runtime", package.parent / "runtime"):
        if (candidate / "include" / "inferon" / "runtime.h").is_file():
            return candidate
    raise BuildError(
        f"cannot find the Inferon runtime sources: looked in {package / '_runtime'} and {package.parent / 'runtime'}"
    )


@cache
def _tool_version(tool: str) -> str:
    try:
        proc = subprocess.run([tool, "--version"], capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise BuildError(f"C/C++ compiler '{tool}' not found on PATH") from exc
    if proc.returncode != 0:
        raise BuildError(f"'{tool} --version' failed: {proc.stderr.strip()[:500]}")
    return proc.stdout


def tree_digest(root: Path) -> str:
    """Hash of every file under `root` (paths and contents), __pycache__ excluded."""
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if "__pycache__" in path.parts:
            continue
        h.update(path.relative_to(root).as_posix().encode())
        h.update(b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def toolchain_digest() -> str:
    """The build recipe, the compilers and their versions."""
    cfg = load_config()
    parts = [_RECIPE_VERSION, cfg.cxx, _tool_version(cfg.cxx), cfg.cc, _tool_version(cfg.cc)]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def cache_key(cpp_source: str, weights: bytes, extra_flags: Sequence[str] = ()) -> str:
    """The content hash naming a build in the cache."""
    h = hashlib.sha256()
    parts = [
        hashlib.sha256(cpp_source.encode()).hexdigest(),
        hashlib.sha256(weights).hexdigest(),
        "\x1f".join(extra_flags),
        toolchain_digest(),
        tree_digest(runtime_dir()),
    ]
    for part in parts:
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def install(src: Path, output: Path) -> None:
    """Copy src to output via a temporary file + rename (never rewrite a mapped .so in place)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", dir=output.parent)
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.chmod(tmp, 0o755)
        os.replace(tmp, output)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _trim(text: str) -> str:
    text = text.strip()
    if len(text) <= _MAX_STDERR_CHARS:
        return text
    return text[:_MAX_STDERR_CHARS] + f"\n... ({len(text) - _MAX_STDERR_CHARS} more characters)"


def _fail(cmd: Sequence[str], proc: subprocess.CompletedProcess | None, stderr: str) -> BuildError:
    status = f" (exit status {proc.returncode})" if proc is not None else ""
    return BuildError(f"compilation failed{status}\ncommand: {subprocess.list2cmdline(list(cmd))}\n{_trim(stderr)}")


_PCH_HEADER = Path("inferon") / "model.hpp"

#: Kernel families that generated models link from objects compiled once (runtime/kernels/common.hpp:
#: INFERON_DEFINE_KERNELS): family -> the entry points whose calls need it.
PREBUILT_FAMILIES: dict[str, tuple[str, ...]] = {
    "GEMM": ("gemm",),
    "SPARSE": ("spmm",),
    "QGEMM": ("qgemm",),
    "DEPTHWISE": ("depthwise_conv2d", "qdepthwise_conv2d"),  # the INT8 one falls back on the float one
    "GROUPED_CONV": ("grouped_conv2d",),
    "WINOGRAD": ("winograd_input", "winograd_output"),
    "POOL": ("pool2d", "global_pool"),
    "ELEMENTWISE": ("unary", "binary", "select", "channel_affine"),
    "REDUCE": ("reduce", "row_norm"),
    "NORM": ("softmax", "lrn"),
    "CONV": ("im2col", "col2im"),
    "RESIZE": ("resize",),
    "LAYOUT": ("transpose",),
    "QUANT": ("dynamic_quantize",),
    # parts of GEMM in objects of their own (FAMILY_PARTS), so that they compile side by side
    "GEMM_LANES": ("lanes_run",),
    "GEMM_ZMM": ("tile_z", "tile_short_z", "tile_pairs_z"),
    "GEMM_SMALL_M": ("rect_small_m",),
}

#: Families whose code is split over several objects: family -> the parts linked with it (the GEMM
#: alone took 26 s of g++; in four objects a cold build of ResNet-50 keeps both cores busy).
FAMILY_PARTS: dict[str, tuple[str, ...]] = {"GEMM": ("GEMM_LANES", "GEMM_ZMM", "GEMM_SMALL_M")}

_LOCKS: dict[Path, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def _is_gcc(tool: str) -> bool:
    version = _tool_version(tool)
    return "Free Software Foundation" in version and "clang" not in version.lower()


def _runtime_key(flags: Sequence[str]) -> str:
    """Names what is built from the runtime alone: compilers, runtime files, flags."""
    return hashlib.sha256("\0".join([toolchain_digest(), tree_digest(runtime_dir()), *flags]).encode()).hexdigest()[:32]


def _build_once(target: Path, command: Callable[[Path], list[str]], verbose: bool) -> subprocess.CompletedProcess | None:
    """Make the shared cache file `target` with `command(temporary path)` unless it exists: one build
    per file at a time (a lock per file in this process, a file lock across processes), then an
    atomic rename. Returns the failed compiler run, or None."""
    import fcntl

    with _LOCKS_GUARD:
        lock = _LOCKS.setdefault(target, threading.Lock())
    with lock:
        if target.is_file():
            return None
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target.with_name(target.name + ".lock"), "w") as flock:
            fcntl.flock(flock, fcntl.LOCK_EX)
            if target.is_file():
                return None
            tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}")
            cmd = command(tmp)
            if verbose:
                print("+ " + subprocess.list2cmdline(cmd), file=sys.stderr)
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            except FileNotFoundError as exc:
                raise _fail(cmd, None, f"compiler not found: {exc}") from exc
            if proc.returncode != 0:
                tmp.unlink(missing_ok=True)
                return proc
            os.replace(tmp, target)
    return None


def precompiled_header_dir(extra_flags: Sequence[str] = (), verbose: bool = False) -> Path | None:
    """The include directory holding ``inferon/model.hpp.gch`` for these flags, built on first use.

    None where it cannot be had (not GCC, ``INFERON_PCH=0``, an unwritable cache, a failed
    precompile): the build then parses the header as usual.
    """
    cfg = load_config()
    if not cfg.pch or not _is_gcc(cfg.cxx):
        return None
    rt = runtime_dir()
    flags = [*CXX_FLAGS, *extra_flags]
    root = cfg.cache_dir / "pch" / _runtime_key(flags)
    header = rt / "include" / _PCH_HEADER
    inc = ["-I", str(rt / "include"), "-I", str(rt / "kernels")]
    try:
        failed = _build_once(root / _PCH_HEADER.with_name(_PCH_HEADER.name + ".gch"),
                             lambda tmp: [cfg.cxx, *flags, *inc, "-x", "c++-header", str(header), "-o", str(tmp)],
                             verbose)  # fmt: skip
    except (OSError, BuildError) as exc:
        if verbose:
            print(f"inferon: no precompiled header ({exc})", file=sys.stderr)
        return None
    if failed is not None:
        if verbose:
            print(f"inferon: precompiling {header} failed, building without it\n{_trim(failed.stderr)}", file=sys.stderr)
        return None
    return root


def kernel_families(cpp_source: str) -> list[str]:
    """The prebuilt kernel families a generated model's source calls into, with their parts
    (FAMILY_PARTS)."""
    called = [fam for fam, entries in PREBUILT_FAMILIES.items()
              if any(re.search(rf"\binferon::{name}\b", cpp_source) for name in entries)]  # fmt: skip
    return [part for fam in called for part in (fam, *FAMILY_PARTS.get(fam, ()))]


def kernel_object(family: str, extra_flags: Sequence[str] = (), verbose: bool = False,
                  scratch: Path | None = None) -> Path:  # fmt: skip
    """The object file defining `family`'s entry points, compiled on first use and cached
    (``$INFERON_CACHE_DIR/kernels/<hash>/<family>.o``; where the cache cannot be written, compiled
    into `scratch` for this build only). Raises :class:`BuildError`."""
    cfg = load_config()
    rt = runtime_dir()
    flags = [*CXX_FLAGS, *extra_flags]
    obj = cfg.cache_dir / "kernels" / _runtime_key(flags) / f"{family.lower()}.o"
    with tempfile.TemporaryDirectory(prefix="inferon-kernels-") as tmp_dir:
        source = Path(tmp_dir) / f"{family.lower()}.cpp"
        source.write_text(f"#define INFERON_BUILD_{family} 1\n#define INFERON_KERNEL_OBJECT 1\n"
                          f'#include "inferon/model.hpp"\n')  # fmt: skip

        def command(out: Path) -> list[str]:
            return [cfg.cxx, *flags, "-I", str(rt / "include"), "-I", str(rt / "kernels"),
                    "-c", str(source), "-o", str(out)]  # fmt: skip

        try:
            failed = _build_once(obj, command, verbose)
        except OSError as exc:
            if scratch is None:
                raise BuildError(f"cannot build the {family.lower()} kernels in {obj.parent}: {exc}") from exc
            if verbose:
                print(f"inferon: cannot write the kernel cache ({exc}); building {family.lower()} for this model only",
                      file=sys.stderr)  # fmt: skip
            obj = scratch / f"{family.lower()}.o"
            run = subprocess.run(command(obj), capture_output=True, text=True, check=False)
            failed = run if run.returncode != 0 else None
    if failed is not None:
        raise _fail(failed.args, failed, failed.stderr)
    return obj


def _compile(build: Path, rt: Path, source: str, extra_flags: Sequence[str], verbose: bool) -> Path:
    cfg = load_config()
    # generated models (inferon/model.hpp) link the heavy kernel families from cached objects; missing
    # ones compile side by side, started first: they take longer than the precompiled header and the
    # model's own objects
    families = kernel_families(source) if f'#include "{_PCH_HEADER.as_posix()}"' in source else []
    pool = ThreadPoolExecutor(max(1, len(families)))
    objects = [pool.submit(kernel_object, f, extra_flags, verbose, build) for f in families]
    procs: list[tuple[list[str], subprocess.Popen]] = []
    try:
        inc = ["-I", str(rt / "include"), "-I", str(rt / "kernels")]
        pch = precompiled_header_dir(extra_flags, verbose)
        if pch is not None:
            inc = ["-I", str(pch), *inc]
        jobs = [
            [cfg.cxx, *CXX_FLAGS, *extra_flags, *inc, "-c", str(build / "model.cpp"), "-o", str(build / "model.o")],
            [cfg.cc, *CC_FLAGS, *inc, "-c", str(rt / "src" / "runtime.c"), "-o", str(build / "runtime.o")],
            [cfg.cc, "-c", str(build / "weights.S"), "-o", str(build / "weights.o")],
        ]
        link = [cfg.cxx, *LD_FLAGS, *extra_flags, "-o", str(build / "model.so"),
                str(build / "model.o"), str(build / "runtime.o"), str(build / "weights.o")]  # fmt: skip
        for cmd in jobs:
            if verbose:
                print("+ " + subprocess.list2cmdline(cmd), file=sys.stderr)
            try:
                procs.append((cmd, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
            except FileNotFoundError as exc:
                raise _fail(cmd, None, f"compiler not found: {exc}") from exc
        link += [str(o.result()) for o in objects]
    except BaseException:
        for _, proc in procs:
            proc.kill()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    errors = []
    for cmd, proc in procs:
        out, err = proc.communicate()
        if verbose and (out or err):
            print(out + err, file=sys.stderr)
        if proc.returncode != 0:
            errors.append(_fail(cmd, subprocess.CompletedProcess(cmd, proc.returncode), err))
    if errors:
        raise errors[0]
    if verbose:
        print("+ " + subprocess.list2cmdline(link), file=sys.stderr)
    proc = subprocess.run(link, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise _fail(link, proc, proc.stderr)
    return build / "model.so"


def _weights_asm(blob: Path) -> str:
    path = str(blob).replace("\\", "\\\\").replace('"', '\\"')
    return (
        "    .section .rodata\n"
        "    .balign 64\n"
        "    .globl inferon_weights\n"
        "    .hidden inferon_weights\n"
        "    .type inferon_weights, @object\n"
        "inferon_weights:\n"
        f'    .incbin "{path}"\n'
        "    .byte 0\n"  # a non-empty symbol even for an empty blob
        "    .size inferon_weights, . - inferon_weights\n"
        '    .section .note.GNU-stack,"",@progbits\n'
    )


def build_shared_library(
    cpp_source: str,
    weights: bytes,
    output: Path,
    *,
    extra_flags: Sequence[str] = (),
    verbose: bool = False,
) -> Path:
    """Compile ``cpp_source`` + the runtime + ``weights`` into the shared library ``output``.

    Builds are cached under ``$INFERON_CACHE_DIR/builds`` by a hash of every input (source,
    weights, flags, compiler versions, runtime files); a hit just copies the cached library.
    Raises :class:`BuildError` with the failing command and the compiler's stderr.
    """
    return build_cached(cpp_source, weights, output, extra_flags=extra_flags, verbose=verbose)[0]


def build_cached(
    cpp_source: str,
    weights: bytes,
    output: Path,
    *,
    extra_flags: Sequence[str] = (),
    verbose: bool = False,
) -> tuple[Path, Path | None]:
    """`build_shared_library`, also returning the build's cache entry (None if it could not be stored)."""
    output = Path(output)
    extra_flags = tuple(extra_flags)
    cfg = load_config()
    rt = runtime_dir()
    key = cache_key(cpp_source, weights, extra_flags)
    cached = cfg.cache_dir / "builds" / key[:2] / f"{key}.so"
    if cached.is_file():
        if verbose:
            print(f"inferon: cache hit {cached}", file=sys.stderr)
        touch(cached)
        install(cached, output)
        return output, cached

    with tempfile.TemporaryDirectory(prefix="inferon-build-") as tmp:
        build = Path(tmp)
        (build / "model.cpp").write_text(cpp_source)
        (build / "weights.bin").write_bytes(weights)
        (build / "weights.S").write_text(_weights_asm((build / "weights.bin").resolve()))
        built = _compile(build, rt, cpp_source, extra_flags, verbose)
        entry: Path | None = cached
        try:  # store in the cache; a read-only cache only costs the next build
            cached.parent.mkdir(parents=True, exist_ok=True)
            install(built, cached)
            src = cached
            for path in trim(cfg.cache_dir, cfg.cache_max_bytes, keep=cached):
                if verbose:
                    print(f"inferon: cache over {cfg.cache_max_bytes / 2**30:g} GB, removed {path}", file=sys.stderr)
        except OSError as exc:
            if verbose:
                print(f"inferon: cannot write the build cache: {exc}", file=sys.stderr)
            src, entry = built, None
        install(src, output)
    return output, entry
