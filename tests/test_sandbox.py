"""The child process: failures become clear StudentCodeErrors, every call is bounded in time,
each test gets a fresh process, and files in the upload cannot replace modules."""
import os
import time
from pathlib import Path

import numpy as np
import pytest

from autograder.sandbox import Sandbox, StudentCodeError, SubmissionError, copy_submission, locate_submission
from conftest import make_submission


def sandbox_with(tmp_path, source: str, **files):
    folder = make_submission(tmp_path / "sub", {"p3_param_counts.py": source, **files}, base=None)
    return Sandbox(folder)


def test_values_come_back_as_plain_data(tmp_path):
    with sandbox_with(tmp_path, "import numpy as np\ndef f(x): return {'a': np.arange(3) * x, 'b': (x, 2**70)}\n") as box:
        with box.process(time_limit_s=10, label="t") as child:
            value = child.call("p3_param_counts", "f", 2)
    assert set(value) == {"a", "b"} and np.array_equal(value["a"], [0, 2, 4]) and value["b"] == (2, 2**70)


def test_infinite_loop_times_out_and_the_process_is_gone(tmp_path):
    with sandbox_with(tmp_path, "def f():\n    while True: pass\n") as box:
        child = box.process(time_limit_s=1.5, label="t")
        start = time.monotonic()
        with pytest.raises(StudentCodeError) as error:
            child.call("p3_param_counts", "f")
        assert error.value.kind == "timeout" and "1.5 s" in error.value.message
        assert time.monotonic() - start < 5
        pid = child.proc.pid
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
        # the next test gets a fresh child that works
        with box.process(time_limit_s=5, label="u") as fresh:
            with pytest.raises(StudentCodeError, match="no function g"):
                fresh.call("p3_param_counts", "g")


def test_budget_covers_all_calls_of_a_test(tmp_path):
    """The second call alone would fit in the limit, but not after the first: the budget is the
    test's, not the call's. The first call leaves 1.2 s for what the budget counts besides the
    sleep (the child's start-up and the call's overhead: 0.03 s measured at a load of 4 on 2
    cores, so 40 times that; the old 0.3 s margin failed under load)."""
    with sandbox_with(tmp_path, "import time\ndef f():\n    time.sleep(1.8)\n    return 1\n") as box:
        with box.process(time_limit_s=3, label="t") as child:
            assert child.call("p3_param_counts", "f") == 1
            with pytest.raises(StudentCodeError, match="did not finish"):
                child.call("p3_param_counts", "f")


@pytest.mark.parametrize("body, kind, message", [
    ("import os\ndef f(): os._exit(4)\n", "crash", "exited with status 4"),
    ("def f(): raise SystemExit(2)\n", "exception", "raised SystemExit"),
    ("def f(): raise KeyboardInterrupt\n", "exception", "raised KeyboardInterrupt"),
    ("def f(): return f()\n", "exception", "RecursionError"),
    ("def f(): return object()\n", "bad_return", "cannot be graded"),
    ("class I(int): pass\ndef f(): return I(3)\n", "bad_return", "a subclass of int"),
    ("import os, signal\ndef f(): os.kill(os.getpid(), signal.SIGKILL)\n", "crash", "killed by SIGKILL"),
])
def test_failures_become_clear_errors(tmp_path, body, kind, message):
    with sandbox_with(tmp_path, body) as box, box.process(time_limit_s=10, label="t") as child:
        with pytest.raises(StudentCodeError) as error:
            child.call("p3_param_counts", "f")
    assert error.value.kind == kind and message in error.value.feedback()


def test_traceback_shows_only_student_files(tmp_path):
    with sandbox_with(tmp_path, "def g(x):\n    return 1 / x\n\ndef f():\n    return g(0)\n") as box:
        with box.process(time_limit_s=10, label="t") as child:
            with pytest.raises(StudentCodeError) as error:
                child.call("p3_param_counts", "f")
    text = error.value.feedback()
    assert 'File "submission/p3_param_counts.py", line 2, in g' in text and "ZeroDivisionError" in text
    assert "_agchild" not in text and "autograder" not in text


def test_student_output_is_kept_short(tmp_path):
    with sandbox_with(tmp_path, "def f():\n    print('x' * 100000)\n    raise ValueError('bad')\n") as box:
        with box.process(time_limit_s=10, label="t") as child:
            with pytest.raises(StudentCodeError) as error:
                child.call("p3_param_counts", "f")
    assert "(output truncated)" in error.value.output and len(error.value.output) < 5000


