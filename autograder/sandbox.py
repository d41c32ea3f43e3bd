"""Running student code in a separate process, and talking to it with plain data only.

The grader's process never imports a submission. ``Sandbox`` makes a private working copy of
the submission (only its ``.py`` files, inside a ``submission`` package) next to a copy of
``autograder/child`` (the child's runtime), and starts the run's fork server (``Launcher``,
``child/launcher.py``): one ``python -I`` that imports numpy and, when the run grades with a
model, torch and the model's mapped weights, once. ``StudentProcess`` has it fork one fresh
child per graded test, sends the child requests and reads back ``codec`` lines. A timeout, a
crash or an exception in student code becomes a ``StudentCodeError`` whose message a student can
act on; the next test gets a fresh child.

The child runs in its own session and process group, with resource limits, as the sandbox's
user when the grader is root, with an empty stdin, a scratch working directory of its own, and
stdout/stderr sent to a log that the grader reads at most ``OUTPUT_LIMIT`` bytes of. It inherits
the launcher's interpreter state, which is a fresh ``python -I`` (no PYTHON* variables, no user
site-packages, neither a script's folder nor the working directory on sys.path) plus the
modules listed above: never anything of the submission's.
"""
from __future__ import annotations

import json
import os
import secrets
import select
import shutil
import signal
import socket
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
from .uploads import read_upload_file, submission_files

CHILD_PACKAGE = "_agchild"  # the name autograder/child is copied under, next to the submission
OUTPUT_LIMIT = 4096        # bytes of a child's stdout/stderr kept for feedback
RESPONSE_LIMIT = 256 << 20  # bytes of one response line
SUBMISSION_FILE_LIMIT = 200
SUBMISSION_BYTES_LIMIT = 5 << 20
_LAUNCHER_BOOT = (f"import sys; sys.path.append(sys.argv[1]); from {CHILD_PACKAGE}.launcher import main; "
                  f"main(sys.argv[2:])")
LAUNCHER_START_LIMIT_S = 600.0  # importing torch and mapping the model; minutes only on a cold, busy machine


# What a child may report (child/main.py); "internal" is believed only from a clean child.
CHILD_ERROR_KINDS = frozenset({"missing_file", "import", "missing_function", "exception", "bad_return",
                               "bad_request", "internal"})


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


def copy_submission(source: Path, dest: Path) -> tuple[list[str], list[str]]:
    """Copy the ``.py`` files of ``source`` (recursively, skipping caches, never following a
    link: uploads.submission_files) into the package folder ``dest``, adding ``__init__.py``
    if missing. Returns the copied relative paths and the notes on links left out."""
    files, ignored = submission_files(source)
    if len(files) > SUBMISSION_FILE_LIMIT:
        raise SubmissionError(f"the upload has {len(files)} Python files; at most {SUBMISSION_FILE_LIMIT} are graded")
    total = sum((source / p).lstat().st_size for p in files)
    if total > SUBMISSION_BYTES_LIMIT:
        raise SubmissionError(f"the upload's Python files hold {total} bytes; at most {SUBMISSION_BYTES_LIMIT}")
    for relative in files:
        target = dest / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(read_upload_file(source / relative))
    for folder in {dest} | {(dest / c).parent for c in files}:
        (folder / "__init__.py").touch(exist_ok=True)
    return [p.as_posix() for p in files], ignored


THREADS_ENV = "AUTOGRADER_TORCH_THREADS"
NAMESPACES_ENV = "AUTOGRADER_NAMESPACES"  # "0": never give children namespaces (to test the fallback)


def torch_threads() -> int:
    """torch's threads per child: AUTOGRADER_TORCH_THREADS if set, else OMP_NUM_THREADS (batch
    sets it to CPUs / jobs), else the CPUs this process may use (isolation.usable_cpus: a
    container's CPU quota counts, where torch would take one thread per core of the host)."""
    for name in (THREADS_ENV, "OMP_NUM_THREADS"):
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    return isolation.usable_cpus()


class LauncherError(RuntimeError):
    """The run's fork server failed (a grader fault, never the student's)."""


