"""ONNX node conformance: every ONNX backend node test case that Inferon claims to support.

Drives ``onnx.backend.test.case.node.collect_testcases()`` and selects every case whose graph
contains at least one op from :func:`supported_ops` and otherwise only supported ops or
``Constant`` (folded at import). For each selected case the model is compiled, run on each of
the case's data sets and compared with the reference outputs. Outcomes:

* **pass**        -- compiled, ran and matched every output;
* **unsupported** -- ``inferon.compile`` raised :class:`UnsupportedError` (a deliberate check:
  an attribute, dtype or input form Inferon does not handle). Reported as ``xfail`` with the
  error message as the reason, and counted in the summary printed at the end of the session;
* **follows-ort** -- a result differs from ONNX's reference, ONNX Runtime's differs from it too,
  and Inferon's equals ONNX Runtime's (Inferon follows ONNX Runtime where the two disagree, e.g.
  Resize align_corners with down-scaling scales). Reported as ``xfail`` saying so;
* **fail**        -- anything else: a wrong numeric result, a plain :class:`ModelImportError`
  (a valid conformance model must not be rejected as malformed), a build error, a crash.

Parameter inputs: many cases pass an op's parameters (int64 axes, shape, sizes, starts, pads, split,
repeats, indices; float weights, scales, Clip bounds) as graph inputs, where exported models carry
initializers; Inferon needs them at compile time. Such inputs — int64 ones, and any that Inferon's
error names as needing to be a compile-time constant; the same in every data set, next to at least
one other input that stays a run-time input — are bound as initializers with the case's values
(:func:`bound_inputs`, :func:`compile_case`); the session summary counts the cases run that way.
Nothing else about a case changes.

Tolerances: exactly what ONNX's own backend runner uses, the case's ``rtol``/``atol``
(defaults ``rtol=1e-3, atol=1e-7``), with ``np.testing.assert_allclose`` (NaN == NaN). Every
selected case passes at these tolerances with the AVX2 and the scalar kernels
(``INFERON_ISA=avx2|scalar``) and with 1 or 2 threads, so no float32 slack is added. Should a
future kernel need it, raise ``ATOL_FLOOR`` (e.g. to 1e-5) here rather than per case.

Speed: every case is a separate g++ build (about a second once the precompiled header and the
kernel family objects it links exist; the first builds of a session with an empty cache compile those). The session fixture starts every
selected case's compile on a thread pool (``INFERON_CONFORMANCE_JOBS`` workers, default: the
number of usable CPUs; the Python side is negligible, g++ runs in subprocesses), so tests run
as their builds finish. Builds go through Inferon's content-hash cache (``INFERON_CACHE_DIR``),
so a second run only loads and runs the models.

``python tests/conformance_report.py`` prints the per-op table from the same machinery.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import tempfile
import traceback
import warnings
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import inferon
from inferon.config import load_config
from inferon.errors import ModelImportError, UnsupportedError
from inferon.frontend.onnx.registry import supported_ops

ATOL_FLOOR = 0.0  # extra absolute tolerance over the case's atol; see the module docstring
FOLDED_OPS = frozenset({"Constant"})

PASS, UNSUPPORTED, FOLLOWS_ORT, FAIL = "pass", "unsupported", "follows-ort", "fail"


# ---------------------------------------------------------------------------------------- cases
@cache
def all_cases() -> tuple[Any, ...]:
    """Every ONNX node test case (collecting them takes ~10 s, so only once)."""
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():  # the generators overflow casts on purpose
        warnings.simplefilter("ignore")
        return tuple(collect_testcases())


def case_ops(case: Any) -> list[str]:
    return [node.op_type for node in case.model.graph.node]


def is_selected(case: Any, supported: frozenset[str] | None = None) -> bool:
    supported = supported if supported is not None else frozenset(supported_ops())
    ops = case_ops(case)
    return any(op in supported for op in ops) and all(op in supported or op in FOLDED_OPS for op in ops)


def _selection_cache_file(supported: frozenset[str]) -> Path:
    """Where the selected cases are pickled: keyed by the ONNX version and the selection rule."""
    import onnx

    key = hashlib.sha256(
        "\0".join([onnx.__version__, ",".join(sorted(supported)), ",".join(sorted(FOLDED_OPS)), "1"]).encode()
    ).hexdigest()[:16]
    return load_config().cache_dir / "conformance" / f"cases-{key}.pkl"


@cache
def selected_cases() -> dict[str, Any]:
    """The selected cases by name. collect_testcases() regenerates all ~1900 cases' data (~10 s),
    so the selection is pickled under INFERON_CACHE_DIR and reused while the ONNX version and
    the supported ops stay the same."""
    supported = frozenset(supported_ops())
    path = _selection_cache_file(supported)
    try:
        with path.open("rb") as f:
            cached = pickle.load(f)
        if isinstance(cached, dict) and cached:
            return cached
    except Exception:  # missing, stale or unreadable: collect afresh
        pass
    selected = {case.name: case for case in all_cases() if is_selected(case, supported)}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            pickle.dump(selected, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except OSError:  # a read-only cache only costs the next collection
        pass
    return selected


# -------------------------------------------------------------------------------------- running
@dataclass
class Outcome:
    status: str  # PASS, UNSUPPORTED or FAIL
    message: str = ""
    details: list[str] = field(default_factory=list)


def _runtime_inputs(case: Any) -> list[Any]:
    graph = case.model.graph
    init_names = {init.name for init in graph.initializer}
    return [vi for vi in graph.input if vi.name not in init_names]


def _same_in_every_data_set(case: Any, index: int) -> np.ndarray | None:
    """The case's value of runtime input `index` if every data set gives the same one."""
    values = [np.asarray(data[0][index]) for data in case.data_sets if index < len(data[0])]
    if not values or len(values) != len(case.data_sets) or any(not np.array_equal(values[0], v) for v in values[1:]):
        return None
    return values[0]


