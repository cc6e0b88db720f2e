"""Load and run a compiled Inferon model.so from Python (ctypes over the runtime.h C API).

    >>> model = inferon.runtime.load("model.so", threads=4)
    >>> y = model(x)                      # one output → ndarray, several → tuple
    >>> outs = model.run({"data": x})     # dict name → ndarray

Inputs are checked in Python first (count, names, dtype, shape; no silent casts) and then
again by the C runtime; any rejection raises :class:`~inferon.errors.RuntimeCallError`.
Each :class:`CompiledModel` owns one C context: use one per thread to run concurrently
(the GIL is released while the model runs).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import numpy as np

from inferon.errors import InferonError, RuntimeCallError

ABI_VERSION = 2

# inferon_dtype (ONNX TensorProto.DataType) ↔ numpy
_DTYPES: dict[int, np.dtype] = {
    1: np.dtype(np.float32),
    2: np.dtype(np.uint8),
    3: np.dtype(np.int8),
    6: np.dtype(np.int32),
    7: np.dtype(np.int64),
    9: np.dtype(np.bool_),
}
_CODES = {dt: code for code, dt in _DTYPES.items()}


class _TensorInfo(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("dtype", ctypes.c_int32),
        ("rank", ctypes.c_int32),
        ("shape", ctypes.POINTER(ctypes.c_int64)),
    ]


class _Tensor(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("dtype", ctypes.c_int32),
        ("rank", ctypes.c_int32),
        ("shape", ctypes.POINTER(ctypes.c_int64)),
        ("data", ctypes.c_void_p),
    ]


@dataclass(frozen=True)
class TensorInfo:
    """Name, static shape and numpy dtype of a model input or output."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype


def _fmt_shape(shape: tuple[int, ...]) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


# Paths loaded in this process → (device, inode, mtime) of the file that was loaded. dlopen
# returns the already-loaded library for a known path, so a rebuilt file at the same path is
# loaded through a private copy instead.
_loaded: dict[str, tuple[int, int, int]] = {}
_loaded_lock = threading.Lock()


def _dlopen(path: Path) -> ctypes.CDLL:
    real = str(path.resolve())
    st = path.stat()
    ident = (st.st_dev, st.st_ino, st.st_mtime_ns)
    copy: Path | None = None
    with _loaded_lock:
        prev = _loaded.setdefault(real, ident)
        if prev != ident:
            fd, tmp = tempfile.mkstemp(prefix="inferon-", suffix=".so")
            os.close(fd)
            shutil.copyfile(real, tmp)
            copy = Path(tmp)
            real = tmp
    try:
        return ctypes.CDLL(real, mode=os.RTLD_NOW | os.RTLD_LOCAL)
    except OSError as exc:
        raise InferonError(f"cannot load '{path}' as an Inferon model: {exc}") from exc
    finally:
        if copy is not None:
            copy.unlink(missing_ok=True)  # stays mapped


def _bind(lib: ctypes.CDLL, path: Path) -> None:
    try:
        lib.inferon_abi_version.restype = ctypes.c_int
        lib.inferon_abi_version.argtypes = []
        version = lib.inferon_abi_version()
        if version != ABI_VERSION:
            raise InferonError(
                f"'{path}' was built for Inferon ABI version {version}, this loader supports "
                f"{ABI_VERSION}; recompile the model"
            )
        p_model = ctypes.c_void_p
        sigs: dict[str, tuple[Any, list[Any]]] = {
            "inferon_model_create": (ctypes.c_int, [ctypes.POINTER(p_model), ctypes.c_int]),
            "inferon_model_destroy": (None, [p_model]),
            "inferon_model_num_inputs": (ctypes.c_int, [p_model]),
            "inferon_model_num_outputs": (ctypes.c_int, [p_model]),
            "inferon_model_input_info": (ctypes.POINTER(_TensorInfo), [p_model, ctypes.c_int]),
            "inferon_model_output_info": (ctypes.POINTER(_TensorInfo), [p_model, ctypes.c_int]),
            "inferon_model_run": (
                ctypes.c_int,
                [p_model, ctypes.POINTER(_Tensor), ctypes.c_int, ctypes.POINTER(_Tensor), ctypes.c_int],
            ),
            "inferon_model_last_error": (ctypes.c_char_p, [p_model]),
            "inferon_status_string": (ctypes.c_char_p, [ctypes.c_int]),
            "inferon_model_isa": (ctypes.c_char_p, [p_model]),
            "inferon_model_set_profiling": (ctypes.c_int, [p_model, ctypes.c_int]),
            "inferon_model_num_ops": (ctypes.c_int, [p_model]),
            "inferon_model_op_name": (ctypes.c_char_p, [p_model, ctypes.c_int]),
            "inferon_model_op_seconds": (ctypes.c_double, [p_model, ctypes.c_int, ctypes.POINTER(ctypes.c_int64)]),
        }
        for name, (res, args) in sigs.items():
            fn = getattr(lib, name)
            fn.restype = res
            fn.argtypes = args
    except AttributeError as exc:
        raise InferonError(f"'{path}' is not an Inferon model library: {exc}") from exc