class Launcher:
    """The grader's side of the run's fork server (see child/launcher.py).

    Started when the sandbox is made; forks children on request; stopped when the sandbox
    closes (it also dies with the grader). ``ready`` holds what its start-up reported:
    torch_s, model_s (seconds to import torch and map the model), address_space_mb, and
    start_s (wall-clock seconds until it was ready, measured here).
    """

    def __init__(self, *, runtime_root: Path, work_root: Path, model_dir: Path | None, device: str, log_path: Path,
                 private_root: Path | None):
        """private_root: an empty folder in which the launcher builds the children's private
        filesystem (None: children see the host's, as the grader's user allows)."""
        self.log_path = log_path
        self.ready: dict | None = None
        self._started = time.monotonic()
        devices = [f"/dev/{name}" for name in ("null", "zero", "full", "random", "urandom")]
        if device.startswith("cuda"):
            devices += sorted(str(p) for p in Path("/dev").glob("nvidia*"))
        system = [p for p in ("/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
                  if os.path.isdir(p) and not os.path.islink(p)]
        config = {"model_dir": str(model_dir or ""), "threads": torch_threads(), "private_root": str(private_root or ""),
                  "read_only": [*system, sys.prefix, sys.base_prefix, os.path.dirname(os.path.realpath(sys.executable)),
                                str(runtime_root), str(work_root), *([str(model_dir)] if model_dir else [])],
                  "devices": devices}
        self.control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # Waiting OpenMP threads sleep rather than spin: on a busy machine (a batch, Gradescope's
        # shared CPUs) spinning threads that wait for a descheduled sibling made every torch
        # operation on a 50257-entry row take milliseconds (sampling 15x, forward passes 2-4x
        # slower, measured on 2 loaded cores). It must be set before torch loads OpenMP.
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "OMP_WAIT_POLICY": "PASSIVE"}
        for name in ("CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "HOME"):
            if name in os.environ:
                env[name] = os.environ[name]
        log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-B", "-c", _LAUNCHER_BOOT, str(runtime_root), str(theirs.fileno()),
                 json.dumps(config)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, pass_fds=(theirs.fileno(),),
                cwd=str(runtime_root), env=env, start_new_session=True)
        finally:
            os.close(log)
            theirs.close()

    def _receive(self, *, timeout: float, what: str) -> dict:
        ready, _, _ = select.select([self.control], [], [], timeout)
        message = self.control.recv(1 << 16) if ready else None
        if not message:
            raise LauncherError(f"the grader's fork server {'gave no answer' if message is None else 'stopped'} "
                                f"({what}); its log ends: {self._log_tail()}")
        return json.loads(message)

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_bytes()[-1500:].decode("utf-8", "replace").strip() or "(empty)"
        except OSError:
            return "(no log)"

    def is_ready(self) -> bool:
        """Whether it has finished starting (without waiting)."""
        if self.ready is None and select.select([self.control], [], [], 0)[0]:
            self.wait_ready()
        return self.ready is not None

    def wait_ready(self) -> dict:
        if self.ready is None:
            answer = self._receive(timeout=LAUNCHER_START_LIMIT_S, what="starting")
            if "ready" not in answer:
                raise LauncherError(f"the grader's fork server could not start: {answer.get('error')}")
            self.ready = {**answer["ready"], "start_s": round(time.monotonic() - self._started, 3)}
        return self.ready

    @property
    def isolated(self) -> bool:
        """Whether children get a private filesystem and PID namespace (known once ready)."""
        return self.wait_ready()["isolation"]["processes"] == "private"

    def spawn(self, spec: dict, fds: list[int]) -> int:
        """Fork a child with ``spec`` (see child/launcher._become_child) and the request pipe's
        read end, the response pipe's write end and the log file; returns its pid."""
        self.wait_ready()
        socket.send_fds(self.control, [json.dumps(spec).encode()], fds)
        answer = self._receive(timeout=60.0, what="forking a child")
        if "pid" not in answer:
            raise LauncherError(f"the grader's fork server could not start a child: {answer.get('error')}")
        return int(answer["pid"])

    def close(self) -> None:
        self.control.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class ForkedChild:
    """A child forked by the launcher and reparented to this process: its pid, and waiting for
    it as for a subprocess (returncode: the exit status, or -signal).

    namespace_init: the child is the init of a PID namespace, which exits with 128 + n when its
    worker died of signal n (an init cannot die of its own signal).
    """

    def __init__(self, pid: int, *, namespace_init: bool = False):
        self.pid = pid
        self.namespace_init = namespace_init
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # not ours (no subreaper): it is gone once kill(pid, 0) fails
                try:
                    os.kill(self.pid, 0)
                    return None
                except ProcessLookupError:
                    self.returncode = -signal.SIGKILL
                    return self.returncode
            if pid == 0:
                return None
            self._record(status)
        return self.returncode

    def _record(self, status: int) -> None:
        code = os.waitstatus_to_exitcode(status)
        self.returncode = 128 - code if self.namespace_init and 128 < code < 128 + signal.NSIG else code

    def wait(self, timeout: float | None = None) -> int:
        if timeout is None and self.returncode is None:
            try:  # blocking: it has been killed, or is about to exit
                _, status = os.waitpid(self.pid, 0)
                self._record(status)
                return self.returncode
            except ChildProcessError:
                pass  # not ours: poll below
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.001
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(str(self.pid), timeout)
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        return self.returncode


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
    ignored: list[str] = field(init=False, default_factory=list)  # links left out of the upload
    layout: str = field(init=False)
    identity: Identity = field(init=False)
    marker: str = field(init=False)
    launcher: Launcher | None = field(init=False, default=None)
    _launcher_report: dict = field(init=False, default_factory=dict)
    _light: Launcher | None = field(init=False, default=None)  # the fork server without torch
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
        self.root = Path(tempfile.mkdtemp(prefix="autograder-", dir=isolation.runs_folder()))
        if self.identity.separate:  # only this run's slot (its gid) may enter; nobody else may list
            os.chown(self.root, os.geteuid(), self.identity.gid)
            os.chmod(self.root, 0o710)
        try:
            self.work_root = self.root / "work"
            self.files, self.ignored = copy_submission(source, self.work_root / "submission")
            self.runtime_root = self.root / "runtime"
            shutil.copytree(Path(__file__).parent / "child", self.runtime_root / CHILD_PACKAGE,
                            ignore=shutil.ignore_patterns("__pycache__"))
            # Started now: it imports torch and maps the model while tests without the model run
            # on the light fork server (started on first use).
            self.launcher = self._start_launcher(self.model_dir, "")
        except BaseException:
            self.close()
            raise

    def _start_launcher(self, model_dir: Path | None, suffix: str) -> Launcher:
        private_root = None
        if self.identity.separate and os.environ.get(NAMESPACES_ENV, "1") != "0":
            private_root = self.root / f"fs{suffix}"
            private_root.mkdir(mode=0o700)
        return Launcher(runtime_root=self.runtime_root, work_root=self.work_root, model_dir=model_dir,
                        device=self.device, log_path=self.root / f"launcher{suffix}.log", private_root=private_root)

    def launcher_for(self, *, model: bool) -> Launcher:
        """The fork server for a child: the run's model launcher (``launcher``) when the child
        needs the model, the run has none, or it has finished starting; else, while torch is
        still loading there, a light one without torch, which is stopped once the model
        launcher is ready (one fork server less in memory for the rest of the run)."""
        if model or self.model_dir is None or self.launcher.is_ready():
            if self._light is not None and self.model_dir is not None and self.launcher.ready is not None:
                self._light.close()  # its children, if any still run, are not its to keep
                self._light = None
            return self.launcher
        if self._light is None:
            self._light = self._start_launcher(None, "-light")
        return self._light

    def process(self, *, time_limit_s: float, label: str, runs_student_code: bool = True,
                limit_note: str = "", model: bool = True) -> "StudentProcess":
        """A new child for one test (started on its first request).

        runs_student_code=False: a child for grader harnesses only. It runs as the grader's own
        user (with the same limits), not as the sandbox user, so a student process alive at the
        same time cannot ptrace or signal it; its answers can be trusted.
        limit_note: why the time limit is what it is, for the timeout message (e.g. how long the
        reference solution takes).
        model: whether the child needs the model (False: forked from the light fork server).
        """
        self._children += 1
        identity = self.identity if runs_student_code else isolation.Identity(None, None, "grader")
        child = StudentProcess(self, scratch=self.root / f"scratch-{self._children}", time_limit_s=time_limit_s,
                               label=label, identity=identity, limit_note=limit_note,
                               launcher=self.launcher_for(model=model))
        self._live.add(child)
        return child

    @property
    def launcher_report(self) -> dict:
        """What the run's fork server reported at start-up ({} before it was ready)."""
        return dict(self.launcher.ready or {}) if self.launcher is not None else self._launcher_report

    def close(self):
        for child in list(self._live):
            child.close()
        if self.launcher is not None:
            self._launcher_report = dict(self.launcher.ready or {})
            self.launcher.close()
            self.launcher = None
        if self._light is not None:
            self._light.close()
            self._light = None
        if hasattr(self, "root"):
            shutil.rmtree(self.root, ignore_errors=True)
        if not self._released:
            self._released = True
            isolation.release_identity(self.identity)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _peak_rss_mb(pid: int, *, worker: bool) -> float:
    """A child's peak resident memory in MiB (0 if unknown); with worker, that of the namespace
    init's child (the worker that ran the code) rather than the init's own."""
    try:
        if worker:
            with open(f"/proc/{pid}/task/{pid}/children") as handle:
                pid = int(handle.read().split()[0])
        with open(f"/proc/{pid}/status") as handle:
            line = next(line for line in handle if line.startswith("VmHWM:"))
        return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError, StopIteration):
        return 0.0