def bound_inputs(case: Any, required: frozenset[str] = frozenset()) -> dict[str, np.ndarray]:
    """The case's inputs to bind as initializers (see the module docstring): its int64 inputs, and the
    inputs named in `required` (ones Inferon reported it needs at compile time), when their values are
    the same in every data set and another input stays a run-time one; else none."""
    import onnx

    inputs = _runtime_inputs(case)
    chosen = [i for i, vi in enumerate(inputs)
              if vi.type.tensor_type.elem_type == onnx.TensorProto.INT64 or vi.name in required]  # fmt: skip
    if not chosen or len(chosen) == len(inputs) or not case.data_sets:
        return {}
    bound = {}
    for i in chosen:
        value = _same_in_every_data_set(case, i)
        if value is None:
            return {}
        bound[inputs[i].name] = value
    return bound


def case_model(case: Any, bound: dict[str, np.ndarray]) -> Any:
    """The model to compile: the case's own, with the `bound` inputs made initializers."""
    import onnx
    from onnx import numpy_helper

    if not bound:
        return case.model
    model = onnx.ModelProto()
    model.CopyFrom(case.model)
    kept = [vi for vi in model.graph.input if vi.name not in bound]
    del model.graph.input[:]
    model.graph.input.extend(kept)
    model.graph.initializer.extend(numpy_helper.from_array(v, name) for name, v in bound.items())
    return model


_NEEDS_CONSTANT = re.compile(r"\('([^']+)'\) must be a compile-time constant")


def compile_case(case: Any, out_dir: Path) -> tuple[str, Any]:
    """Compile one case: ("ok", (path, bound input names)) | ("unsupported", message) | ("error", text).
    An input Inferon reports it needs as a compile-time constant is bound (if `bound_inputs` allows)
    and the case compiled again."""
    required: frozenset[str] = frozenset()
    while True:
        bound = bound_inputs(case, required)
        try:
            path = inferon.compile(case_model(case, bound), out_dir / f"{case.name}.so")
        except UnsupportedError as exc:
            match = _NEEDS_CONSTANT.search(str(exc))
            name = match.group(1) if match else None
            if name and name not in required and name in bound_inputs(case, required | {name}):
                required |= {name}
                continue
            return "unsupported", str(exc)
        except ModelImportError as exc:
            return "error", f"ModelImportError (not UnsupportedError): {exc}"
        except Exception as exc:  # every other exception is a failure, with its trace
            return "error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
        return "ok", (path, tuple(bound))


