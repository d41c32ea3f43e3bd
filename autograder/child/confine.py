"""Confining a child process before it runs student code: resource limits, no network, and the
sandbox's user. Runs in the child, between fork and the first import of the submission (the
fork server, ``launcher.py``, calls it; so does ``isolation.make_preexec`` for a plain
subprocess).

This module is copied with the child runtime, so it imports only the standard library.
"""
from __future__ import annotations

import ctypes
import os
import resource

CLONE_NEWNET = 0x40000000


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
    if limits.get("memory_mb"):
        resource.setrlimit(resource.RLIMIT_AS, ((address_space_mb() + limits["memory_mb"]) << 20,) * 2)
    if uid is not None:
        resource.setrlimit(resource.RLIMIT_NPROC, (limits["processes"],) * 2)
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
    return effect