class StudentProcess:
    """One child process running student code, with one wall-clock budget for all its calls.

    student_seconds: time the child reports spending inside student code (for timing reports
    only: like everything the child says, it is not trusted for grading).
    """

    def __init__(self, sandbox: Sandbox, *, scratch: Path, time_limit_s: float, label: str,
                 identity: Identity | None = None, limit_note: str = "", launcher: Launcher | None = None):
        self.sandbox = sandbox
        self.launcher = launcher or sandbox.launcher
        self.limit_note = limit_note
        self.identity = identity or sandbox.identity
        self.scratch = scratch
        self.time_limit_s = time_limit_s
        self.label = label
        self.log_path = scratch.parent / (scratch.name + ".log")  # the scratch folder is made only if needed
        self.proc: ForkedChild | None = None
        self.deadline: float | None = None
        self.student_seconds = 0.0
        self.peak_rss_mb = 0.0  # the child's peak resident memory (VmHWM), read when it is closed
        self._closed = False
        self._requests: int | None = None
        self._responses: int | None = None
        self._buffer = b""
        self._next_id = 0

    # -- life cycle ------------------------------------------------------------------------
    def _start(self):
        box = self.sandbox
        isolated = self.launcher.isolated
        if isolated:  # a private, size-limited /tmp (see child/launcher.py)
            scratch = "/tmp"
        else:  # a folder of its own on the grader's disk
            self.scratch.mkdir()
            isolation.hand_over(self.scratch, self.identity)
            scratch = str(self.scratch)
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": scratch, "TMPDIR": scratch,
               "LANG": "C.UTF-8", "USER": self.identity.name, "LOGNAME": self.identity.name,
               isolation.MARKER_VARIABLE: box.marker}
        for name in ("CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS"):
            if name in os.environ:
                env[name] = os.environ[name]
        limits = box.limits
        spec = {"env": env, "cwd": scratch, "uid": self.identity.uid, "gid": self.identity.gid,
                "scratch_mb": limits.scratch_mb,
                "limits": {"memory_mb": limits.memory_mb, "file_size_mb": limits.file_size_mb,
                           "open_files": limits.open_files, "processes": limits.processes},
                "cpu_seconds": int(self.time_limit_s * (os.cpu_count() or 1)) + 10,
                "work_root": str(box.work_root), "model_dir": str(box.model_dir or ""), "device": box.device}
        request_read, request_write = os.pipe()
        response_read, response_write = os.pipe()
        log_fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            self.proc = ForkedChild(self.launcher.spawn(spec, [request_read, response_write, log_fd]),
                                    namespace_init=isolated)
        except BaseException:
            os.close(request_write)
            os.close(response_read)
            raise
        finally:
            for fd in (request_read, response_write, log_fd):
                os.close(fd)
        os.set_blocking(request_write, False)  # writes wait in select, within the deadline
        self._requests, self._responses = request_write, response_read
        self.deadline = time.monotonic() + self.time_limit_s  # the budget starts once the child exists

    def close(self):
        """Kill the child and every process it started, wherever it went (see isolation.sweep)."""
        if self.proc is not None and not self._closed:
            self._closed = True
            self.peak_rss_mb = _peak_rss_mb(self.proc.pid, worker=self.proc.namespace_init)
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
            if not siblings and self.identity is box.identity:
                isolation.clean_shared_folders(box.identity)  # without a private /tmp, what it left there
        for name in ("_requests", "_responses"):
            fd = getattr(self, name)
            if fd is not None:
                os.close(fd)
                setattr(self, name, None)

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
            return self._error(message["error"], what=what)
        raise StudentCodeError("protocol", f"the child sent a malformed answer for {what}")

    def _error(self, info: dict, *, what: str) -> StudentCodeError:
        """The StudentCodeError a child's error report stands for. Nothing in it is trusted: an
        unknown kind counts as an exception, and a process that ran student code cannot blame
        the grader (its "internal" errors are reported as its own, with a word to the staff)."""
        kind = str(info.get("kind", "exception"))
        message = str(info.get("message", f"{what} failed"))[:2000]
        if kind not in CHILD_ERROR_KINDS:
            kind = "exception"
        if kind == "internal" and self.identity is self.sandbox.identity:
            kind, message = "exception", (f"the process running your code failed outside your functions during "
                                          f"{what}: {message} (if your code looks right, tell the course staff)")
        return StudentCodeError(kind, message, traceback=str(info.get("traceback", ""))[:8000])

    def _request(self, request: dict, *, what: str):
        if self.proc is None:
            self._start()
        if self._closed:
            raise StudentCodeError("crash", f"the process running your code is gone; {what} cannot run")
        self._next_id += 1
        self._send(codec.encode({"id": self._next_id, **request}), what)
        line = self._read_line(what)
        try:
            message = codec.decode(line)
        except codec.DecodeError as error:
            raise StudentCodeError("protocol", f"the answer to {what} could not be read: {error}") from None
        if type(message) is not dict or message.get("id") != self._next_id:
            self.close()
            raise StudentCodeError("protocol", f"the process running your code answered {what} out of turn "
                                               f"(do not write to file descriptor 3)")
        del message["id"]
        spent = message.pop("time", 0.0)
        if type(spent) is float and 0.0 <= spent < 1e6:
            self.student_seconds += spent
        value = self._unwrap(message, what=what)
        if isinstance(value, StudentCodeError):
            value.output = self.output()
            raise value
        return value

    def _remaining(self, what: str) -> float:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            self.close()
            why = f"; {self.limit_note}" if self.limit_note else ""
            raise StudentCodeError("timeout", f"{what} did not finish within the {self.time_limit_s:.3g} s "
                                              f"this test allows{why} (an infinite loop, or far too slow?)",
                                   output=self.output())
        return remaining

    def _send(self, data: bytes, what: str) -> None:
        """Write a request within the test's deadline: a child that stops reading cannot block
        the grader."""
        view = memoryview(data)
        while view:
            _, writable, _ = select.select([], [self._requests], [], self._remaining(what))
            if not writable:
                continue
            try:
                view = view[os.write(self._requests, view[:1 << 16]):]
            except BlockingIOError:
                continue
            except OSError:  # the child is gone (EPIPE)
                self._raise_exit(what)

    def _read_line(self, what: str) -> bytes:
        while b"\n" not in self._buffer:
            ready, _, _ = select.select([self._responses], [], [], self._remaining(what))
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
