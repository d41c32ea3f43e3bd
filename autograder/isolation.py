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
import shutil
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
        # Slot i > 0 is a bare uid and gid of its own: one run's private files (group-readable by
        # its slot's gid) are out of reach of every other run's children.
        uid, gid = (user.pw_uid, user.pw_gid) if slot == 0 else (POOL_BASE + slot, POOL_BASE + slot)
        identity = Identity(uid, gid, user.pw_name if slot == 0 else f"{user.pw_name}+{slot}", fd)
        sweep(root_pid=-1, identity=identity, marker="")  # leftovers of a run that died holding the slot
        if _live_processes_of(uid):  # something of it outlived even that: never reuse the slot
            os.close(fd)
            continue
        clean_shared_folders(identity)
        remove_sysv_ipc(identity)
        return identity
    raise RuntimeError(f"all {POOL_SIZE} sandbox slots are in use by other grading runs (or hold processes "
                       f"that could not be killed)")


def usable_cpus() -> int:
    """The CPUs this process may use: those it may run on (affinity), fewer when a CPU quota
    (cgroup v2's cpu.max or v1's cfs quota, as a container such as Gradescope's sets) allows less;
    at least 1. Used for torch's threads and batch's default number of jobs."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = _cpu_quota()
    return max(1, min(cpus, int(quota)) if quota is not None else cpus)


def _cpu_quota() -> float | None:
    """CPUs' worth of time the cgroup allows per period (None: no quota, or unknown)."""
    try:
        with open("/proc/self/cgroup", encoding="ascii") as handle:
            lines = [line.rstrip("\n").split(":", 2) for line in handle]
    except OSError:
        return None
    for _, controllers, path in lines:
        if controllers == "":  # cgroup v2
            try:
                quota, period = Path(f"/sys/fs/cgroup{path}/cpu.max").read_text().split()
                return None if quota == "max" else int(quota) / int(period)
            except (OSError, ValueError):
                continue
        if "cpu" in controllers.split(","):  # cgroup v1
            base = Path("/sys/fs/cgroup/cpu") / path.lstrip("/")
            try:
                quota = int((base / "cpu.cfs_quota_us").read_text())
                period = int((base / "cpu.cfs_period_us").read_text())
                return None if quota <= 0 else quota / period
            except (OSError, ValueError):
                continue
    return None


RUNS_FOLDER = Path("/run/autograder")  # as root: out of /tmp, which children get a private one of


def runs_folder() -> str | None:
    """Where a grading run's private folder goes: as root, RUNS_FOLDER (owner-only listing),
    so that a child's private /tmp does not hide it and other users cannot list runs; else the
    system's temporary folder (None)."""
    if os.geteuid() != 0:
        return None
    try:
        RUNS_FOLDER.mkdir(mode=0o711, parents=True, exist_ok=True)
        os.chmod(RUNS_FOLDER, 0o711)
        return str(RUNS_FOLDER)
    except OSError:
        return None


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
    scratch_mb: see the field.
    processes: processes and threads of the sandbox user (RLIMIT_NPROC; only with a separate
        user, since it counts every process of the user).
    """

    memory_mb: int | None = field(default_factory=_default_memory_mb)
    file_size_mb: int = 16
    open_files: int = 256
    processes: int = 512
    scratch_mb: int = 64
    """Size of each private /tmp, /var/tmp and /dev/shm, where the child has them (namespaces)."""


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


def protect(paths, identity: Identity) -> list[str]:
    """Make the grader's folders and files unreadable to the sandbox user (owner access only).
    Only the paths given change: never pass a shared folder such as /tmp. Returns the paths
    that could not be changed (a read-only filesystem), with why."""
    if not identity.separate:
        return []
    failed = []
    for path in paths:
        path = Path(path)
        try:
            if path.exists() and path.stat().st_mode & 0o077:
                os.chmod(path, path.stat().st_mode & 0o700)
        except OSError as error:
            failed.append(f"{path} ({error.strerror})")
    return failed


def _threads_alive(pid: int) -> bool:
    """Whether any thread of the process is still running: a thread-group leader that exited
    alone (the raw exit syscall) shows as a zombie while its other threads run on."""
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/stat", "rb") as handle:
                if handle.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X"):
                    return True
    except (OSError, IndexError):
        pass
    return False


def _processes():
    """(pid, ppid, uid, dead) of every process visible in /proc; dead: a zombie whose threads
    have all exited (only waiting to be reaped)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status", "rb") as handle:
                fields = dict(line.split(b":", 1) for line in handle.read().splitlines() if b":" in line)
            zombie = fields[b"State"].strip().startswith(b"Z")
            yield (int(entry), int(fields[b"PPid"]), int(fields[b"Uid"].split()[0]),
                   zombie and not _threads_alive(int(entry)))
        except (OSError, ValueError, KeyError):
            continue


def _live_processes_of(uid: int) -> list[int]:
    return [pid for pid, _, owner, dead in _processes() if owner == uid and not dead]


SHARED_FOLDERS = ("/tmp", "/var/tmp", "/dev/shm")  # world-writable: where a child without a private /tmp writes


