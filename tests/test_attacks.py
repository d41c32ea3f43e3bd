"""The attack suite: hostile submissions must not break, fool or outlive the grader.

Each case is the reference submission with one attack placed in P3's ``full_joint`` (part
p3a), or at the import of its module (then all of P3 is attacked). The attacked function only
returns a right answer if the attack succeeds, so a leak shows up as points. Each case is graded
on the attacked problem alone: P3's rubric tests (and P2's where all of P3 is attacked, so that
some part is left to keep its marks). For every case: a valid results.json with a row for every
rubric test, no points for the attacked part, full marks for every other part (p3b and p3c run
the attacked module too, in children of their own), the grader's files unchanged, no process
of the child left behind (nor a SysV IPC object or POSIX message queue on the host), and a
bounded wall time.

Where the system gives children namespaces, each case runs with them ("namespaces"); the cases
in FALLBACK (those whose defence differs without namespaces: the filesystem, processes,
daemons, the disk, the network, SysV IPC, keyrings) run a second time with
AUTOGRADER_NAMESPACES=0, the fallback a system without namespaces gets (a separate user,
permissions, sweeps).

Run it alone with ``.venv/bin/python -m pytest tests/test_attacks.py``. As root (Gradescope,
CI) it exercises the full sandbox (separate user, no network); cases that only root can defend
against are skipped otherwise.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
import yaml

from autograder import isolation
from autograder.models import models_root
from autograder.rubric import DEFAULT_RUBRIC
from autograder.sandbox import NAMESPACES_ENV, Sandbox
from conftest import COURSE_DATA, REPO, make_submission, rubric_of_parts
from gradescope_schema import validate_results

ROOT = os.geteuid() == 0
P3 = ("p3a", "p3b", "p3c")
# The rubric each kind of case is graded on (parts, or single test ids), and the parts that lose.
# The attacked part is graded on its public test alone: its random test would run the same
# attacked function a second time and, for the attacks that hang, wait out the limit again.
# "tests": the attacked part on both its tests, each in a child of its own (attacks that carry
# something from one test's child to the next).
GRADED = {"call": ("p3a_public", "p3b", "p3c"), "tests": ("p3a", "p3b", "p3c"), "import": ("p3a_public", "p3b", "p3c", "p2"),
          "everything": ("p3a_public", "p3b", "p3c", "p2")}
ATTACKED = {"call": {"p3a"}, "tests": {"p3a"}, "import": set(P3), "everything": {*P3, "p2"}}
RAW_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # never in results.json's text (results.printable)
TIME_LIMIT_S = 4  # per test in this suite's rubric (the reference's P3 and P2 tests take well under 0.5 s)
WALL_LIMIT_S = 90

CORRECT_REST = """
from math import prod
def independent(k): return sum(x - 1 for x in k)
def markov(k, m):
    return prod(k[:m]) - 1 + sum((k[i] - 1) * prod(k[i - m:i]) for i in range(m, len(k)))
