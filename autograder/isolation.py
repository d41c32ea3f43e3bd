"""Operating-system isolation of the child process: who it runs as, what it may use, and making
sure nothing it started outlives its test.

As root (Gradescope, CI), the child runs as the unprivileged user ``SANDBOX_USER`` (created by
``setup.sh``; ``nobody`` if missing), in a network namespace of its own (no network), with
resource limits; the grader's own folders are made unreadable to other users, and when a test
ends every process of that user is killed, however it detached (setsid, double fork).
Grading runs that overlap (an instructor grading in parallel) each hold a slot, taken with a
lock file: slot 0 is ``SANDBOX_USER`` itself, slot i > 0 the bare uid ``POOL_BASE + i`` (no
passwd entry needed) in the same group, so one run's sweep never touches another run's child.

Not as root (a student's or instructor's own account), the child runs as the same user, with
the same limits, in its own session; when a test ends its process group, its descendants, and
any orphan reparented to the grader (the grader is a child subreaper) that carries the sandbox's
marker are killed. This guards against accidents, not against an attacker on one's own machine.
"""
from __future__ import annotations

import ctypes
import fcntl
import os
import pwd
import resource
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

SANDBOX_USER = "autograder-student"
FALLBACK_USER = "nobody"
MARKER_VARIABLE = "AUTOGRADER_SANDBOX"  # set in every child's environment, inherited by its children
POOL_BASE = 61000
POOL_SIZE = 256
LOCK_DIR = Path("/tmp/autograder-sandbox-slots")
_PR_SET_CHILD_SUBREAPER = 36


@dataclass(frozen=True)
class Identity:
    """Who the child runs as. uid/gid None: the grader's own user (not root).

    lock_fd: the open, locked slot file that reserves this uid for one grading run (None when
        no slot is held).
    """

    uid: int | None
    gid: int | None
    name: str
    lock_fd: int | None = None

    @property
    def separate(self) -> bool:
        return self.uid is not None


def _sandbox_user() -> pwd.struct_passwd:
    for name in (SANDBOX_USER, FALLBACK_USER):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError(f"running as root, but neither {SANDBOX_USER!r} nor {FALLBACK_USER!r} exists: run setup.sh")


def child_identity() -> Identity:
    """Slot 0's identity (the sandbox user) when root, else the grader's own user; holds no slot."""
    if os.geteuid() != 0:
        return Identity(None, None, pwd.getpwuid(os.geteuid()).pw_name)
    user = _sandbox_user()
    return Identity(user.pw_uid, user.pw_gid, user.pw_name)