def clean_shared_folders(identity: Identity) -> int:
    """Delete what the sandbox user left in the world-writable folders (a child without a
    private /tmp writes there); returns how many entries were removed. Only with a separate
    user, whose files are the sandbox's by definition."""
    if not identity.separate:
        return 0
    removed = 0
    for folder in SHARED_FOLDERS:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.stat(follow_symlinks=False).st_uid != identity.uid:
                    continue
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    os.unlink(entry.path)
                removed += 1
            except OSError:
                continue
    return removed


_IPC_RMID = 0
_SYSV_IPC = ("shm", "msg", "sem")  # /proc/sysvipc's files, and libc's shmctl, msgctl, semctl


def remove_sysv_ipc(identity: Identity) -> int:
    """Remove the SysV shared memory segments, message queues and semaphore sets in this IPC
    namespace that the sandbox user owns or made (an owner may give an object to another uid,
    never change who made it); returns how many were removed. Children without an IPC namespace
    of their own (the fallback) make them here, where they would outlive the test and the
    grading. A segment still attached goes when its last process does (the sweep kills them
    first). Only with a separate user."""
    if not identity.separate:
        return 0
    libc = ctypes.CDLL(None, use_errno=True)
    removed = 0
    for kind in _SYSV_IPC:
        try:
            with open(f"/proc/sysvipc/{kind}", encoding="ascii") as handle:
                header, *rows = [line.split() for line in handle]
        except (OSError, ValueError):
            continue
        remove = getattr(libc, f"{kind}ctl")
        for row in rows:
            fields = dict(zip(header, row))
            try:
                owners = {int(fields["uid"]), int(fields["cuid"])}
                ident = int(fields[{"shm": "shmid", "msg": "msqid", "sem": "semid"}[kind]])
            except (KeyError, ValueError):
                continue
            if identity.uid in owners:
                # semctl's third argument is the semaphore number; shmctl and msgctl take a buffer
                done = remove(ident, 0, _IPC_RMID) if kind == "sem" else remove(ident, _IPC_RMID, None)
                removed += done == 0
    return removed


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
        # Dead zombies are gone already; those reparented to us are reaped so none is left behind.
        # (A zombie leader whose other threads still run is alive: it is killed like the rest.)
        _reap([pid for pid, ppid, _, dead in table if dead and ppid == me])
        table = [(pid, ppid, uid) for pid, ppid, uid, dead in table if not dead]
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


def prepare_sandbox_user(trusted=()) -> str:
    """Set-up step for root (run by setup.sh): create ``SANDBOX_USER`` if missing, let it reach
    the Python interpreter and the model folders (an interpreter or checkout under /root, as
    pyenv installs it, sits behind a 0700 folder: their ancestors get o+x, traverse only, no
    listing), check that it can start the child's Python (in a slot of its own, so a grading
    running at the same time cannot disturb the check), and make the ``trusted`` folders (the
    grader, the reference, the tests) readable by their owner only. Returns a one-line report."""
    import subprocess
    import sys
    if os.geteuid() != 0:
        return (f"sandbox: not root, so student code will run as {pwd.getpwuid(os.geteuid()).pw_name} "
                "(see the README's threat model)")
    try:
        user = pwd.getpwnam(SANDBOX_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
                        "--shell", "/usr/sbin/nologin", SANDBOX_USER], check=True)
        user = pwd.getpwnam(SANDBOX_USER)
    from .models import models_root  # the model folders children load for P6
    for prefix in {sys.prefix, sys.base_prefix, os.path.realpath(sys.executable), str(models_root())}:
        path = Path(prefix)
        for folder in [path, *path.parents]:
            if folder.is_dir() and not folder.stat().st_mode & 0o001:
                os.chmod(folder, folder.stat().st_mode | 0o001)
    identity = allocate_identity()  # a slot of its own: a grading running now must not kill the probe
    try:
        probe = subprocess.run([sys.executable, "-I", "-B", "-c", "import numpy, os; print(os.readlink('/proc/self/ns/net'))"],
                               capture_output=True, text=True, preexec_fn=make_preexec(identity, Limits(), 30),
                               cwd="/", timeout=120)
    finally:
        sweep(root_pid=-1, identity=identity, marker="")
        release_identity(identity)
    if probe.returncode != 0:
        how = (f"was killed by {signal.Signals(-probe.returncode).name}" if probe.returncode < 0
               else f"exited with status {probe.returncode}")
        cause = ("; is every folder above the interpreter traversable (o+x) and the venv readable by others?"
                 if probe.returncode > 0 else "; was another process killing the sandbox user's processes?")
        raise RuntimeError(f"the sandbox user {identity.name} cannot run {sys.executable}: the probe {how}"
                           f"{cause} {probe.stderr.strip()[-500:]}".rstrip())
    unprotected = protect(trusted, Identity(user.pw_uid, user.pw_gid, user.pw_name))
    network = ("without network" if probe.stdout.strip() != os.readlink("/proc/self/ns/net")
               else "WITH network (this system refuses a network namespace)")
    guarded = ("the grader's folders and the course data are readable by their owner only" if not unprotected else
               f"could not make owner-only: {', '.join(unprotected)} (children still cannot see them where the "
               f"system allows namespaces)")
    return f"sandbox: student code runs as {user.pw_name} (a uid per concurrent grading), {network}; {guarded}"
