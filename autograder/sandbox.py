"""Running student code in a separate process, and talking to it with plain data only.

The grader's process never imports a submission. ``Sandbox`` makes a private working copy of
the submission (only its ``.py`` files, inside a ``submission`` package) next to a copy of
``autograder/child`` (the child's runtime); ``StudentProcess`` starts one child per graded test,
sends it requests and reads back ``codec`` lines. A timeout, a crash or an exception in student
code becomes a ``StudentCodeError`` whose message a student can act on; the next test starts a
fresh child.

The child runs ``python -I`` (no PYTHON* variables, no user site-packages, neither the script's
folder nor the working directory on sys.path), in its own session and process group, with
resource limits, an empty stdin, a scratch working directory of its own, and stdout/stderr sent
to a log that the grader reads at most ``OUTPUT_LIMIT`` bytes of.
"""
from __future__ import annotations

import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import isolation
from .child import codec
from .isolation import Identity, Limits
from .uploads import EXPECTED_FILES, SubmissionError, locate_submission  # noqa: F401 (re-exported)

CHILD_PACKAGE = "_agchild"  # the name autograder/child is copied under, next to the submission
OUTPUT_LIMIT = 4096        # bytes of a child's stdout/stderr kept for feedback
RESPONSE_LIMIT = 256 << 20  # bytes of one response line
SUBMISSION_FILE_LIMIT = 200
SUBMISSION_BYTES_LIMIT = 5 << 20
_BOOT = f"import sys; sys.path.append(sys.argv[1]); from {CHILD_PACKAGE}.main import main; main(sys.argv[2:])"


class StudentCodeError(Exception):
    """Student code failed in a way that fails the current check.

    kind: timeout, crash, missing_file, import, missing_function, exception, bad_return,
        protocol, or internal (a fault on the grader's side of the child, not the student's).
    """

    def __init__(self, kind: str, message: str, *, traceback: str = "", output: str = ""):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.traceback = traceback
        self.output = output

    def feedback(self) -> str:
        parts = [self.message]
        if self.traceback:
            parts.append("Traceback (your files only):\n" + self.traceback.rstrip())
        if self.output:
            parts.append("Your code printed:\n" + self.output.rstrip())
        return "\n\n".join(parts)


def copy_submission(source: Path, dest: Path) -> list[str]:
    """Copy the ``.py`` files of ``source`` (recursively, skipping caches) into the package
    folder ``dest``, adding ``__init__.py`` if missing. Returns the copied relative paths."""
    files = [p for p in sorted(source.rglob("*.py"))
             if "__pycache__" not in p.parts and "__MACOSX" not in p.parts and p.is_file() and not p.is_symlink()]
    if len(files) > SUBMISSION_FILE_LIMIT:
        raise SubmissionError(f"the upload has {len(files)} Python files; at most {SUBMISSION_FILE_LIMIT} are graded")
    total = sum(p.stat().st_size for p in files)
    if total > SUBMISSION_BYTES_LIMIT:
        raise SubmissionError(f"the upload's Python files hold {total} bytes; at most {SUBMISSION_BYTES_LIMIT}")
    copied = []
    for path in files:
        relative = path.relative_to(source)
        target = dest / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        copied.append(relative.as_posix())
    for folder in {dest} | {(dest / c).parent for c in copied}:
        (folder / "__init__.py").touch(exist_ok=True)
    return copied


