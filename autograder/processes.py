"""The grader's side of one child process: requests out, typed replies back, one time budget.

``ChildProcess`` is what ``Sandbox.process`` hands out (see sandbox.py for how children are
forked and confined). It sends ``codec`` requests and reads one answer per request; every
answer, and every per-item answer a ``map`` or a harness passes on, is decoded in one place
(``Reply.decode``) into a value or a ``StudentCodeError`` whose message a student can act on.
"""
from __future__ import annotations

import os
import select
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from . import isolation
from .child import codec
from .isolation import Identity

OUTPUT_LIMIT = 4096        # bytes of a child's stdout/stderr kept for feedback
RESPONSE_LIMIT = 256 << 20  # bytes of one response line


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


@dataclass(frozen=True)
class Reply:
    """One answer of a child, decoded: exactly one of ``value`` (``ok``), ``error`` (the call
    failed; a StudentCodeError), or ``unsupported`` (a harness could not pass the value on:
    {"got": its repr, "type": its description}).

    The child answers a request with {"ok": value} or {"error": info}; a ``map``'s items and a
    harness's per-item answers are {"ok"|"value": value}, {"error": info} or {"unsupported": {...}}.
    ``decode`` is the one place these are read. Nothing in them is trusted: an unknown error kind
    counts as an exception, and an "internal" error (a fault on the grader's side of the child) is
    believed only from a child that never ran student code (``trusted``).
    """

    value: object = None
    error: StudentCodeError | None = None
    unsupported: dict | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.unsupported is None

    @classmethod
    def decode(cls, entry, *, what: str, trusted: bool = False, instance: str = "") -> "Reply":
        """``entry`` as a Reply; StudentCodeError("protocol") for anything else.
        what: the call, for messages; instance: prefixed to an error's message ("On …: …")."""
        if type(entry) is not dict or len(entry) != 1:
            raise StudentCodeError("protocol", f"the child sent a malformed answer for {what}")
        (key, content), = entry.items()
        if key in ("ok", "value"):
            return cls(value=content)
        if key == "unsupported" and type(content) is dict:
            return cls(unsupported={"got": str(content.get("got", "?")), "type": str(content.get("type", "?"))})
        if key == "error" and type(content) is dict:
            return cls(error=_error_of(content, what=what, trusted=trusted, instance=instance))
        raise StudentCodeError("protocol", f"the child sent a malformed answer for {what}")

    def unwrap(self):
        """The value; raises the error, or a "bad_return" StudentCodeError for an unsupported value."""
        if self.error is not None:
            raise self.error
        if self.unsupported is not None:
            raise StudentCodeError("bad_return", f"returned {self.unsupported['got']} ({self.unsupported['type']})")
        return self.value


def _error_of(info: dict, *, what: str, trusted: bool, instance: str = "") -> StudentCodeError:
    """The StudentCodeError a child's error report stands for (see Reply)."""
    kind = str(info.get("kind", "exception"))
    message = str(info.get("message", f"{what} failed"))[:2000]
    if kind not in CHILD_ERROR_KINDS:
        kind = "exception"
    if kind == "internal" and not trusted:
        kind, message = "exception", (f"the process running your code failed outside your functions during "
                                      f"{what}: {message} (if your code looks right, tell the course staff)")
    if instance:
        message = f"On {instance}: {message}"
    return StudentCodeError(kind, message, traceback=str(info.get("traceback", ""))[:8000])


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


class ChildProcess:
    """One child process, with one wall-clock budget for all its calls: a student child (runs
    student code as the sandbox's user), or a clean one (runs only grader harnesses, as the
    grader's user: the reference's outputs, replays of a student's tokens).

    student_seconds: time the child reports spending inside student code (for timing reports
    only: like everything the child says, it is not trusted for grading).
    """

    def __init__(self, sandbox, *, scratch: Path, time_limit_s: float, label: str,
                 identity: Identity | None = None, limit_note: str = "", launcher=None):
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
                isolation.remove_sysv_ipc(box.identity)  # without an IPC namespace, its SysV objects
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
        replies = [self.reply(item, what=f"{function}()") for item in results]
        return [reply.value if reply.error is None else reply.error for reply in replies]

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

    def reply(self, entry, *, what: str, instance: str = "") -> Reply:
        """A per-item answer of this child (a map's item, a harness's {"value"|"error"|...}) as a
        Reply; its "internal" errors are believed only if this child never ran student code."""
        return Reply.decode(entry, what=what, trusted=self.identity is not self.sandbox.identity, instance=instance)

    def _request(self, request: dict, *, what: str):
        if self.proc is None:
            self._start()
            if self.identity is not self.sandbox.identity and self.sandbox.clean_sources:  # a clean child
                self._request({"op": "load", "modules": self.sandbox.clean_sources}, what="the grader's harnesses")
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
        reply = self.reply(message, what=what)
        if reply.error is not None:
            reply.error.output = self.output()
            raise reply.error
        return reply.value

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
