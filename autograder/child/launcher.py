"""The fork server of one grading run: imports once, forks a fresh child per graded test.

A fresh process per test is what keeps one test's crash or leftover state from reaching the
next; a fresh Python that imports torch (~2.5 s) and loads GPT-2 small (500 MB) per test is
what made grading at the real size slow. So the grader starts this launcher once per run
(``sandbox.Launcher``). It imports numpy, the child runtime and, when the run grades with a
model, torch and the model, whose weights are mapped copy-on-write from the file
(``course_model.map_safetensors``): every child forked from here shares those pages. Then, for
each request of the grader, it forks a child that confines itself (``confine.confine``: limits,
no network, the sandbox's user) and only then serves requests and imports student code
(``main.serve``). The launcher itself never imports or runs student code, and never computes
with torch (set to one thread before anything): GNU OpenMP's thread pool does not survive a
fork, so a launcher that had run a parallel operation would hang its children.

Isolation (as root, where the system allows namespaces; see README's threat model): before
anything else the launcher enters a mount namespace whose root holds only what children may
read (``confine.private_root``: the interpreter and its packages, the child runtime, the
submission's private copy, the model's folder, system libraries and /etc). Each child is then
the first process (an init, ``_init``) of a PID namespace of its own, with private, size-limited
/tmp, /var/tmp and /dev/shm: it forks the worker that runs student code, reaps every process of
the namespace, and exits with the worker's status (128 + n for signal n, which the grader
decodes); when it exits, the kernel kills whatever else the namespace holds, however it
detached. Where namespaces are refused (a container without CAP_SYS_ADMIN, or not root), the
child is forked directly and the grader's sweep (isolation.sweep) does that work.

Protocol on the control socket (AF_UNIX, SOCK_SEQPACKET, one JSON message per packet):
- launcher -> grader, once after start-up: {"ready": {"torch_s", "model_s", "address_space_mb",
  "isolation": {"filesystem": "private" | "shared: why", "processes": "private" | "shared"}}}
  or {"error": "..."} when the preload failed;
- grader -> launcher: a spawn spec (see ``_become_child``) with three descriptors attached
  (SCM_RIGHTS): the child's request pipe (read end), response pipe (write end) and log file;
- launcher -> grader: {"pid": the child's pid} or {"error": "..."}.
The child is forked through an intermediate process that exits at once, so the child is
reparented to the grader (a child subreaper): the grader waits for it, signals it and reads its
exit status as for any child of its own. The launcher exits when the control socket closes.

This module is copied with the child runtime (``_autograder.child``), so it imports only the
standard library, numpy, torch, its sibling modules and the problems' child-side modules
(``_autograder.problems.<problem>.<module>``, named in the config).
"""
from __future__ import annotations

import ctypes
import fcntl
import json
import os
import resource
import signal
import socket
import sys
import time
import traceback

from . import confine

_PR_SET_PDEATHSIG = 1
_MAX_MESSAGE = 1 << 16


class Preload:
    """What every child inherits: modules imported, and the model mapped on the CPU."""

    def __init__(self, model_dir: str | None, *, threads: int | None = None, harness_modules=()):
        """threads: torch's intra-op threads in each child (None: torch's default, one per core).
        harness_modules: the problems' child-side modules, imported here once (they register
        their harnesses), so that no child imports them."""
        start = time.perf_counter()
        import importlib

        import numpy  # noqa: F401  (every child needs it)
        from . import codec, harness, main  # noqa: F401
        for name in harness_modules:
            importlib.import_module(name)
        self.model = None
        self.threads = None
        self.torch_s = self.model_s = 0.0
        if model_dir:
            import torch
            self.threads = threads or torch.get_num_threads()
            torch.set_num_threads(1)  # no OpenMP pool in the launcher: see the module docstring
            self.torch_s = time.perf_counter() - start
            from .course_model import load_course_model
            loaded = time.perf_counter()
            self.model = load_course_model(model_dir, remember_bytes=main.MEMO_BYTES)
            self.model_s = time.perf_counter() - loaded

    def report(self, isolation: dict) -> dict:
        return {"torch_s": round(self.torch_s, 3), "model_s": round(self.model_s, 3),
                "address_space_mb": confine.address_space_mb(), "isolation": isolation}