def allocate_identity() -> Identity:
    """Reserve a sandbox uid for one grading run (see the module docstring); release it with
    ``release_identity``. Not root: the grader's own user, nothing reserved."""
    if os.geteuid() != 0:
        return child_identity()
    user = _sandbox_user()
    LOCK_DIR.mkdir(mode=0o700, exist_ok=True)
    for slot in range(POOL_SIZE):
        fd = os.open(LOCK_DIR / f"slot-{slot}", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        uid = user.pw_uid if slot == 0 else POOL_BASE + slot
        identity = Identity(uid, user.pw_gid, user.pw_name if slot == 0 else f"{user.pw_name}+{slot}", fd)
        sweep(root_pid=-1, identity=identity, marker="")  # leftovers of a run that died holding the slot
        return identity
    raise RuntimeError(f"all {POOL_SIZE} sandbox slots are in use by other grading runs")


def release_identity(identity: Identity) -> None:
    if identity.lock_fd is not None:
        os.close(identity.lock_fd)  # closing drops the flock


def become_subreaper() -> None:
    """Orphans of the child are reparented to this process rather than init, so they can be found."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _default_memory_mb() -> int | None:
    """AUTOGRADER_CHILD_MEMORY_MB if set (0: unlimited), else 4096."""
    value = int(os.environ.get("AUTOGRADER_CHILD_MEMORY_MB", "4096"))
    return value or None


@dataclass(frozen=True)
class Limits:
    """Resource limits of one child process.

    memory_mb: address-space limit (RLIMIT_AS); None leaves it unlimited (needed with CUDA,
        which reserves far more address space than it uses). Default: the environment variable
        AUTOGRADER_CHILD_MEMORY_MB (0 for unlimited), else 4096.
    file_size_mb: largest file the child may write (stdout's log included).
    open_files: file descriptors the child may hold.
    processes: processes and threads of the sandbox user (RLIMIT_NPROC; only with a separate
        user, since it counts every process of the user).
    """

    memory_mb: int | None = field(default_factory=_default_memory_mb)
    file_size_mb: int = 16
    open_files: int = 256
    processes: int = 512


def make_preexec(identity: Identity, limits: Limits, cpu_seconds: int):
    """The function subprocess runs in a child between fork and exec (children of the fork
    server confine themselves with the same code, child/confine.py)."""
    from .child.confine import confine

    def preexec():
        confine(uid=identity.uid, gid=identity.gid, limits=vars(limits), cpu_seconds=cpu_seconds)
    return preexec


def hand_over(path: Path, identity: Identity) -> None:
    """Give the child's scratch folder to the child's user."""
    if identity.separate:
        os.chown(path, identity.uid, identity.gid)
    os.chmod(path, 0o700)


def protect(paths, identity: Identity) -> None:
    """Make the grader's folders and files unreadable to the sandbox user (owner access only).
    Only the paths given change: never pass a shared folder such as /tmp."""
    if not identity.separate:
        return
    for path in paths:
        path = Path(path)
        if path.exists():
            os.chmod(path, path.stat().st_mode & 0o700)


def _processes():
    """(pid, ppid, uid, zombie) of every process visible in /proc."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status", "rb") as handle:
                fields = dict(line.split(b":", 1) for line in handle.read().splitlines() if b":" in line)
            yield (int(entry), int(fields[b"PPid"]), int(fields[b"Uid"].split()[0]),
                   fields[b"State"].strip().startswith(b"Z"))
        except (OSError, ValueError, KeyError):
            continue


def _carries_marker(pid: int, marker: str) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            return f"{MARKER_VARIABLE}={marker}".encode() in handle.read().split(b"\0")
    except OSError:
        return False


def sweep(*, root_pid: int, identity: Identity, marker: str, whole_user: bool = True, keep: frozenset = frozenset(),
          rounds: int = 50) -> int:
    """Kill the child and everything it started; returns how many processes were killed.

    With a separate user and ``whole_user``: every process of that user. Otherwise: the child's
    descendants, and orphans reparented to this process that carry the sandbox's marker, except
    ``keep`` (the run's other live children, when there are any) and their descendants.
    """
    killed = 0
    me = os.getpid()
    for _ in range(rounds):
        table = list(_processes())
        # Zombies are dead already; those reparented to us are reaped so none is left behind.
        _reap([pid for pid, ppid, _, zombie in table if zombie and ppid == me])
        table = [(pid, ppid, uid) for pid, ppid, uid, zombie in table if not zombie]
        if identity.separate and whole_user:
            targets = {pid for pid, _, uid in table if uid == identity.uid}
        else:
            children = {}
            for pid, ppid, _ in table:
                children.setdefault(ppid, []).append(pid)
            targets, stack = set(), [root_pid] + [p for p in children.get(me, []) if _carries_marker(p, marker)]
            while stack:
                pid = stack.pop()
                if pid not in targets and pid != me and pid not in keep:
                    targets.add(pid)
                    stack.extend(children.get(pid, []))
            alive = {pid for pid, _, _ in table}
            targets &= alive
        targets.discard(me)
        if not targets:
            return killed
        for pid in targets:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except (ProcessLookupError, PermissionError):
                pass
        _reap(targets)
    return killed


def _reap(pids) -> None:
    """Collect killed processes that are (now) our children, so no zombie is left behind."""
    deadline = time.monotonic() + 1.0
    pending = set(pids)
    while pending and time.monotonic() < deadline:
        for pid in list(pending):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:  # not our child: init or its parent reaps it
                pending.discard(pid)
                continue
            if done:
                pending.discard(pid)
        if pending:
            time.sleep(0.01)


def prepare_sandbox_user() -> str:
    """Set-up step for root (run by setup.sh): create ``SANDBOX_USER`` if missing, let it reach
    the Python interpreter and the model folders (an interpreter or checkout under /root, as
    pyenv installs it, sits behind a 0700 folder: their ancestors get o+x, traverse only, no
    listing), and check that it can start the child's Python. Returns a one-line report."""
    import subprocess
    import sys
    if os.geteuid() != 0:
        return (f"sandbox: not root, so student code will run as {pwd.getpwuid(os.geteuid()).pw_name} "
                "(see the README's threat model)")
    try:
        pwd.getpwnam(SANDBOX_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
                        "--shell", "/usr/sbin/nologin", SANDBOX_USER], check=True)
    from .models import models_root  # the model folders children load for P6
    for prefix in {sys.prefix, sys.base_prefix, os.path.realpath(sys.executable), str(models_root())}:
        path = Path(prefix)
        for folder in [path, *path.parents]:
            if folder.is_dir() and not folder.stat().st_mode & 0o001:
                os.chmod(folder, folder.stat().st_mode | 0o001)
    identity = child_identity()
    probe = subprocess.run([sys.executable, "-I", "-B", "-c", "import numpy"], capture_output=True, text=True,
                           preexec_fn=make_preexec(identity, Limits(), 30), cwd="/", timeout=120)
    if probe.returncode != 0:
        raise RuntimeError(f"the sandbox user {identity.name} cannot run {sys.executable}: {probe.stderr.strip()[-500:]}")
    return f"sandbox: student code runs as {identity.name} (uid {identity.uid}), without network"
