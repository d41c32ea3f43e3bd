"""Running student code in a separate process, and talking to it with plain data only.

The grader's process never imports a submission. ``Sandbox`` makes a private working copy of
the submission (only its ``.py`` files, inside a ``submission`` package) next to a copy of
``autograder/child`` (the child's runtime), and starts the run's fork server (``Launcher``,
``child/launcher.py``): one ``python -I`` that imports numpy and, when the run grades with a
model, torch and the model's mapped weights, once. ``ChildProcess`` (processes.py) has it fork one fresh
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
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import isolation
from .isolation import Identity, Limits
from .registry import builtin_problems
from .processes import CHILD_ERROR_KINDS, ChildProcess, Reply, StudentCodeError  # noqa: F401 (re-exported)
from .uploads import EXPECTED_FILES, SubmissionError, locate_submission  # noqa: F401 (re-exported)
from .uploads import read_upload_file, submission_files

RUNTIME_PACKAGE = "_autograder"  # autograder/child is copied as _autograder.child, problems' harnesses beside it
CHILD_PACKAGE = f"{RUNTIME_PACKAGE}.child"
SUBMISSION_FILE_LIMIT = 200
SUBMISSION_BYTES_LIMIT = 5 << 20
_LAUNCHER_BOOT = (f"import sys; sys.path.append(sys.argv[1]); from {CHILD_PACKAGE}.launcher import main; "
                  f"main(sys.argv[2:])")
LAUNCHER_START_LIMIT_S = 600.0  # importing torch and mapping the model; minutes only on a cold, busy machine


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


def copy_runtime(runtime_root: Path, problems) -> list[str]:
    """Copy the child runtime (autograder/child) to ``runtime_root/_autograder/child`` and each
    problem's child-side modules to ``runtime_root/_autograder/problems/<name>/`` (the layout
    their relative imports expect: nothing else of the grader's side; not its clean modules,
    which student code must not read). Returns their module names, for the fork server to import."""
    package = runtime_root / RUNTIME_PACKAGE
    shutil.copytree(Path(__file__).parent / "child", package / "child", ignore=shutil.ignore_patterns("__pycache__"))
    for folder in (package, package / "problems"):
        folder.mkdir(exist_ok=True)
        (folder / "__init__.py").touch()
    modules = []
    for problem in problems:
        if not (problem.harness_modules or problem.clean_modules):
            continue
        (package / "problems" / problem.name).mkdir()
        (package / "problems" / problem.name / "__init__.py").touch()
        for name, file in problem.harness_files().items():
            shutil.copyfile(file, package / "problems" / problem.name / f"{name}.py")
            modules.append(f"{RUNTIME_PACKAGE}.problems.{problem.name}.{name}")
    return modules


def clean_sources(problems) -> list[list[str]]:
    """[module name, source, file name] of every problem's clean modules (a clean child loads
    them from its first request; see registry.Problem.clean_modules)."""
    return [[f"{RUNTIME_PACKAGE}.problems.{problem.name}.{name}", file.read_text(encoding="utf-8"),
             f"<grader>/problems/{problem.name}/{name}.py"]
            for problem in problems for name, file in problem.clean_files().items()]


THREADS_ENV = "AUTOGRADER_TORCH_THREADS"
NAMESPACES_ENV = "AUTOGRADER_NAMESPACES"  # "0": never give children namespaces (to test the fallback)


def interpreter() -> str:
    """This interpreter's path with its folders' symlinks resolved but not the file's own (a
    venv's ``bin/python`` is a symlink to the base interpreter, and Python finds the venv from the
    path it was started by). The children's private filesystem binds the resolved paths only: a
    child started as ``/link/to/checkout/.venv/bin/python`` would look for its packages under
    ``/link``, which is not there."""
    return os.path.join(os.path.realpath(os.path.dirname(sys.executable)), os.path.basename(sys.executable))


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
                 private_root: Path | None, harness_modules: list[str] = ()):
        """private_root: an empty folder in which the launcher builds the children's private
        filesystem (None: children see the host's, as the grader's user allows).
        harness_modules: the problems' child-side modules (``_autograder.problems.p4.child``), which
        the launcher imports before it forks any child."""
        self.log_path = log_path
        self.ready: dict | None = None
        self._started = time.monotonic()
        devices = [f"/dev/{name}" for name in ("null", "zero", "full", "random", "urandom")]
        if device.startswith("cuda"):
            devices += sorted(str(p) for p in Path("/dev").glob("nvidia*"))
        system = [p for p in ("/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
                  if os.path.isdir(p) and not os.path.islink(p)]
        model_dir = os.path.realpath(model_dir) if model_dir else None  # the private filesystem binds resolved paths
        config = {"model_dir": str(model_dir or ""), "threads": torch_threads(), "private_root": str(private_root or ""),
                  "harness_modules": list(harness_modules),
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
                [interpreter(), "-I", "-B", "-c", _LAUNCHER_BOOT, str(runtime_root), str(theirs.fileno()),
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


@dataclass
class Sandbox:
    """A private working copy of one submission and the child runtime, for one grading run.

    upload: the folder the student's files came in.
    model_dir: the prepared model folder children load (None: no model).
    device: torch device string children use ("cpu", "cuda").
    limits: resource limits of each child.
    problems: the registry's problems whose harnesses children get (None: the built-in ones).
    """

    upload: Path
    model_dir: Path | None = None
    device: str = "cpu"
    limits: Limits = field(default_factory=Limits)
    problems: tuple | None = None
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
    harness_modules: list = field(init=False, default_factory=list)
    clean_sources: list = field(init=False, default_factory=list)  # see clean_sources()
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
            problems = builtin_problems() if self.problems is None else self.problems
            self.harness_modules = copy_runtime(self.runtime_root, problems)
            self.clean_sources = clean_sources(problems)
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
                        device=self.device, log_path=self.root / f"launcher{suffix}.log", private_root=private_root,
                        harness_modules=self.harness_modules)

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
                limit_note: str = "", model: bool = True) -> "ChildProcess":
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
        child = ChildProcess(self, scratch=self.root / f"scratch-{self._children}", time_limit_s=time_limit_s,
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