def tolerances(case: Any) -> tuple[float, float]:
    rtol = case.rtol if case.rtol is not None else 1e-3
    atol = case.atol if case.atol is not None else 1e-7
    return float(rtol), max(float(atol), ATOL_FLOOR)


def check_case(case: Any, path: Path, bound: tuple[str, ...] = ()) -> Outcome:
    """Run every data set of `case` through the compiled model at `path` (with the `bound` inputs
    compiled in) and compare."""
    rtol, atol = tolerances(case)
    in_names = [vi.name for vi in _runtime_inputs(case)]
    out_names = [vo.name for vo in case.model.graph.output]
    errors: list[str] = []
    diverged: list[str] = []
    if not case.data_sets:
        return Outcome(FAIL, "the case has no data sets: nothing was checked")
    try:
        model = inferon.load(path)
    except Exception as exc:
        return Outcome(FAIL, f"load failed: {type(exc).__name__}: {exc}")
    with model:
        for index, (inputs, expected) in enumerate(case.data_sets):
            feeds = {name: np.asarray(arr) for name, arr in zip(in_names, inputs, strict=False) if name not in bound}
            try:
                got = model.run(feeds)
            except Exception as exc:
                errors.append(f"data set {index}: run failed: {type(exc).__name__}: {exc}")
                continue
            for name, ref in zip(out_names, expected, strict=False):
                ref = np.asarray(ref)
                out = got.get(name)
                if out is None:
                    errors.append(f"data set {index}: output '{name}' missing")
                    continue
                if out.shape != ref.shape:
                    errors.append(
                        f"data set {index}: output '{name}' shape {list(out.shape)} != expected {list(ref.shape)}"
                    )
                    continue
                try:
                    np.testing.assert_allclose(out.astype(ref.dtype, copy=False), ref, rtol=rtol, atol=atol)
                except AssertionError as exc:
                    if _follows_onnxruntime(case, inputs, name, out, ref, rtol, atol):
                        diverged.append(f"data set {index}: output '{name}'")
                    else:
                        errors.append(f"data set {index}: output '{name}' (rtol={rtol}, atol={atol}):{exc}")
    if errors:
        return Outcome(FAIL, errors[0].splitlines()[0], errors)
    if diverged:
        return Outcome(FOLLOWS_ORT, "ONNX Runtime's result differs from ONNX's reference and Inferon's equals "
                       f"ONNX Runtime's ({', '.join(diverged)})")  # fmt: skip
    return Outcome(PASS, f"bound as constants: {', '.join(bound)}" if bound else "")


def _follows_onnxruntime(case: Any, inputs: list[Any], name: str, out: np.ndarray, ref: np.ndarray,
                         rtol: float, atol: float) -> bool:  # fmt: skip
    """Whether ONNX Runtime, run on the case's own model, disagrees with ONNX's reference output
    `ref` and agrees with Inferon's `out` (where the two disagree, Inferon follows ONNX Runtime)."""
    from inferon.testing import run_onnxruntime

    names = [vi.name for vi in _runtime_inputs(case)]
    outputs = [vo.name for vo in case.model.graph.output]
    try:
        feeds = {n: np.asarray(v) for n, v in zip(names, inputs, strict=False)}
        theirs = run_onnxruntime(case.model, feeds)[outputs.index(name)]
    except Exception:  # ORT cannot run the case: no second opinion
        return False
    same = theirs.shape == out.shape and np.allclose(out, theirs, rtol=rtol, atol=atol, equal_nan=True)
    return same and not np.allclose(theirs, ref, rtol=rtol, atol=atol, equal_nan=True)


def evaluate(case: Any, compiled: tuple[str, Any]) -> Outcome:
    kind, value = compiled
    if kind == "unsupported":
        return Outcome(UNSUPPORTED, value)
    if kind == "error":
        return Outcome(FAIL, value.splitlines()[0], [value])
    return check_case(case, *value)