def test_student_code_cannot_read_the_request_stream(tmp_path):
    with sandbox_with(tmp_path, "import sys\ndef f(): return sys.stdin.read()\n") as box:
        with box.process(time_limit_s=10, label="t") as child:
            assert child.call("p3_param_counts", "f") == ""


def test_files_beside_the_package_cannot_shadow_modules(tmp_path):
    folder = tmp_path / "loose"
    folder.mkdir()
    (folder / "p3_param_counts.py").write_text("import numpy\ndef f(): return numpy.__file__\n")
    (folder / "numpy.py").write_text("raise RuntimeError('shadowed numpy imported')\n")
    (folder / "sitecustomize.py").write_text("raise RuntimeError('sitecustomize ran')\n")
    (folder / "usercustomize.py").write_text("raise RuntimeError('usercustomize ran')\n")
    with Sandbox(folder) as box, box.process(time_limit_s=10, label="t") as child:
        assert "site-packages" in child.call("p3_param_counts", "f")


def test_environment_variables_do_not_reach_python_startup(tmp_path, monkeypatch):
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text("raise RuntimeError('PYTHONPATH honoured')\n")
    monkeypatch.setenv("PYTHONPATH", str(hook))
    monkeypatch.setenv("PYTHONSTARTUP", str(hook / "sitecustomize.py"))
    with sandbox_with(tmp_path, "def f(): return 5\n") as box, box.process(time_limit_s=10, label="t") as child:
        assert child.call("p3_param_counts", "f") == 5


def test_each_process_starts_fresh(tmp_path):
    with sandbox_with(tmp_path, "STATE = []\ndef f():\n    STATE.append(1)\n    return len(STATE)\n") as box:
        with box.process(time_limit_s=10, label="a") as child:
            assert [child.call("p3_param_counts", "f") for _ in range(3)] == [1, 2, 3]
        with box.process(time_limit_s=10, label="b") as child:
            assert child.call("p3_param_counts", "f") == 1


def test_only_python_files_are_copied(tmp_path):
    source = tmp_path / "src" / "submission"
    (source / "helpers").mkdir(parents=True)
    (source / "p3_param_counts.py").write_text("")
    (source / "helpers" / "maths.py").write_text("")
    (source / "data.pkl").write_bytes(b"\x80\x04")
    (source / "__pycache__").mkdir()
    (source / "__pycache__" / "x.py").write_text("")
    found, how = locate_submission(tmp_path)
    assert found == source and how == "src/submission/ package"
    copied, ignored = copy_submission(found, tmp_path / "dest")
    assert copied == ["helpers/maths.py", "p3_param_counts.py"] and ignored == []
    assert (tmp_path / "dest" / "__init__.py").exists() and (tmp_path / "dest" / "helpers" / "__init__.py").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="separate sandbox users need root")
def test_overlapping_runs_get_separate_users_and_do_not_kill_each_other(tmp_path):
    source = "import os, time\ndef who(): return os.getuid()\ndef nap():\n    time.sleep(1)\n    return 1\n"
    with sandbox_with(tmp_path / "a", source) as first, sandbox_with(tmp_path / "b", source) as second:
        assert first.identity.uid != second.identity.uid
        with first.process(time_limit_s=10, label="a") as a, second.process(time_limit_s=10, label="b") as b:
            assert a.call("p3_param_counts", "who") == first.identity.uid
            assert b.call("p3_param_counts", "who") == second.identity.uid
            with first.process(time_limit_s=10, label="a2") as other:
                other.call("p3_param_counts", "who")
            # closing a child kills neither a sibling of the same run nor another run's child
            assert a.call("p3_param_counts", "nap") == 1
            assert b.call("p3_param_counts", "nap") == 1


@pytest.mark.skipif(os.geteuid() != 0, reason="separate sandbox users need root")
def test_a_child_for_grader_harnesses_runs_out_of_the_students_reach(tmp_path):
    with sandbox_with(tmp_path, "import os\ndef who(): return os.getuid()\n") as box:
        with box.process(time_limit_s=10, label="s") as student, \
                box.process(time_limit_s=10, label="c", runs_student_code=False) as clean:
            assert student.call("p3_param_counts", "who") == box.identity.uid
            assert clean.harness("environment")["device"] == "cpu"
            assert os.stat(f"/proc/{clean.proc.pid}").st_uid == os.geteuid() != box.identity.uid