@dataclass
class Sandbox:
    """A private working copy of one submission and the child runtime, for one grading run.

    upload: the folder the student's files came in.
    model_dir: the prepared model folder children load for P6 (None: no model).
    device: torch device string children use ("cpu", "cuda").
    limits: resource limits of each child.
    """

    upload: Path
    model_dir: Path | None = None
    device: str = "cpu"
    limits: Limits = field(default_factory=Limits)
    root: Path = field(init=False)
    work_root: Path = field(init=False)
    runtime_root: Path = field(init=False)
    files: list[str] = field(init=False)
    layout: str = field(init=False)
    identity: Identity = field(init=False)
    marker: str = field(init=False)
    _children: int = field(init=False, default=0)
    _released: bool = field(init=False, default=False)
    _live: set = field(init=False, default_factory=set)  # children not yet closed

    def __post_init__(self):
        if self.device.startswith("cuda") and self.limits.memory_mb is not None:
            # CUDA reserves far more address space than it uses: RLIMIT_AS would make it fail to start
            self.limits = replace(self.limits, memory_mb=None)
        source, self.layout = locate_submission(self.upload)
        self.identity = isolation.allocate_identity()
        self.marker = secrets.token_hex(8)
        isolation.become_subreaper()
        self.root = Path(tempfile.mkdtemp(prefix="autograder-"))
        os.chmod(self.root, 0o711)  # the child may reach work/ and runtime/, not list or write here
        try:
            self.work_root = self.root / "work"
            self.files = copy_submission(source, self.work_root / "submission")
            self.runtime_root = self.root / "runtime"
            shutil.copytree(Path(__file__).parent / "child", self.runtime_root / CHILD_PACKAGE,
                            ignore=shutil.ignore_patterns("__pycache__"))
        except BaseException:
            self.close()
            raise

    def process(self, *, time_limit_s: float, label: str, runs_student_code: bool = True) -> "StudentProcess":
        """A new child for one test (started on its first request).

        runs_student_code=False: a child for grader harnesses only. It runs as the grader's own
        user (with the same limits), not as the sandbox user, so a student process alive at the
        same time cannot ptrace or signal it; its answers can be trusted.
        """
        self._children += 1
        scratch = self.root / f"scratch-{self._children}"
        scratch.mkdir()
        identity = self.identity if runs_student_code else isolation.Identity(None, None, "grader")
        isolation.hand_over(scratch, identity)
        child = StudentProcess(self, scratch=scratch, time_limit_s=time_limit_s, label=label, identity=identity)
        self._live.add(child)
        return child

    def close(self):
        for child in list(self._live):
            child.close()
        if hasattr(self, "root"):
            shutil.rmtree(self.root, ignore_errors=True)
        if not self._released:
            self._released = True
            isolation.release_identity(self.identity)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class StudentProcess:
    """One child process running student code, with one wall-clock budget for all its calls."""

    def __init__(self, sandbox: Sandbox, *, scratch: Path, time_limit_s: float, label: str,
                 identity: Identity | None = None):
        self.sandbox = sandbox
        self.identity = identity or sandbox.identity
        self.scratch = scratch
        self.time_limit_s = time_limit_s
        self.label = label
        self.log_path = scratch.parent / (scratch.name + ".log")
        self.proc: subprocess.Popen | None = None
        self.deadline: float | None = None
        self._closed = False
        self._responses: int | None = None
        self._buffer = b""

    # -- life cycle ------------------------------------------------------------------------
    def _start(self):
        self.deadline = time.monotonic() + self.time_limit_s
        read_fd, write_fd = os.pipe()
        box = self.sandbox
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(self.scratch), "TMPDIR": str(self.scratch),
               "LANG": "C.UTF-8", "USER": box.identity.name, "LOGNAME": box.identity.name,
               isolation.MARKER_VARIABLE: box.marker}
        for name in ("CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS"):
            if name in os.environ:
                env[name] = os.environ[name]
        cpu_seconds = int(self.time_limit_s * (os.cpu_count() or 1)) + 10
        log_fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-B", "-c", _BOOT, str(box.runtime_root), str(box.work_root),
                 str(write_fd), str(box.model_dir or ""), box.device],
                stdin=subprocess.PIPE, stdout=log_fd, stderr=subprocess.STDOUT, pass_fds=(write_fd,),
                cwd=self.scratch, env=env, start_new_session=True,
                preexec_fn=isolation.make_preexec(self.identity, box.limits, cpu_seconds))
        finally:
            os.close(log_fd)
        os.close(write_fd)
        self._responses = read_fd

    def close(self):
        """Kill the child and every process it started, wherever it went (see isolation.sweep)."""
        if self.proc is not None and not self._closed:
            self._closed = True
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self.proc.wait()
            box = self.sandbox
            box._live.discard(self)
            # The whole sandbox user is swept once no other child of this run is alive.
            siblings = frozenset(c.proc.pid for c in box._live if c.proc is not None and not c._closed)
            isolation.sweep(root_pid=self.proc.pid, identity=box.identity, marker=box.marker,
                            whole_user=not siblings, keep=siblings)
            if self.proc.stdin:
                try:
                    self.proc.stdin.close()
                except OSError:
                    pass
        if self._responses is not None:
            os.close(self._responses)
            self._responses = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- requests --------------------------------------------------------------------------
    def call(self, module: str, function: str, *args, seed: int | None = None, **kwargs):
        """``submission.<module>.<function>(*args, **kwargs)`` in the child; returns its decoded value."""
        return self._request({"op": "call", "module": module, "function": function, "args": list(args),
                              "kwargs": kwargs, "seed": seed}, what=f"{function}()")

    def map(self, module: str, function: str, calls: list, *, seed: int | None = None) -> list:
        """Many calls in one round trip. ``calls`` is a list of argument tuples; the result is a
        list, one entry per call, each a value or a StudentCodeError."""
        request = {"op": "map", "module": module, "function": function,
                   "calls": [[list(args), {}] for args in calls], "seed": seed}
        results = self._request(request, what=f"{function}()")
        if type(results) is not list or len(results) != len(calls):
            raise StudentCodeError("protocol", f"the child answered {len(calls)} calls of {function}() with a malformed list")
        return [self._unwrap(item, what=f"{function}()") for item in results]

    def harness(self, name: str, *, seed: int | None = None, **kwargs):
        """Run the child-side harness ``name`` (see autograder/child/harness.py)."""
        return self._request({"op": "harness", "name": name, "kwargs": kwargs, "seed": seed}, what=name)

    def output(self) -> str:
        """What student code printed so far, at most OUTPUT_LIMIT bytes."""
        try:
            with open(self.log_path, "rb") as log:
                data = log.read(OUTPUT_LIMIT + 1)
        except OSError:
            return ""
        text = data[:OUTPUT_LIMIT].decode("utf-8", "replace")
        return text + ("\n… (output truncated)" if len(data) > OUTPUT_LIMIT else "")

    def _unwrap(self, message, *, what: str):
        if type(message) is dict and set(message) == {"ok"}:
            return message["ok"]
        if type(message) is dict and set(message) == {"error"} and type(message["error"]) is dict:
            info = message["error"]
            return StudentCodeError(str(info.get("kind", "exception")), str(info.get("message", f"{what} failed")),
                                    traceback=str(info.get("traceback", "")))
        raise StudentCodeError("protocol", f"the child sent a malformed answer for {what}")

    def _request(self, request: dict, *, what: str):
        if self.proc is None:
            self._start()
        try:
            self.proc.stdin.write(codec.encode(request))
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            self._raise_exit(what)
        line = self._read_line(what)
        try:
            message = codec.decode(line)
        except codec.DecodeError as error:
            raise StudentCodeError("protocol", f"the answer to {what} could not be read: {error}") from None
        value = self._unwrap(message, what=what)
        if isinstance(value, StudentCodeError):
            value.output = self.output()
            raise value
        return value

    def _read_line(self, what: str) -> bytes:
        while b"\n" not in self._buffer:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                self.close()
                raise StudentCodeError("timeout", f"{what} did not finish within the {self.time_limit_s:g} s "
                                                  f"this test allows (an infinite loop, or far too slow?)",
                                       output=self.output())
            ready, _, _ = select.select([self._responses], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(self._responses, 1 << 20)
            if not chunk:
                self._raise_exit(what)
            self._buffer += chunk
            if len(self._buffer) > RESPONSE_LIMIT:
                self.close()
                raise StudentCodeError("bad_return", f"{what} returned more than {RESPONSE_LIMIT >> 20} MB of data")
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def _raise_exit(self, what: str):
        try:
            code = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        self.close()
        if code is not None and code < 0:
            name = signal.Signals(-code).name
            hint = " (the memory or CPU limit?)" if -code in (signal.SIGKILL, signal.SIGXCPU, signal.SIGSEGV) else ""
            how = f"was killed by {name}{hint}"
        else:
            how = f"exited with status {code}"
        raise StudentCodeError("crash", f"the process running your code {how} during {what}; "
                                        f"do not call exit() or os._exit() in a submission", output=self.output())
