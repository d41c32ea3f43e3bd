"""The loop of the child process that runs student code.

The grader never imports a submission. It starts this loop in a separate process (see
``autograder/sandbox.py``) with a private copy of the submission, sends one request per line on
stdin and reads one response per line on a dedicated pipe; student prints go to stdout/stderr,
which the grader keeps apart. Requests and responses are ``codec`` lines (plain data only).

Requests (dicts), each with an "id" the response repeats:
    {"id": 1, "op": "call", "module": "p3_param_counts", "function": "full_joint",
     "args": [...], "kwargs": {...}, "seed": 7}
    {"id": 2, "op": "map", "module": ..., "function": ..., "calls": [[args, kwargs], ...], "seed": 7}
    {"id": 3, "op": "harness", "name": "<harness>", "kwargs": {...}, "seed": 7}
Responses: {"id": 1, "time": seconds in student code, "ok": value} or {"id": 1, "time": ...,
"error": {"kind": ..., "type": ..., "message": ..., "traceback": ...}} where kind is one of:
missing_file, import, missing_function, exception, bad_return, bad_request, internal (a fault
on the grader's side, not the student's). "time" only informs the grader's timing report;
like everything this process says, it is not trusted for grading.

This package is copied next to the submission (as ``_autograder.child``, with each problem's
child-side modules as ``_autograder.problems.<problem>.<module>``), so it imports only the
standard library, numpy and its sibling modules (torch only when student code or a harness
needs it). The problems' harnesses are imported by the fork server before any child is forked
(``launcher.Preload``), never here.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import random
import sys
import time
import traceback

import numpy as np

from . import codec, harness
from .harness import StudentFailure

_MAX_TRACEBACK = 4000
MEMO_BYTES = 256 << 20  # answers of repeated model calls kept (call_memo.CallMemo)


def _student_traceback(error: BaseException, work_root: str) -> str:
    """The traceback limited to frames in the submission's files, newest last."""
    frames = [f for f in traceback.extract_tb(error.__traceback__) if f.filename.startswith(work_root)]
    lines = traceback.format_list(frames) + traceback.format_exception_only(type(error), error)
    text = "".join(lines).replace(work_root + os.sep, "")
    return text if len(text) <= _MAX_TRACEBACK else "…" + text[-_MAX_TRACEBACK:]