def run_all(names: list[str], jobs: int | None = None, out_dir: Path | None = None) -> dict[str, Outcome]:
    """Compile (in parallel) and check the named cases; used by conformance_report.py."""
    cases = selected_cases()
    with tempfile.TemporaryDirectory(prefix="inferon-conformance-") as tmp:
        out = out_dir or Path(tmp)
        with ThreadPoolExecutor(max_workers=jobs or default_jobs()) as pool:
            futures = {n: pool.submit(compile_case, cases[n], out) for n in names}
            return {n: evaluate(cases[n], futures[n].result()) for n in names}


def default_jobs() -> int:
    env = os.environ.get("INFERON_CONFORMANCE_JOBS")
    if env:
        return max(1, int(env))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# ---------------------------------------------------------------------------------------- pytest
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "case_name" in metafunc.fixturenames:
        names = sorted(selected_cases())
        metafunc.parametrize("case_name", names, ids=names)


class _Summary:
    """Collects outcomes and prints them in pytest's terminal summary."""

    def __init__(self) -> None:
        self.outcomes: dict[str, Outcome] = {}

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.outcomes:
            return
        counts = Counter(o.status for o in self.outcomes.values())
        tr = terminalreporter
        tr.section("ONNX node conformance")
        bound = sum(1 for o in self.outcomes.values() if o.status == PASS and o.message)
        tr.write_line(
            f"{len(self.outcomes)} cases: {counts[PASS]} passed ({bound} with parameter inputs bound as "
            f"constants), {counts[UNSUPPORTED]} unsupported, {counts[FOLLOWS_ORT]} follow ONNX Runtime where it "
            f"differs from ONNX's reference, {counts[FAIL]} failed"
        )
        # failures always; the unsupported cases (already listed as XFAIL by -ra) with -v
        statuses = (UNSUPPORTED, FOLLOWS_ORT, FAIL) if tr.config.option.verbose > 0 else (FOLLOWS_ORT, FAIL)
        for status in statuses:
            for name, outcome in sorted(self.outcomes.items()):
                if outcome.status == status:
                    tr.write_line(f"  {status:<11} {name}: {outcome.message[:200]}")
        if counts[UNSUPPORTED] and FAIL in statuses and UNSUPPORTED not in statuses:
            tr.write_line("  (-v lists the unsupported cases; python tests/conformance_report.py -v per op)")


@pytest.fixture(scope="session")
def conformance(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """Start every selected case's build on a thread pool; yields (futures, summary)."""
    cases = selected_cases()
    wanted = [
        item.callspec.params["case_name"]
        for item in request.session.items
        if hasattr(item, "callspec")
        and "case_name" in item.callspec.params
        and Path(item.path).resolve() == Path(__file__).resolve()
    ]
    out_dir = tmp_path_factory.mktemp("conformance")
    summary = _Summary()
    request.config.pluginmanager.register(summary, "inferon-conformance-summary")
    pool = ThreadPoolExecutor(max_workers=default_jobs(), thread_name_prefix="conformance")
    futures: dict[str, Future] = {n: pool.submit(compile_case, cases[n], out_dir) for n in wanted}
    try:
        yield futures, summary
    finally:
        for f in futures.values():
            f.cancel()
        pool.shutdown(wait=True)


def test_conformance(case_name: str, conformance: tuple[dict[str, Future], _Summary]) -> None:
    futures, summary = conformance
    case = selected_cases()[case_name]
    future = futures.get(case_name)
    compiled = future.result() if future is not None else compile_case(case, Path(tempfile.mkdtemp()))
    outcome = evaluate(case, compiled)
    summary.outcomes[case_name] = outcome
    if outcome.status == UNSUPPORTED:
        pytest.xfail(f"unsupported: {outcome.message}")
    if outcome.status == FOLLOWS_ORT:
        pytest.xfail(f"follows ONNX Runtime: {outcome.message}")
    if outcome.status == FAIL:
        pytest.fail("\n".join(outcome.details) or outcome.message, pytrace=False)


def test_selection_is_not_empty() -> None:
    """Guard against a silently empty suite (e.g. an ONNX upgrade renaming the test cases)."""
    assert len(selected_cases()) > 100
