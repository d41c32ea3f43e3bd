"""Confining a child process before it runs student code: resource limits, no network, and the
sandbox's user. Runs in the child, between fork and the first import of the submission (the
fork server, ``launcher.py``, calls it; so does ``isolation.make_preexec`` for a plain
subprocess).

This module is copied with the child runtime, so it imports only the standard library.
"""
from __future__ import annotations

import ctypes
import os
import re
import resource

CLONE_NEWNET = 0x40000000
_KEYCTL = {"x86_64": 250, "aarch64": 219}.get(os.uname().machine)  # the keyctl syscall's number
_KEYCTL_JOIN_SESSION_KEYRING, _KEYCTL_CLEAR = 1, 7
_KEY_SPEC_USER_KEYRING, _KEY_SPEC_USER_SESSION_KEYRING = -4, -5


def address_space_mb() -> int:
    """The calling process's virtual memory size in MiB (what RLIMIT_AS counts)."""
    with open("/proc/self/statm", "rb") as handle:
        pages = int(handle.read().split()[0])
    return pages * os.sysconf("SC_PAGE_SIZE") >> 20


def confine(*, uid: int | None, gid: int | None, limits: dict, cpu_seconds: int) -> dict:
    """Apply the limits and, when uid is given (the grader is root), leave the network and become
    that user. Returns what took effect: {"network": "isolated" | "shared: <why>"}.

    limits: memory_mb (address space the process may add to what it already maps, e.g. torch
        and the model's weights inherited from the fork server; None: unlimited), file_size_mb,
        open_files, processes (RLIMIT_NPROC: only with a separate uid, since it counts every
        process of the user).
    """
    effect = {"network": "shared: not root"}
    if uid is not None:
        # No network: a fresh network namespace has only a loopback interface, and it is down.
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(CLONE_NEWNET) == 0:
            effect["network"] = "isolated"
        else:
            effect["network"] = f"shared: unshare(CLONE_NEWNET) failed: {os.strerror(ctypes.get_errno())}"
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits["file_size_mb"] << 20,) * 2)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limits["open_files"],) * 2)
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds))
    # No POSIX message queue can be made (each takes bytes of this budget): queues live in the
    # IPC namespace, which the fallback shares with the host, and /dev/mqueue may not be mounted
    # for a sweep to find them.
    resource.setrlimit(resource.RLIMIT_MSGQUEUE, (0, 0))
    if limits.get("memory_mb"):
        resource.setrlimit(resource.RLIMIT_AS, ((address_space_mb() + limits["memory_mb"]) << 20,) * 2)
    if uid is not None:
        resource.setrlimit(resource.RLIMIT_NPROC, (limits["processes"],) * 2)
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
        _fresh_keyrings()
    return effect


def _fresh_keyrings() -> None:
    """Join a new, empty session keyring and empty the user's own keyrings, which the kernel
    keeps per uid (not per namespace) as long as any process of the uid lives: what an earlier
    test's child of the same slot put there is gone. Best effort: a system that refuses keyctl
    (Docker's seccomp profile) has no keyrings to carry anything."""
    if _KEYCTL is None:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall(ctypes.c_long(_KEYCTL), ctypes.c_long(_KEYCTL_JOIN_SESSION_KEYRING), None)
    for keyring in (_KEY_SPEC_USER_KEYRING, _KEY_SPEC_USER_SESSION_KEYRING):
        libc.syscall(ctypes.c_long(_KEYCTL), ctypes.c_long(_KEYCTL_CLEAR), ctypes.c_long(keyring))


# -- namespaces: a private filesystem, a process tree of its own --------------------------------
CLONE_NEWNS = 0x00020000
CLONE_NEWPID = 0x20000000
CLONE_NEWIPC = 0x08000000  # SysV IPC objects and POSIX message queues of its own, gone with it
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
_MS_REMOUNT, _MS_BIND, _MS_REC, _MS_PRIVATE = 0x20, 0x1000, 0x4000, 0x40000
DEVICES = ("null", "zero", "full", "random", "urandom")


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"{what}: {os.strerror(error)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    encode = lambda text: None if text is None else text.encode()  # noqa: E731
    _check(_libc().mount(encode(source), encode(target), encode(fstype), ctypes.c_ulong(flags), encode(data)),
           f"mount {source or fstype} on {target}")


def unshare(flags: int, what: str) -> None:
    _check(_libc().unshare(flags), f"unshare({what})")


_MOUNT_SETATTR = 442  # the same number on x86_64 and aarch64 (Linux 5.12)
_AT_FDCWD, _AT_RECURSIVE = -100, 0x8000
_MOUNT_ATTR_RDONLY, _MOUNT_ATTR_NOSUID, _MOUNT_ATTR_NODEV = 0x1, 0x2, 0x4


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64), ("propagation", ctypes.c_uint64),
                ("userns_fd", ctypes.c_uint64)]