def _become_child(spec: dict, fds: list[int], control: socket.socket, preload: Preload, *,
                  new_session: bool = True) -> None:
    """In the forked child: take the descriptors, confine, serve; never returns.

    spec: env (the child's whole environment), cwd (its scratch folder), uid/gid (None: stay the
    grader's user), limits and cpu_seconds (confine.confine), work_root (holding the
    ``submission`` package), model_dir, device, scratch_mb (size of a private /tmp).
    """
    try:
        control.detach()  # its descriptor is closed below with the rest
        if new_session:
            os.setsid()
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 64) for fd in fds]  # out of the way of 0..3
        requests, responses, log = high
        os.dup2(requests, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.dup2(responses, 3)
        os.closerange(4, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        os.chdir(spec["cwd"])
        os.environ.clear()
        os.environ.update(spec["env"])
        sys.argv = ["-c"]
        confine.confine(uid=spec["uid"], gid=spec["gid"], limits=spec["limits"], cpu_seconds=spec["cpu_seconds"])
        if preload.threads is not None:
            import torch
            torch.set_num_threads(preload.threads)
        from .main import serve
        serve(work_root=spec["work_root"], model_dir=spec["model_dir"], device=spec["device"], response_fd=3,
              preloaded=preload.model)
    except BaseException:
        try:
            os.write(2, traceback.format_exc().encode()[-4000:])
        finally:
            os._exit(70)
    os._exit(0)


def _init(spec: dict, fds: list[int], control: socket.socket, preload: Preload) -> None:
    """The first process of the child's PID namespace: private /tmp and /proc, then the worker
    that runs student code; reaps the namespace's processes until the worker exits, and exits
    with its status (128 + n for signal n: an init cannot die of its own signal). Never returns."""
    try:
        control.detach()
        os.setsid()
        confine.private_scratch(size_mb=spec["scratch_mb"], new_proc=True)
        worker = os.fork()
        if worker == 0:
            _become_child(spec, fds, control, preload, new_session=False)
        os.closerange(0, resource.getrlimit(resource.RLIMIT_NOFILE)[0])  # EOFs reach the grader with the worker's end
        while True:
            pid, status = os.wait()
            if pid == worker:
                break
        code = os.waitstatus_to_exitcode(status)
        os._exit(code if code >= 0 else 128 - code)
    except BaseException:
        try:
            os.write(2, traceback.format_exc().encode()[-4000:])
        finally:
            os._exit(71)


def _spawn(spec: dict, fds: list[int], control: socket.socket, preload: Preload, *, isolated: bool) -> int:
    """Fork the child through an intermediate that exits at once; returns the child's pid.
    isolated: the child is the init of a new PID namespace and IPC namespace (see _init)."""
    read_end, write_end = os.pipe()
    intermediate = os.fork()
    if intermediate == 0:
        try:
            os.close(read_end)
            if isolated:
                # the child's SysV IPC objects and POSIX queues die with it, unseen by any other
                confine.unshare(confine.CLONE_NEWPID | confine.CLONE_NEWIPC, "CLONE_NEWPID | CLONE_NEWIPC")
            pid = os.fork()
            if pid == 0:
                os.close(write_end)
                (_init if isolated else _become_child)(spec, fds, control, preload)
            os.write(write_end, str(pid).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    os.waitpid(intermediate, 0)  # once it is gone, the child has been reparented
    with os.fdopen(read_end, "rb") as pipe:
        text = pipe.read(32)
    if not text:
        raise RuntimeError("the intermediate process could not fork the child")
    return int(text)


def _isolate(config: dict) -> dict:
    """Enter the private root if asked and allowed; says what took effect."""
    if not config.get("private_root"):
        return {"filesystem": "shared: not root", "processes": "shared"}
    try:
        confine.private_root(config["private_root"], read_only=config["read_only"], devices=config["devices"])
    except OSError as error:
        return {"filesystem": f"shared: {error}", "processes": "shared"}
    return {"filesystem": "private", "processes": "private"}


def main(argv: list[str]) -> None:
    """argv: control_fd, then a JSON object: model_dir, threads (torch's threads per child, or
    null), private_root (a folder to build the private root in, or "" for none), read_only and
    devices (what it holds), harness_modules (the problems' child-side modules to import). Serves
    spawn requests until the control socket closes."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    control = socket.socket(fileno=int(argv[0]))
    config = json.loads(argv[1])
    try:
        isolation = _isolate(config)
        preload = Preload(config.get("model_dir") or None, threads=config.get("threads"),
                          harness_modules=config.get("harness_modules", ()))
        control.send(json.dumps({"ready": preload.report(isolation)}).encode())
    except BaseException as error:
        control.send(json.dumps({"error": f"{type(error).__name__}: {error}"}).encode()[:_MAX_MESSAGE])
        raise
    isolated = isolation["processes"] == "private"
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(control, _MAX_MESSAGE, 8)
        except OSError:
            return
        if not message:
            return
        try:
            reply = {"pid": _spawn(json.loads(message), fds, control, preload, isolated=isolated)}
        except Exception as error:
            reply = {"error": f"{type(error).__name__}: {error}"}
        finally:
            for fd in fds:
                os.close(fd)
        control.send(json.dumps(reply).encode())