"""
RIGHT_FULL_JOINT = "from math import prod\ndef full_joint(k): return prod(k) - 1\n"
# SysV IPC through libc (no braces: the attacks' sources go through str.format).
SYSV_IPC = """
import ctypes, math, os, struct
libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
libc.shmat.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_int)
IPC_CREAT, IPC_NOWAIT, FAILED = 0o1000, 0o4000, ctypes.c_void_p(-1).value
"""


def in_full_joint(body: str, *, prelude: str = "") -> str:
    """A P3 module whose full_joint runs ``body`` (indented into the function)."""
    indented = "\n".join("    " + line for line in body.strip("\n").splitlines())
    return f"{prelude}\n{CORRECT_REST}\ndef full_joint(k):\n{indented}\n"


ATTACKS = {
    # -- ending or hanging the process ----------------------------------------------------
    "exit_at_import": ({"p3_param_counts.py": "import os\nos._exit(0)\n" + CORRECT_REST + RIGHT_FULL_JOINT}, "import"),
    "sys_exit_in_call": ({"p3_param_counts.py": in_full_joint("import sys\nsys.exit(0)")}, "call"),
    "os_exit_in_call": ({"p3_param_counts.py": in_full_joint("import os\nos._exit(0)")}, "call"),
    "keyboard_interrupt": ({"p3_param_counts.py": in_full_joint("raise KeyboardInterrupt")}, "call"),
    "system_exit": ({"p3_param_counts.py": in_full_joint("raise SystemExit(0)")}, "call"),
    "base_exception": ({"p3_param_counts.py": in_full_joint("class Escape(BaseException): pass\nraise Escape()")}, "call"),
    "infinite_loop": ({"p3_param_counts.py": in_full_joint("while True:\n    pass")}, "call"),
    "ignored_signals": ({"p3_param_counts.py": in_full_joint(
        "import signal, time\nfor s in (signal.SIGTERM, signal.SIGINT, signal.SIGALRM, signal.SIGHUP, signal.SIGXCPU):\n"
        "    signal.signal(s, signal.SIG_IGN)\nwhile True:\n    time.sleep(0.01)")}, "call"),
    "memory_bomb": ({"p3_param_counts.py": in_full_joint("hog = []\nwhile True:\n    hog.append(bytearray(1 << 26))")}, "call"),
    "fork_bomb": ({"p3_param_counts.py": in_full_joint(
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass")}, "call"),
    "runaway_recursion": ({"p3_param_counts.py": in_full_joint(
        "import sys\nsys.setrecursionlimit(10**8)\ndef deeper(n): return deeper(n + 1) + 1\nreturn deeper(0)")}, "call"),
    "kill_the_grader": ({"p3_param_counts.py": in_full_joint(
        "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nreturn 0")}, "call"),
    # -- fooling the comparison -----------------------------------------------------------
    "lying_eq": ({"p3_param_counts.py": in_full_joint(
        "class Always(int):\n    def __eq__(self, other): return True\n    def __ne__(self, other): return False\n"
        "    __hash__ = int.__hash__\nreturn Always(0)")}, "call"),
    "numpy_subclass": ({"p3_param_counts.py": in_full_joint(
        "import numpy as np\nclass Any(np.ndarray):\n    def __eq__(self, other): return True\n"
        "return np.zeros(()).view(Any)")}, "call"),
    "patch_comparisons": ({"p3_param_counts.py": in_full_joint(
        "import math, operator, numpy as np\nnp.array_equal = np.allclose = lambda *a, **k: True\n"
        "np.testing.assert_allclose = lambda *a, **k: None\nmath.isclose = lambda *a, **k: True\n"
        "operator.eq = lambda a, b: True\nreturn -1")}, "call"),
    "patch_torch_comparisons": ({"p3_param_counts.py": in_full_joint(
        "import torch\ntorch.equal = torch.allclose = lambda *a, **k: True\ntorch.testing.assert_close = lambda *a, **k: None\n"
        "return -1")}, "call"),
    "huge_return": ({"p3_param_counts.py": in_full_joint("return [0] * 50_000_000")}, "call"),
    "bool_for_int": ({"p3_param_counts.py": in_full_joint("return True")}, "call"),
    # -- rewriting what staff read: escapes that move the cursor and erase lines of the table --
    "terminal_escapes": ({"p3_param_counts.py": in_full_joint(
        "print('\\x1b[2J\\x1b[H\\rp3a  passed\\x08\\x07')\n"
        "raise RuntimeError('\\x1b[1A\\x1b[2K\\rp3a  full joint  0.5/0.5  passed\\x08\\x07\\x9b')")}, "call"),
    # -- reaching the grader's files and results ------------------------------------------
    "read_reference": ({"p3_param_counts.py": in_full_joint(
        "import runpy\nref = runpy.run_path({reference!r})\nreturn ref['full_joint'](k)")}, "call"),
    "import_reference": ({"p3_param_counts.py": in_full_joint(
        "import sys\nsys.path.insert(0, {repo!r})\nfrom reference.submission.p3_param_counts import full_joint as f\n"
        "return f(k)")}, "call"),
    "append_to_grader_files": ({"p3_param_counts.py": in_full_joint(
        "for path in ({rubric!r}, {checks!r}):\n    try:\n        open(path, 'a').write('\\n# pwned\\n')\n"
        "    except OSError:\n        pass\nreturn -1")}, "call"),
    "fake_results_files": ({"p3_param_counts.py": in_full_joint(
        "import os, json\nfake = json.dumps({{'score': 1000, 'tests': []}})\n"
        "for path in ({results!r}, 'results.json', '/tmp/results.json', os.path.expanduser('~/results.json'),\n"
        "             '/autograder/results/results.json'):\n    try:\n        open(path, 'w').write(fake)\n"
        "    except OSError:\n        pass\nreturn -1")}, "call"),
    "daemon_rewrites_results": ({"p3_param_counts.py": in_full_joint(
        "import os, time, json\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
        "        for _ in range(100):\n            time.sleep(0.1)\n            try:\n"
        "                open({results!r}, 'w').write(json.dumps({{'score': 1000}}))\n"
        "            except OSError:\n                pass\n        os._exit(0)\n    os._exit(0)\nreturn -1")}, "call"),
    "flood_output": ({"p3_param_counts.py": in_full_joint(
        "import sys\nfor _ in range(200):\n    sys.stdout.write('x' * (1 << 20))\n    sys.stderr.write('y' * 1000)\n"
        "return -1")}, "call"),
    "print_fake_results": ({"p3_param_counts.py": in_full_joint(
        "import json\nprint(json.dumps({{'score': 1000, 'tests': [{{'name': '[p3a] x', 'score': 1000, "
        "'max_score': 1, 'status': 'passed'}}]}}))\nreturn -1")}, "call"),
    # the clean children's harnesses hold the reference's formulas (P6's log-likelihood, horizon-2
    # scaling): neither imported where student code runs, nor in its runtime
    "reach_clean_harnesses": ({"p3_param_counts.py": in_full_joint(
        "import math, os, sys\nimport _autograder\nfrom _autograder.child import harness\n"
        "found = [m for m in sys.modules if m.endswith(('child_clean', 'child_reference'))]\n"
        "found += [n for n in harness._REGISTRY if n in ('p6_horizon_two_variants', 'p6_log_likelihood_variants', "
        "'p6_reference_texts')]\n"
        "for folder, _, names in os.walk(os.path.dirname(_autograder.__file__)):\n"
        "    found += [n for n in names if n.startswith(('child_clean', 'child_reference'))]\n"
        "return math.prod(k) - 1 if found else -1")}, "call"),
    "read_reference_cache": ({"p3_param_counts.py": in_full_joint(
        "import glob, math\nfor path in glob.glob({cache!r} + '/*.json'):\n        try:\n"
        "            open(path, 'rb').read(1)\n            return math.prod(k) - 1\n        except OSError:\n"
        "            pass\nreturn -1")}, "call"),
    "read_course_data": ({"p3_param_counts.py": in_full_joint(
        "import glob, math\nfor path in glob.glob({data!r} + '/*.pkl'):\n        try:\n"
        "            open(path, 'rb').read(1)\n            return math.prod(k) - 1\n        except OSError:\n"
        "            pass\nreturn -1")}, "call"),
    "read_other_runs_copy": ({"p3_param_counts.py": in_full_joint(
        "try:\n    found = {{}}\n    exec(open({other!r}).read(), found)\n    return found['full_joint'](k)\n"
        "except OSError:\n    return -1")}, "call"),
    "zombie_leader_daemon": ({"p3_param_counts.py": in_full_joint(
        "import ctypes, json, os, threading, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
        "        def strike():\n            for _ in range(100):\n                time.sleep(0.1)\n                try:\n"
        "                    open({results!r}, 'w').write(json.dumps({{'score': 1000}}))\n"
        "                except OSError:\n                    pass\n"
        "        threading.Thread(target=strike).start()\n"
        "        ctypes.CDLL(None).syscall({sys_exit}, 0)  # the leader thread exits alone; the other runs on\n"
        "    os._exit(0)\nreturn -1")}, "call"),
    "fill_the_disk": ({"p3_param_counts.py": in_full_joint(
        "import os\nblock = b'x' * (1 << 20)\nfor folder in ('/tmp', '/dev/shm', '/var/tmp', os.getcwd()):\n"
        "    for i in range(64):\n        try:\n            with open(os.path.join(folder, f'fill-{{os.getpid()}}-{{i}}'), 'wb') as f:\n"
        "                for _ in range(15):\n                    f.write(block)\n        except OSError:\n            break\n"
        "return -1")}, "call"),
    # -- carrying data past the test: SysV IPC, mounts ------------------------------------------
    "sysv_ipc_between_tests": ({"p3_param_counts.py": in_full_joint(
        # An earlier child's shared memory segment, message or semaphore set (an object with the
        # key that this child did not make) is the leak; else this child leaves its own.
        "found = False\nshm = libc.shmget(KEY, 4096, 0)\nif shm >= 0 and 'shm' not in MADE:\n"
        "    address = libc.shmat(shm, None, 0)\n    found |= address not in (None, FAILED) and ctypes.string_at(address, 5) == b'left:'\n"
        "elif shm < 0 and libc.shmget(KEY, 4096, IPC_CREAT | 0o666) >= 0:\n    MADE.append('shm')\n"
        "    address = libc.shmat(libc.shmget(KEY, 4096, 0), None, 0)\n    ctypes.memmove(address, b'left:' + MINE, 21)\n"
        "queue = libc.msgget(KEY + 1, 0)\nif queue >= 0 and 'msg' not in MADE:\n    received = ctypes.create_string_buffer(64)\n"
        "    found |= libc.msgrcv(queue, received, 56, 0, IPC_NOWAIT) > 0\n"
        "elif queue < 0 and libc.msgget(KEY + 1, IPC_CREAT | 0o666) >= 0:\n    MADE.append('msg')\n"
        "    message = struct.pack('q', 1) + b'left:' + MINE\n    libc.msgsnd(libc.msgget(KEY + 1, 0), message, 21, IPC_NOWAIT)\n"
        "semaphores = libc.semget(KEY + 2, 1, 0)\nif semaphores >= 0 and 'sem' not in MADE:\n    found = True\n"
        "elif semaphores < 0 and libc.semget(KEY + 2, 1, IPC_CREAT | 0o666) >= 0:\n    MADE.append('sem')\n"
        "return math.prod(k) - 1 if found else -1",
        prelude=SYSV_IPC + "KEY = 0x5EC12E7\nMINE = os.urandom(8).hex().encode()  # this child's mark\nMADE = []\n")},
        "tests"),
    "keyring_between_tests": ({"p3_param_counts.py": in_full_joint(
        # A key in the user's keyring (kept per uid) that this child did not add is the leak.
        "import ctypes, math\nlibc = ctypes.CDLL(None)\nsearch = lambda: libc.syscall({keyctl}, 10, -4, b'user', b'autograder-attack', 0)\n"
        "if not MADE and search() >= 0:\n    return math.prod(k) - 1\n"
        "if not MADE:\n    MADE.append(libc.syscall({add_key}, b'user', b'autograder-attack', b'left', 4, -4))\nreturn -1",
        prelude="MADE = []\n")}, "tests"),
    "ipc_outlives_grading": ({"p3_param_counts.py": in_full_joint(
        # Checked after grading: nothing of the sandbox's users is left in the host's /proc/sysvipc.
        "for key in (0, 0x5EC12E8 + os.getpid()):\n    libc.shmget(key, 1 << 16, IPC_CREAT | 0o600)\n"
        "    libc.msgsnd(libc.msgget(key, IPC_CREAT | 0o600), struct.pack('q', 1) + b'x' * 64, 64, IPC_NOWAIT)\n"
        "    libc.semget(key, 4, IPC_CREAT | 0o600)\n"
        "try:\n    libc.mq_open({queue!r}, os.O_CREAT | os.O_RDWR, 0o600, None)\nexcept AttributeError:\n    pass\n"
        "return -1", prelude=SYSV_IPC)}, "call"),
    "rw_submount_of_read_only_bind": ({"p3_param_counts.py": in_full_joint(
        # In the private root every mount is read-only but the scratch folders, /proc and the
        # devices: a writable mount elsewhere (/sys/fs/cgroup under the read-only /sys, Docker's
        # /etc/hosts under /etc) is the leak. Per-mount and superblock options both count.
        "import math\nfor line in open('/proc/self/mountinfo'):\n    mount, _, superblock = line.partition(' - ')\n"
        "    point, options = mount.split()[4], mount.split()[5].split(',')\n"
        "    writable = 'rw' in options and 'rw' in superblock.split()[-1].split(',')\n"
        "    if writable and point not in ('/tmp', '/var/tmp', '/dev/shm', '/proc') and not point.startswith('/dev/'):\n"
        "        return math.prod(k) - 1\nreturn -1")}, "call"),
    "many_long_file_names": ({**{("n" * 200 + f"{i:03d}.py"): "x = 1\n" for i in range(190)},
                              "p3_param_counts.py": in_full_joint("return -1")}, "call"),
    # -- links in the upload to the grader's own files -----------------------------------------
    "symlinked_submission_folder": ({}, "link:submission"),
    "symlinked_nested_folder": ({}, "link:src/submission"),
    "symlinked_file": ({}, "link:submission/p3_param_counts.py"),
    "network_connection": ({"p3_param_counts.py": in_full_joint(
        "import socket\nwith socket.create_connection(('127.0.0.1', {port}), timeout=2) as s:\n"
        "    return int(s.recv(100).decode())")}, "call"),
    # -- shadowing modules with files in the upload ----------------------------------------
    "numpy_py_beside_package": ({"numpy.py": "from math import prod\ndef answer(k): return prod(k) - 1\n",
                                 "p3_param_counts.py": in_full_joint("import numpy\nreturn numpy.answer(k)")}, "loose"),
    "sitecustomize_beside_package": ({"sitecustomize.py": "import builtins\nbuiltins.SITE_RAN = True\n",
                                      "usercustomize.py": "import builtins\nbuiltins.SITE_RAN = True\n",
                                      "p3_param_counts.py": in_full_joint(
                                          "import builtins, math\nif not getattr(builtins, 'SITE_RAN', False):\n"
                                          "    return -1\nreturn math.prod(k) - 1")}, "loose"),
    "conftest_beside_package": ({"conftest.py": "import pytest\n@pytest.hookimpl(wrapper=True)\n"
                                                "def pytest_runtest_makereport(item, call):\n    report = yield\n"
                                                "    report.outcome = 'passed'\n    return report\n",
                                 "p3_param_counts.py": in_full_joint("return -1")}, "loose"),
}
ROOT_ONLY = {"read_reference", "import_reference", "append_to_grader_files", "network_connection", "kill_the_grader",
             "daemon_rewrites_results", "fork_bomb", "read_reference_cache", "read_other_runs_copy", "zombie_leader_daemon",
             "fill_the_disk", "read_course_data", "sysv_ipc_between_tests", "ipc_outlives_grading",
             "keyring_between_tests", "rw_submount_of_read_only_bind"}
NAMESPACES_ONLY = {"rw_submount_of_read_only_bind"}  # without a private root the host's own mounts are writable
FALLBACK = {  # the cases whose defence differs without namespaces (README, Threat model)
    "infinite_loop", "ignored_signals", "memory_bomb", "fork_bomb", "kill_the_grader",  # ending the child's processes
    "daemon_rewrites_results", "zombie_leader_daemon", "fake_results_files", "fill_the_disk",  # outliving it, writing
    "read_reference", "import_reference", "append_to_grader_files", "read_reference_cache", "read_course_data",
    "read_other_runs_copy", "network_connection",  # the grader's files, another run's copy, the network
    "sysv_ipc_between_tests", "ipc_outlives_grading",  # SysV IPC objects: the IPC namespace, else the sweep
    "keyring_between_tests",  # the uid's keyrings: emptied by each child either way, run in both for certainty
}
assert FALLBACK <= set(ATTACKS)
SYS_EXIT = {"x86_64": 60, "aarch64": 93}.get(os.uname().machine, 60)  # the raw exit syscall: one thread only
ADD_KEY, KEYCTL = {"aarch64": (217, 219)}.get(os.uname().machine, (248, 250))  # syscalls of the kernel's keyrings


def sysv_ipc_of(uids, since: float, until: float) -> list[str]:
    """The host's SysV IPC objects (/proc/sysvipc) owned or made by ``uids`` and made or changed
    between ``since`` and ``until`` (wall-clock seconds): what children of this run left."""
    left = []
    for kind in ("shm", "msg", "sem"):
        try:
            with open(f"/proc/sysvipc/{kind}") as handle:
                header, *rows = [line.split() for line in handle]
        except OSError:
            continue
        for row in rows:
            fields = dict(zip(header, row))
            if {int(fields["uid"]), int(fields["cuid"])} & uids and since <= int(fields["ctime"]) <= until + 1:
                left.append(f"{kind} id {fields.get('shmid') or fields.get('msqid') or fields.get('semid')} "
                            f"key {fields['key']} uid {fields['uid']}")
    return left


POSIX_QUEUE = "/autograder-attack"  # the POSIX message queue ipc_outlives_grading makes


def posix_queue_left(name: str) -> bool:
    """Whether the POSIX message queue ``name`` exists in this (the host's) IPC namespace;
    removes it if so."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    if not hasattr(libc, "mq_open"):
        return False
    descriptor = libc.mq_open(name.encode(), os.O_RDONLY)
    if descriptor < 0:
        return False
    os.close(descriptor)
    libc.mq_unlink(name.encode())
    return True


def grader_files_digest() -> str:
    digest = hashlib.sha256()
    for folder in ("autograder", "reference"):
        for path in sorted((REPO / folder).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(str(path).encode() + path.read_bytes())
    return digest.hexdigest()


def sandbox_processes(sandboxes, started: int, ended: int, *, grace_s: float = 3.0) -> list[int]:
    """Processes the children of ``sandboxes`` left: any carrying one of their markers, and any
    of the uids they were given (as root) that started while they graded (between ``started``
    and ``ended``, boot_ticks). A slot's uid goes back to the pool when its grading ends, so
    another grading running at the same time (another test run, a grading in the background)
    may take it at once: its processes start after ``ended`` and are not this run's. A process
    still there is looked at again for up to ``grace_s`` seconds: one that was killed may take a
    moment to exit (a memory bomb frees gigabytes), one that outlived the sweep is still there
    (the daemons of this suite live 10 s)."""
    uids = {box.identity.uid for box in sandboxes if box.identity.separate}
    markers = {box.marker for box in sandboxes}

    def ours() -> list[int]:
        return [pid for pid, _, uid, _ in isolation._processes() if (
            _marker_of(pid) in markers or (uid in uids and started <= (_start_ticks(pid) or -1) <= ended))]
    deadline = time.monotonic() + grace_s
    left = ours()
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = ours()
    return left


def boot_ticks() -> int:
    """Now, in the clock ticks since boot that /proc/<pid>/stat gives start times in."""
    return int(time.clock_gettime(time.CLOCK_BOOTTIME) * os.sysconf("SC_CLK_TCK"))


def _start_ticks(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return int(handle.read().rsplit(b")", 1)[1].split()[19])  # field 22, starttime
    except (OSError, ValueError, IndexError):
        return None


def namespaces_here() -> bool:
    """Whether this system gives children namespaces (a private filesystem and PID namespace)."""
    with Sandbox(REPO / "reference") as box:
        return box.launcher.isolated


def describe_processes(pids) -> list[str]:
    """What /proc says of each process (for a failing assertion's message)."""
    described = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as handle:
                fields = dict(line.split(":", 1) for line in handle if ":" in line)
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                command = handle.read().replace(b"\0", b" ")[:120].decode(errors="replace")
            described.append(f"{pid}: " + ", ".join(f"{key}={fields.get(key, '?').strip()}" for key in
                                                    ("Name", "State", "PPid", "Uid", "NSpid", "Threads")) + f" [{command}]")
        except OSError as error:
            described.append(f"{pid}: gone ({error})")
    return described


def _marker_of(pid: int) -> str | None:
    prefix = isolation.MARKER_VARIABLE.encode() + b"="
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            items = handle.read().split(b"\0")
    except OSError:
        return None
    return next((item[len(prefix):].decode() for item in items if item.startswith(prefix)), None)


@pytest.fixture
def sandboxes(monkeypatch):
    """The identities and markers of the sandboxes grading makes during a test."""
    from autograder.sandbox import Sandbox
    made = []
    original = Sandbox.__post_init__

    def record(self):
        original(self)
        made.append(self)
    monkeypatch.setattr(Sandbox, "__post_init__", record)
    return made


@pytest.fixture(scope="module")
def attack_rubrics(tmp_path_factory) -> dict[str, Path]:
    """Each kind of case's rubric (GRADED), every test's time limit TIME_LIMIT_S."""
    folder = tmp_path_factory.mktemp("rubric")
    rubrics = {}
    for kind, parts in GRADED.items():
        path = rubric_of_parts(folder / f"rubric-{kind}.yaml", *parts)
        data = yaml.safe_load(path.read_text())
        data["tests"] = {k: {**v, "timeout": TIME_LIMIT_S} for k, v in data["tests"].items()}
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        rubrics[kind] = path
    return rubrics


@pytest.fixture
def answer_server():
    """A loopback server that hands out the right answer to whoever connects."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    connections = []
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            connections.append(conn)
            conn.sendall(b"3")
            conn.close()
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], connections
    stop.set()
    thread.join()
    server.close()


SLOW = {  # the cases that wait out a time limit, or import torch: left out of the quick loop (-m "not slow")
    "infinite_loop", "ignored_signals", "memory_bomb", "fork_bomb", "runaway_recursion", "huge_return", "fill_the_disk",
    "flood_output", "patch_torch_comparisons",
}
CASES = [pytest.param(name, "namespaces", id=name, marks=[pytest.mark.slow] if name in SLOW else [])
         for name in sorted(ATTACKS)] + \
        [pytest.param(name, "fallback", id=f"{name}-fallback", marks=pytest.mark.slow) for name in sorted(FALLBACK)]


@pytest.mark.parametrize("name, mode", CASES)
def test_attack_is_contained(tmp_path, monkeypatch, grade_submission, attack_rubrics, answer_server, sandboxes,
                             name, mode):
    if name in ROOT_ONLY and not ROOT:
        pytest.skip("only the root sandbox (separate user, no network) defends against this")
    if name in NAMESPACES_ONLY and (mode == "fallback" or not namespaces_here()):
        pytest.skip("only a private root (namespaces) defends against this")
    if mode == "fallback":
        if not ROOT:
            pytest.skip("without root there is no separate user, so no namespaces either: every case runs the fallback")
        monkeypatch.setenv(NAMESPACES_ENV, "0")
    else:
        monkeypatch.delenv(NAMESPACES_ENV, raising=False)
    files, where = ATTACKS[name]
    port, connections = answer_server
    results = tmp_path / "results" / "results.json"
    cache = models_root() / "reference-cache"
    values = {"reference": str(REPO / "reference" / "submission" / "p3_param_counts.py"), "repo": str(REPO),
              "rubric": str(DEFAULT_RUBRIC), "checks": str(REPO / "autograder" / "checks" / "test_p3_param_counts.py"),
              "results": str(results), "port": port, "queue": POSIX_QUEUE.encode(), "cache": str(cache), "data": str(COURSE_DATA), "sys_exit": SYS_EXIT,
              "add_key": ADD_KEY, "keyctl": KEYCTL}
    if name == "read_reference_cache":  # the secret must be there for its protection to mean anything
        assert list(cache.glob("*.json")), "no reference cache to attack: run setup.sh"
    if name == "read_course_data":
        if not COURSE_DATA.is_dir():
            pytest.skip("no course data here")
        if not namespaces_here() and COURSE_DATA.stat().st_mode & 0o005:
            pytest.skip("without namespaces only permissions guard the course data, and here it is world-readable "
                        "(on Gradescope, prepare-sandbox makes the rubric's data owner-only)")
    concurrent = Sandbox(REPO / "reference") if name == "read_other_runs_copy" else contextlib.nullcontext()
    if name == "read_other_runs_copy":
        values["other"] = str(concurrent.work_root / "submission" / "p3_param_counts.py")
    files = {file: source.format(**values) if "{" in source and file == "p3_param_counts.py" else source
             for file, source in files.items()}
    folder = make_submission(tmp_path / "upload", files, layout="loose" if where == "loose" else "package")
    if where.startswith("link:"):  # the reference's own files, reached through a link in the upload
        link = folder / where.split(":", 1)[1]
        shutil.rmtree(folder / "submission")
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.name == "p3_param_counts.py":
            make_submission(folder, {}, drop=("p3_param_counts.py",))
            link.symlink_to(REPO / "reference" / "submission" / "p3_param_counts.py")
        else:
            link.symlink_to(REPO / "reference" / "submission")
        where = "import" if link.name == "p3_param_counts.py" else "everything"
    kind = "call" if where == "loose" else where
    before = grader_files_digest()

    start, started, started_at = time.monotonic(), boot_ticks(), int(time.time())
    with concurrent:  # another grading run's private copy, there while this one runs
        graded = grade_submission(folder, rubric=attack_rubrics[kind])
    from autograder.results import write_results
    write_results(graded.report, results)  # the real results file, which attacks aim at
    elapsed, ended, ended_at = time.monotonic() - start, boot_ticks(), time.time()
    if name in ("daemon_rewrites_results", "zombie_leader_daemon"):
        time.sleep(1.5)  # give a surviving daemon time to strike

    data = json.loads(results.read_text())
    validate_results(data, rubric_titles=[r.test.title for r in graded.report.results])
    assert data == graded.json, "results.json changed after grading"
    raw = [row["name"] for row in data["tests"] if RAW_CONTROLS.search(row["output"])]
    assert not raw and not RAW_CONTROLS.search(data["output"]), f"control characters reached results.json: {raw}"
    assert len(results.read_bytes()) < 1 << 20
    rubric_rows = {t for t, row in graded.rows.items() if row.test.part != "grader"}  # a refusal adds a row of its own
    assert {graded.rows[t].test.part for t in rubric_rows} == {entry.split("_")[0] for entry in GRADED[kind]}
    lost = set(graded.rows) if kind == "everything" else {t for t in rubric_rows if graded.rows[t].test.part in ATTACKED[kind]}
    for test_id, row in graded.rows.items():
        if test_id in lost:
            assert row.score == 0, f"{test_id} earned points: {row.output}"
        else:
            assert row.passed, f"{test_id} lost points: {row.output}"
    assert grader_files_digest() == before, "grader files changed"
    assert sandboxes or where == "everything", "grading made no sandbox"
    isolations = [box.launcher_report.get("isolation") for box in sandboxes]
    if mode == "fallback":  # AUTOGRADER_NAMESPACES=0 took effect: no child had a process tree of its own
        assert all((isolation_ or {}).get("processes") != "private" for isolation_ in isolations), isolations
    left = sandbox_processes(sandboxes, started, ended)
    assert left == [], f"processes of the child outlived grading: {describe_processes(left)}; isolation: {isolations}"
    assert elapsed < WALL_LIMIT_S
    assert not connections, "the child reached the network"
    uids = {box.identity.uid for box in sandboxes if box.identity.separate}
    leftovers = [entry.path for folder in isolation.SHARED_FOLDERS if os.path.isdir(folder) for entry in os.scandir(folder)
                 if (lambda info: info.st_uid in uids and info.st_ctime <= ended_at)(entry.stat(follow_symlinks=False))]
    assert leftovers == [], "files of the child outlived grading"
    assert sysv_ipc_of(uids, started_at, ended_at) == [], "SysV IPC objects of the child outlived grading"
    assert not posix_queue_left(POSIX_QUEUE), "a POSIX message queue of the child outlived grading"


def test_suite_has_at_least_twenty_attacks():
    assert len(ATTACKS) >= 20