class Child:
    """Imports submission modules on demand and runs requests against them."""

    def __init__(self, work_root: str, model_dir: str | None, device: str, *, preloaded=None):
        """preloaded: (model, config) already loaded on the CPU by the fork server, or None."""
        self.work_root = work_root
        self.model_dir = model_dir
        self.device = device
        self._preloaded = preloaded
        self._model = None
        self.student_seconds = 0.0  # time spent inside student code, for the grader's timing report

    def module(self, name: str):
        """``submission.<name>``, imported on first use; raises StudentFailure with a clear message."""
        path = os.path.join(self.work_root, "submission", name + ".py")
        if not os.path.isfile(path):
            present = sorted(f for f in os.listdir(os.path.join(self.work_root, "submission")) if f.endswith(".py"))
            raise StudentFailure({"kind": "missing_file", "type": "FileNotFoundError",
                                  "message": f"submission/{name}.py is not in your upload "
                                             f"(files found: {', '.join(present) or 'none'})"})
        try:
            return importlib.import_module("submission." + name)
        except BaseException as error:  # SystemExit, KeyboardInterrupt included: nothing escapes
            raise StudentFailure({"kind": "import", "type": type(error).__name__,
                                  "message": f"importing submission/{name}.py raised {type(error).__name__}: {error}",
                                  "traceback": _student_traceback(error, self.work_root)}) from None

    def function(self, module: str, name: str):
        mod = self.module(module)
        fn = getattr(mod, name, None)
        if not callable(fn):
            raise StudentFailure({"kind": "missing_function", "type": "AttributeError",
                                  "message": f"submission/{module}.py defines no function {name}()"})
        return fn

    def invoke(self, fn, args, kwargs, *, label: str):
        """Call student code, turning every exception (BaseException too) into StudentFailure."""
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        except BaseException as error:
            message = f"{label} is not implemented yet (it raises NotImplementedError)" \
                if type(error) is NotImplementedError else f"{label} raised {type(error).__name__}: {str(error)[:500]}"
            raise StudentFailure({"kind": "exception", "type": type(error).__name__, "message": message,
                                  "traceback": _student_traceback(error, self.work_root)}) from None
        finally:
            self.student_seconds += time.perf_counter() - start

    def model(self):
        """The course model (logits, presents = model(x, past=past)) and its config, loaded once."""
        if self._model is None:
            if self._preloaded is None:
                from .course_model import load_course_model
                if not self.model_dir:
                    raise RuntimeError("this request needs a model, but the grader started no model")
                self._preloaded = load_course_model(self.model_dir, remember_bytes=MEMO_BYTES)
            model, config = self._preloaded
            self._model = (model.to(self.device), config)  # the fork server maps it on the CPU
        return self._model

    def seed(self, seed):
        if seed is None:
            return
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch = sys.modules.get("torch")
        if torch is not None:
            torch.manual_seed(seed)

    def handle(self, request: dict):
        op = request.get("op")
        if op == "call":
            fn = self.function(request["module"], request["function"])
            self.seed(request.get("seed"))
            args = [harness.to_native(a) for a in request.get("args", [])]
            kwargs = {k: harness.to_native(v) for k, v in request.get("kwargs", {}).items()}
            return self.invoke(fn, args, kwargs, label=f"{request['function']}()")
        if op == "map":
            fn = self.function(request["module"], request["function"])
            self.seed(request.get("seed"))
            results = []
            for args, kwargs in request["calls"]:
                args = [harness.to_native(a) for a in args]
                kwargs = {k: harness.to_native(v) for k, v in kwargs.items()}
                try:
                    results.append({"ok": self.invoke(fn, args, kwargs, label=f"{request['function']}()")})
                except StudentFailure as failure:
                    results.append({"error": failure.info})
            return results
        if op == "load":  # a clean child only (the grader sends it no other way): modules student code never sees
            harness.assert_clean("loading the grader's clean harnesses")
            for name, source, filename in request["modules"]:
                _load_module(name, source, filename)
            return None
        if op == "harness":
            self.seed(request.get("seed"))
            return harness.run(self, request["name"], request.get("kwargs", {}))
        raise StudentFailure({"kind": "bad_request", "type": "ValueError", "message": f"unknown op {op!r}"})


def _load_module(name: str, source: str, filename: str) -> None:
    """Make ``source`` the module ``name`` (in a package of the runtime, so its relative imports
    work), as an import of that file would."""
    spec = importlib.util.spec_from_loader(name, loader=None)
    module = importlib.util.module_from_spec(spec)
    module.__package__ = name.rpartition(".")[0]
    sys.modules[name] = module
    exec(compile(source, filename, "exec"), module.__dict__)


def _respond(out, payload: dict):
    try:
        line = codec.encode(payload)
    except (codec.EncodeError, RecursionError, ValueError, OverflowError) as error:
        line = codec.encode({"id": payload.get("id"), "time": payload.get("time", 0.0),
                             "error": {"kind": "bad_return", "type": type(error).__name__,
                                       "message": f"the value returned cannot be graded: {error}"}})
    out.write(line)
    out.flush()


def serve(*, work_root: str, model_dir: str | None, device: str, response_fd: int, preloaded=None) -> None:
    """Answer requests from stdin until it closes. work_root holds the ``submission`` package;
    responses go to response_fd; preloaded is the fork server's (model, config), if any."""
    # Requests come on stdin; student code gets an empty stdin so it cannot read them.
    requests = os.fdopen(os.dup(0), "rb")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    out = os.fdopen(response_fd, "wb")
    sys.path.append(work_root)  # appended: a numpy.py in the upload cannot shadow numpy
    child = Child(work_root, model_dir or None, device, preloaded=preloaded)
    for line in requests:
        request_id = None
        before = child.student_seconds
        try:
            request = codec.decode(line)
            request_id = request.get("id") if type(request) is dict else None
            payload = {"ok": child.handle(request)}
        except StudentFailure as failure:
            payload = {"error": failure.info}
        except BaseException as error:  # a bug on the grader's side of the child: report, keep serving
            payload = {"error": {"kind": "internal", "type": type(error).__name__,
                                 "message": f"{type(error).__name__}: {str(error)[:500]}",
                                 "traceback": traceback.format_exc()[-_MAX_TRACEBACK:]}}
        _respond(out, {"id": request_id, "time": child.student_seconds - before, **payload})