def _info(ptr: Any) -> TensorInfo:
    info = ptr.contents
    shape = tuple(int(info.shape[i]) for i in range(info.rank))
    dtype = _DTYPES.get(int(info.dtype))
    if dtype is None:
        raise InferonError(f"tensor '{info.name.decode()}' has an unknown dtype code {info.dtype}")
    return TensorInfo(info.name.decode(), shape, dtype)


@dataclass(frozen=True)
class OpProfile:
    """Mean wall time of one kernel call of a model (see CompiledModel.profile)."""

    index: int  # position in execution order
    op: str  # label: op name and output shape
    ms: float  # mean milliseconds per run
    percent: float  # share of the summed op times


class CompiledModel:
    """One execution context of a compiled model.so."""

    def __init__(self, path: str | os.PathLike[str], threads: int = 1) -> None:
        self._ctx: ctypes.c_void_p | None = None
        self.path = Path(path)
        if not self.path.is_file():
            raise InferonError(f"model library '{self.path}' does not exist")
        if threads < 0:
            raise InferonError(f"threads must be >= 0 (0 = all cores), got {threads}")
        self._lib = _dlopen(self.path)
        _bind(self._lib, self.path)
        ctx = ctypes.c_void_p()
        status = self._lib.inferon_model_create(ctypes.byref(ctx), int(threads))
        if status != 0:
            msg = (self._lib.inferon_model_last_error(None) or b"").decode(errors="replace")
            raise RuntimeCallError(f"cannot create a context for '{self.path}': {self._status(status)}: {msg}", status)
        self._ctx = ctx
        # what the runtime runs with: all cores for 0, never more than the cores this process may use
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        self.threads = cores if threads == 0 else min(threads, cores)
        n_in = self._lib.inferon_model_num_inputs(ctx)
        n_out = self._lib.inferon_model_num_outputs(ctx)
        self.inputs: list[TensorInfo] = [_info(self._lib.inferon_model_input_info(ctx, i)) for i in range(n_in)]
        self.outputs: list[TensorInfo] = [_info(self._lib.inferon_model_output_info(ctx, i)) for i in range(n_out)]
        self._out_shapes = [np.array(o.shape, dtype=np.int64) for o in self.outputs]
        self._in_names = [i.name.encode() for i in self.inputs]
        self._out_names = [o.name.encode() for o in self.outputs]

    # ------------------------------------------------------------------ properties
    @property
    def isa(self) -> str:
        """Instruction set the kernels dispatch to: "avx512", "avx2" or "scalar"."""
        self._check_open()
        return self._lib.inferon_model_isa(self._ctx).decode()

    @property
    def input_names(self) -> list[str]:
        return [i.name for i in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [o.name for o in self.outputs]

    # ------------------------------------------------------------------ running
    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run with inputs by name; returns outputs by name."""
        if not isinstance(feeds, dict):
            raise RuntimeCallError(f"run() takes a dict of input name → array, got {type(feeds).__name__}")
        names = self.input_names
        unknown = [k for k in feeds if k not in names]
        if unknown:
            raise RuntimeCallError(f"unknown input name '{unknown[0]}' (model inputs: {', '.join(names)})", -3)
        missing = [n for n in names if n not in feeds]
        if missing:
            raise RuntimeCallError(
                f"expected {len(names)} inputs, got {len(feeds)}: missing {', '.join(repr(m) for m in missing)}",
                -2,
            )
        outs = self._run([feeds[n] for n in names])
        return {o.name: a for o, a in zip(self.outputs, outs, strict=True)}

    def __call__(self, *arrays: np.ndarray, **named: np.ndarray) -> np.ndarray | tuple[np.ndarray, ...]:
        """Run with positional and/or named inputs; a single output is returned bare."""
        names = self.input_names
        if len(arrays) > len(names):
            raise RuntimeCallError(f"expected {len(names)} inputs, got {len(arrays) + len(named)}", -2)
        feeds = dict(zip(names, arrays, strict=False))  # fewer positionals than inputs is fine
        for k, v in named.items():
            if k not in names:
                raise RuntimeCallError(f"unknown input name '{k}' (model inputs: {', '.join(names)})", -3)
            if k in feeds:
                raise RuntimeCallError(f"input '{k}' given both by position and by name", -3)
            feeds[k] = v
        if len(feeds) != len(names):
            missing = [n for n in names if n not in feeds]
            raise RuntimeCallError(
                f"expected {len(names)} inputs, got {len(feeds)}: missing {', '.join(repr(m) for m in missing)}",
                -2,
            )
        outs = self._run([feeds[n] for n in names])
        return outs[0] if len(outs) == 1 else tuple(outs)

    def profile(self, *arrays: np.ndarray, runs: int = 10, warmup: int = 2) -> list[OpProfile]:
        """Run `runs` times (after `warmup` runs) timing every kernel call; slowest op first."""
        if runs < 1:
            raise InferonError(f"profile(): runs must be >= 1, got {runs}")
        for _ in range(warmup):
            self(*arrays)
        self._check_open()
        self._lib.inferon_model_set_profiling(self._ctx, 1)
        try:
            for _ in range(runs):
                self(*arrays)
            n = self._lib.inferon_model_num_ops(self._ctx)
            count = ctypes.c_int64(0)
            seconds = [self._lib.inferon_model_op_seconds(self._ctx, i, ctypes.byref(count)) for i in range(n)]
            names = [self._lib.inferon_model_op_name(self._ctx, i).decode() for i in range(n)]
        finally:
            self._lib.inferon_model_set_profiling(self._ctx, 0)
        total = sum(seconds) or 1.0
        rows = [
            OpProfile(i, name, 1e3 * sec / max(1, count.value), 100.0 * sec / total)
            for i, (name, sec) in enumerate(zip(names, seconds, strict=True))
        ]
        return sorted(rows, key=lambda r: -r.ms)

    def _prepare(self, index: int, value: Any) -> np.ndarray:
        info = self.inputs[index]
        where = f"input '{info.name}' (index {index})"
        if not isinstance(value, np.ndarray):
            if isinstance(value, (list, tuple, int, float)):
                value = np.asarray(value)
                if value.dtype == np.float64 and info.dtype == np.float32:
                    value = value.astype(np.float32)  # Python literals carry no precision intent
            else:
                raise RuntimeCallError(f"{where}: expected a numpy array, got {type(value).__name__}")
        if value.dtype != info.dtype:
            raise RuntimeCallError(f"{where}: expected dtype {info.dtype.name}, got {value.dtype.name}", -4)
        if value.shape != info.shape:
            if value.ndim != len(info.shape):
                raise RuntimeCallError(
                    f"{where}: expected rank {len(info.shape)} (shape {_fmt_shape(info.shape)}), "
                    f"got rank {value.ndim} (shape {_fmt_shape(value.shape)})",
                    -5,
                )
            raise RuntimeCallError(
                f"{where}: expected shape {_fmt_shape(info.shape)}, got {_fmt_shape(value.shape)}", -5
            )
        return value if value.flags.c_contiguous else np.array(value, order="C")  # keeps 0-d arrays 0-d

    def _run(self, values: list[Any]) -> list[np.ndarray]:
        self._check_open()
        arrays = [self._prepare(i, v) for i, v in enumerate(values)]
        outs = [np.empty(o.shape, dtype=o.dtype) for o in self.outputs]
        in_shapes = [np.array(a.shape, dtype=np.int64) for a in arrays]
        c_in = (_Tensor * max(1, len(arrays)))()
        for i, (a, shp) in enumerate(zip(arrays, in_shapes, strict=True)):
            c_in[i] = _Tensor(
                self._in_names[i],
                _CODES[a.dtype],
                a.ndim,
                shp.ctypes.data_as(ctypes.POINTER(ctypes.c_int64)),
                a.ctypes.data,
            )
        c_out = (_Tensor * max(1, len(outs)))()
        for i, (a, shp) in enumerate(zip(outs, self._out_shapes, strict=True)):
            c_out[i] = _Tensor(
                self._out_names[i],
                _CODES[a.dtype],
                a.ndim,
                shp.ctypes.data_as(ctypes.POINTER(ctypes.c_int64)),
                a.ctypes.data,
            )
        status = self._lib.inferon_model_run(self._ctx, c_in, len(arrays), c_out, len(outs))
        if status != 0:
            raise RuntimeCallError(
                f"{self._lib.inferon_model_last_error(self._ctx).decode(errors='replace')} ({self._status(status)})",
                status,
            )
        return outs

    def run_raw(
        self, tensors: list[tuple[str | None, np.ndarray]], outputs: list[tuple[str | None, np.ndarray]]
    ) -> None:
        """Call inferon_model_run with exactly these tensors (no Python-side checks).

        For tests and tools: exercises the C runtime's own validation.
        """
        self._check_open()
        keep: list[Any] = []

        def fill(arr: Any, items: list[tuple[str | None, np.ndarray]]) -> None:
            for i, (name, a) in enumerate(items):
                shp = np.array(a.shape, dtype=np.int64)
                keep.append(shp)
                code = _CODES.get(a.dtype, 0)
                arr[i] = _Tensor(
                    None if name is None else name.encode(),
                    code,
                    a.ndim,
                    shp.ctypes.data_as(ctypes.POINTER(ctypes.c_int64)),
                    a.ctypes.data,
                )

        c_in = (_Tensor * max(1, len(tensors)))()
        c_out = (_Tensor * max(1, len(outputs)))()
        fill(c_in, tensors)
        fill(c_out, outputs)
        status = self._lib.inferon_model_run(self._ctx, c_in, len(tensors), c_out, len(outputs))
        if status != 0:
            raise RuntimeCallError(
                f"{self._lib.inferon_model_last_error(self._ctx).decode(errors='replace')} ({self._status(status)})",
                status,
            )

    # ------------------------------------------------------------------ lifetime
    def _status(self, status: int) -> str:
        return self._lib.inferon_status_string(status).decode()

    def _check_open(self) -> None:
        if self._ctx is None:
            raise InferonError("this CompiledModel has been closed")

    def close(self) -> None:
        """Free the C context (the library stays mapped; idempotent)."""
        ctx, self._ctx = getattr(self, "_ctx", None), None
        if ctx is not None:
            self._lib.inferon_model_destroy(ctx)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown
            self.close()

    def __repr__(self) -> str:
        ins = ", ".join(f"{i.name}{_fmt_shape(i.shape)}" for i in self.inputs)
        outs = ", ".join(f"{o.name}{_fmt_shape(o.shape)}" for o in self.outputs)
        state = "closed" if self._ctx is None else f"threads={self.threads}"
        return f"<CompiledModel {self.path.name} ({ins}) -> ({outs}) {state}>"


def load(path: str | os.PathLike[str], threads: int = 1) -> CompiledModel:
    """Load a model.so built by Inferon; ``threads=0`` uses all cores (more than the cores this process
    may run on are capped to them)."""
    return CompiledModel(path, threads=threads)