def test_a_child_that_stops_reading_cannot_block_the_grader(tmp_path):
    """The child forges the answers to this request and the next, then never reads again: the
    grader's next (large) request must time out within the test's limit, not block forever."""
    body = ("import json, os, time\n"
            "def f(x):\n"
            "    for i in (1, 2):\n"
            "        os.write(3, (json.dumps({'$dict': [['id', i], ['time', 0.0], ['ok', 7]]}) + '\\n').encode())\n"
            "    time.sleep(3600)\n")
    with sandbox_with(tmp_path, body) as box, box.process(time_limit_s=3, label="t") as child:
        assert child.call("p3_param_counts", "f", 1) == 7  # the forged answer to request 1
        start = time.monotonic()
        with pytest.raises(StudentCodeError) as error:
            child.call("p3_param_counts", "f", np.zeros(1_000_000))  # ~10 MB encoded: more than a pipe holds
        assert error.value.kind in ("timeout", "protocol")
        assert time.monotonic() - start < 30


def test_a_student_process_cannot_blame_the_grader(tmp_path):
    """An error report marked internal, forged by student code, is reported as the student's."""
    body = ("import json, os\n"
            "def f():\n"
            "    error = {'$dict': [['kind', 'internal'], ['message', 'grader bug']]}\n"
            "    os.write(3, (json.dumps({'$dict': [['id', 1], ['time', 0.0], ['error', error]]})"
            " + '\\n').encode())\n"
            "    os._exit(0)\n")
    with sandbox_with(tmp_path, body) as box, box.process(time_limit_s=10, label="t") as child:
        with pytest.raises(StudentCodeError) as error:
            child.call("p3_param_counts", "f")
    assert error.value.kind == "exception" and "outside your functions" in error.value.message


def test_links_in_an_upload_are_never_followed(tmp_path):
    """A symlinked file or folder, or a hard-linked file, is left out (and named); the rest is copied."""
    outside = tmp_path / "outside"
    (outside / "folder").mkdir(parents=True)
    (outside / "secret.py").write_text("SECRET = 1\n")
    (outside / "folder" / "more.py").write_text("MORE = 1\n")
    source = tmp_path / "upload" / "submission"
    source.mkdir(parents=True)
    (source / "p3_param_counts.py").write_text("x = 1\n")
    (source / "linked.py").symlink_to(outside / "secret.py")
    (source / "linked_folder").symlink_to(outside / "folder")
    os.link(outside / "secret.py", source / "hard.py")
    copied, ignored = copy_submission(source, tmp_path / "dest")
    assert copied == ["p3_param_counts.py"]
    assert sorted(ignored) == ["hard.py (a hard link)", "linked.py (a symbolic link)", "linked_folder/ (a symbolic link)"]


def test_a_symlinked_submission_folder_is_not_graded(tmp_path):
    target = tmp_path / "elsewhere" / "submission"
    target.mkdir(parents=True)
    (target / "p3_param_counts.py").write_text("x = 1\n")
    upload = tmp_path / "upload"
    upload.mkdir()
    (upload / "submission").symlink_to(target)
    with pytest.raises(SubmissionError, match="symbolic link"):
        locate_submission(upload)


@pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/sys/fs/cgroup/cpu/cgroup.procs"),
                    reason="needs root and cgroup v1's cpu controller")
def test_a_cpu_quota_limits_the_cpus_used(tmp_path):
    """In a container allowed half a CPU (as Gradescope's are), torch gets one thread, not one per
    core of the host."""
    import subprocess
    import sys
    group = Path(f"/sys/fs/cgroup/cpu/autograder-test-{os.getpid()}")
    group.mkdir()
    try:
        (group / "cpu.cfs_period_us").write_text("100000")
        (group / "cpu.cfs_quota_us").write_text("50000")
        done = subprocess.run([sys.executable, "-c", "from autograder import isolation, sandbox; "
                               "print(isolation.usable_cpus(), sandbox.torch_threads())"],
                              cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=60,
                              env={k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "AUTOGRADER_TORCH_THREADS")},
                              preexec_fn=lambda: (group / "cgroup.procs").write_text(str(os.getpid())))
        assert done.stdout.split() == ["1", "1"], done.stderr
    finally:
        group.rmdir()