def _bind(path: str, target: str, *, writable: bool = False) -> None:
    """Bind ``path`` at ``target`` with the mounts under it; read-only (and nosuid, nodev) unless
    writable, the mounts under it included (/sys/fs/cgroup under /sys, Docker's /etc/hosts under
    /etc): a remount changes one mount only."""
    if os.path.isdir(path):
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        open(target, "a").close()
    _mount(path, target, None, _MS_BIND | _MS_REC)
    if writable:
        _mount(None, target, None, _MS_REMOUNT | _MS_BIND | _MS_NOSUID | (0 if path.startswith("/dev/") else _MS_NODEV))
        return
    attr = _MountAttr(attr_set=_MOUNT_ATTR_RDONLY | _MOUNT_ATTR_NOSUID | _MOUNT_ATTR_NODEV)
    done = _libc().syscall(ctypes.c_long(_MOUNT_SETATTR), ctypes.c_int(_AT_FDCWD), target.encode(),
                           ctypes.c_uint(_AT_RECURSIVE), ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)))
    if done != 0:  # a kernel before 5.12: each mount of the tree, parents first
        for point, noexec in mounts_under(target):
            _mount(None, point, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | _MS_NOSUID | _MS_NODEV | noexec)


def mounts_under(target: str) -> list[tuple[str, int]]:
    """The mount points at or under ``target`` in this mount namespace, parents first, each with
    _MS_NOEXEC if it has it (so a remount keeps it)."""
    found = []
    with open("/proc/self/mountinfo", "rb") as handle:
        for line in handle:
            fields = line.split()
            # mountinfo escapes space, tab, newline and backslash as \ooo
            point = re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m.group(1), 8)]), fields[4]).decode()
            if point == target or point.startswith(target.rstrip("/") + "/"):
                found.append((point, _MS_NOEXEC if b"noexec" in fields[5].split(b",") else 0))
    return sorted(found, key=lambda item: item[0].count("/"))


def private_root(new_root: str, *, read_only: list[str], devices: list[str]) -> None:
    """Make a new mount namespace whose root (chroot) is ``new_root``, an empty folder, holding
    only: the ``read_only`` paths (bound read-only at the same paths), the ``devices`` (paths
    under /dev), a fresh /proc, /sys read-only, and empty /tmp, /var/tmp and /dev/shm (each child
    mounts a private, size-limited filesystem on them). Everything else of the host's files
    (the grader's tree, the reference's answers, the course's data, other gradings' copies) is
    absent. Needs CAP_SYS_ADMIN (root outside a restricted container); raises OSError otherwise.
    """
    unshare(CLONE_NEWNS, "CLONE_NEWNS")
    _mount(None, "/", None, _MS_REC | _MS_PRIVATE)  # nothing mounted here reaches the host
    _mount("tmpfs", new_root, "tmpfs", _MS_NOSUID | _MS_NODEV, "size=4m,mode=0755")
    for entry in os.scandir("/"):  # merged-/usr systems: /bin -> usr/bin and the like
        if entry.is_symlink():
            os.symlink(os.readlink(entry.path), os.path.join(new_root, entry.name))
    for path in sorted({os.path.realpath(p) for p in read_only if os.path.exists(p)}, key=len):
        _bind(path, new_root + path)
    os.makedirs(new_root + "/dev/shm", exist_ok=True)
    for device in devices:
        if os.path.exists(device):
            _bind(device, new_root + device, writable=True)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"{new_root}/dev/{name}")
    os.makedirs(new_root + "/proc", exist_ok=True)
    _mount("proc", new_root + "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
    if os.path.isdir("/sys"):
        _bind("/sys", new_root + "/sys")
    for folder in ("/tmp", "/var/tmp"):
        os.makedirs(new_root + folder, exist_ok=True)
        os.chmod(new_root + folder, 0o1777)
    _mount(None, new_root, None, _MS_REMOUNT | _MS_NOSUID | _MS_NODEV | _MS_RDONLY)  # the skeleton itself
    os.chroot(new_root)
    os.chdir("/")


def private_scratch(*, size_mb: int, new_proc: bool) -> None:
    """In a new mount namespace of the calling process (inside private_root's): empty,
    size-limited /tmp, /var/tmp and /dev/shm of its own, and, in a new PID namespace
    (new_proc), a /proc that shows only that namespace's processes."""
    unshare(CLONE_NEWNS, "CLONE_NEWNS")
    _mount(None, "/", None, _MS_REC | _MS_PRIVATE)
    for folder in ("/tmp", "/var/tmp", "/dev/shm"):
        _mount("tmpfs", folder, "tmpfs", _MS_NOSUID | _MS_NODEV, f"size={size_mb}m,mode=1777")
    if new_proc:
        _mount("proc", "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
