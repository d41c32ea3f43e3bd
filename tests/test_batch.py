"""Batch grading: a Gradescope export of 20 mixed submissions (right, wrong, broken, rejected,
timing out, hostile) graded with --jobs 2; an interrupted batch resumed to the same scores;
shards merged equal to one run. Gradings use P3 alone (about 2 s each); its per-test limits are
raised so that an endless loop meets the batch's own per-submission limit instead."""
from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from autograder import batch as batch_module
from autograder.batch import Batch, BatchError, code_digest, discover, parse_shard, shard_of
from autograder.scores import FAILED, MergeError, Record, histogram_figure, merge, write_tables
from conftest import REPO, make_submission, rubric_of_parts
from gradescope_schema import validate_results

ROOT = os.geteuid() == 0
BATCH_TIMEOUT_S = 30  # per submission; a P3 grading takes about 2 s alone
P3_MAX = 5.0
LOOP = "def full_joint(k):\n    while True:\n        pass\n"
CORRECT_REST = """
from math import prod
def independent(k): return sum(x - 1 for x in k)
def markov(k, m):
    return prod(k[:m]) - 1 + sum((k[i] - 1) * prod(k[i - m:i]) for i in range(m, len(k)))
"""


def _hostile(body: str) -> str:
    """A P3 module whose full_joint returns the right answer only if the attack worked."""
    indented = "\n".join("    " + line for line in body.strip("\n").splitlines())
    return f"{CORRECT_REST}\ndef full_joint(k):\n{indented}\n"


HOSTILE = {
    # kill the grading process: as root it cannot; otherwise that grading dies and the batch goes on
    "kill_grader": _hostile("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nfrom math import prod\n"
                            "return prod(k) - 1"),
    # find this grading's results path on its parent's command line and write a perfect score there
    "fake_results": _hostile(r"""
import json, os
from math import prod
try:
    argv = open(f"/proc/{os.getppid()}/cmdline", "rb").read().split(b"\0")
    target = argv[argv.index(b"--results") + 1].decode()
    for path in (target, os.path.join(os.path.dirname(target), "status.json")):
        with open(path, "w") as handle:
            json.dump({"score": 999, "total": 999, "tests": []}, handle)
except Exception:
    return -1
return prod(k) - 1
"""),
    # a daemon that outlives the call and tries to rewrite every results file later
    "daemon": _hostile("""
import os, time, glob
from math import prod
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        time.sleep(3)
        for path in glob.glob("{area}/**/results.json", recursive=True):
            try:
                open(path, "w").write("{}")
            except OSError:
                pass
        os._exit(0)
    os._exit(0)
return -1
"""),
}


def _submissions(root: Path) -> dict[str, dict]:
    """20 submissions in Gradescope's export layout; returns their metadata entries by folder."""
    made = {}

    def add(name, folder_maker, people):
        folder_maker(root / name)
        made[name] = people

    one = lambda n: [{":name": f"Student {n}", ":sid": f"{1000 + n}", ":email": f"s{n}@example.edu"}]  # noqa: E731
    add("submission_01", lambda f: make_submission(f), one(1))
    add("submission_02", lambda f: make_submission(f, layout="loose"), one(2))
    add("submission_03", lambda f: make_submission(f / "src"), one(3))
    add("submission_04", lambda f: make_submission(f / "hw1", layout="loose"), one(4))  # loose, one level down
    add("submission_05", lambda f: make_submission(f, {"p3_param_counts.py": CORRECT_REST.replace(
        "prod(k[:m]) - 1", "prod(k[:m])") + "\ndef full_joint(k):\n    from math import prod\n    return prod(k) - 1\n"}),
        one(5))  # markov off by one
    add("submission_06", lambda f: make_submission(f, {"p3_param_counts.py": CORRECT_REST.replace(
        "sum(x - 1 for x in k)", "sum(k)") + "\ndef full_joint(k):\n    from math import prod\n    return prod(k) - 1\n"}),
        one(6))  # independent wrong
    add("submission_07", lambda f: make_submission(f, {"p3_param_counts.py": "def full_joint(k):\n    return (\n"}),
        one(7))
    add("submission_08", lambda f: make_submission(f, {"p3_param_counts.py": "raise RuntimeError('boom')\n"}), one(8))
    add("submission_09", lambda f: make_submission(f, {"p3_param_counts.py": "import os\nos._exit(0)\n"}), one(9))
    add("submission_10", lambda f: (f.mkdir(parents=True), (f / "notes.txt").write_text("no code")), one(10))
    add("submission_11", lambda f: (f.mkdir(parents=True), (f / "hw1.ipynb").write_text("{}")), one(11))
    add("submission_12", lambda f: (make_submission(f / "v1"), make_submission(f / "v2")), one(12))  # two uploads
    add("submission_13", lambda f: make_submission(f, {"P3_param_counts.py": "x = 1\n"}, drop=("p3_param_counts.py",)),
        one(13))
    add("submission_14", lambda f: make_submission(f, {"p3_param_counts.py": CORRECT_REST + LOOP}), one(14))  # timeout
    for i, (name, source) in enumerate(HOSTILE.items(), start=15):  # the daemon only ever touches this test's files
        source = source.replace("{area}", str(root.parent))
        add(f"submission_{i}", lambda f, source=source: make_submission(f, {"p3_param_counts.py": source}), one(i))
    add("submission_18", lambda f: make_submission(f, {"p3_param_counts.py": "print('x' * 10**6)\n" + CORRECT_REST +
                                                       "def full_joint(k):\n    return 1.5\n"}), one(18))
    add("submission_19", lambda f: (make_submission(f), (f / "__MACOSX").mkdir(), (f / "README.md").write_text("hi")),
        one(19))
    add("submission_20", lambda f: make_submission(f), [  # a group submission
        {":name": "Pair One", ":sid": "2001", ":email": "one@example.edu"},
        {":name": "Pair Two", ":sid": "2002", ":email": "two@example.edu"}])
    return made


def _write_metadata(root: Path, entries: dict[str, dict]) -> None:
    """Gradescope's submission_metadata.yml, with a Ruby tag as Gradescope writes scores."""
    lines = []
    for name, people in entries.items():
        lines += [f"{name}:", "  :submitters:"]
        for person in people:
            lines += [f"  - :name: {person[':name']}", f"    :sid: '{person[':sid']}'",
                      f"    :email: {person[':email']}"]
        lines += ["  :created_at: 2024-09-29 23:59:00.000000000 -07:00", "  :score: !ruby/object:BigDecimal 18:0.5e1"]
    (root / "submission_metadata.yml").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def rubric(tmp_path_factory) -> Path:
    path = rubric_of_parts(tmp_path_factory.mktemp("rubric") / "rubric.yaml", "p3a", "p3b", "p3c")
    data = yaml.safe_load(path.read_text())
    data["defaults"]["timeout"] = 600  # an endless loop meets the batch's limit, not the test's
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("export") / "assignment_1_export"
    root.mkdir()
    entries = _submissions(root)
    _write_metadata(root, entries)
    return root, entries


def run_batch(folder: Path, out: Path, rubric: Path, *args: str, timeout: float = 600, **popen):
    command = [sys.executable, "-m", "autograder", "batch", str(folder), "--out", str(out), "--rubric", str(rubric),
               "--timeout", str(BATCH_TIMEOUT_S), "--no-progress", *args]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout, **popen)


def read_csv(path: Path) -> list[dict]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


@pytest.fixture(scope="module")
def full_run(export, rubric, tmp_path_factory):
    root, _ = export
    out = root.parent / "batch"
    with scratch_folder() as scratch:
        start = time.monotonic()
        done = run_batch(root, out, rubric, "--jobs", "2", env={**os.environ, "TMPDIR": str(scratch)},
                         preexec_fn=lambda: os.umask(0o022))
        seconds = time.monotonic() - start
        time.sleep(4)  # a daemon left behind would have written by now
        return done, out, seconds, list(scratch.iterdir())


@contextlib.contextmanager
def scratch_folder():
    """A TMPDIR for a batch, to see that it leaves nothing there. In /tmp: the sandbox user must
    reach the gradings' folders in it (pytest's own tmp_path is private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="autograder-test-batch-", dir="/tmp"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
def test_a_mixed_batch_grades_every_submission(export, full_run):
    root, entries = export
    done, out, seconds, leftovers = full_run
    assert done.returncode == 1, done.stdout + done.stderr  # a grading timed out: results written all the same
    rows = {row["id"]: row for row in read_csv(out / "scores.csv")}
    assert list(rows) == sorted(entries) and len(rows) == 20
    assert list(read_csv(out / "scores.csv")[0]) == ["id", "name", "sid", "email", "total", "p3a", "p3b", "p3c",
                                                     "status", "reason"]
    for name in ("submission_01", "submission_02", "submission_03", "submission_04", "submission_19",
                 "submission_20"):
        assert (rows[name]["total"], rows[name]["status"]) == ("5", "graded"), rows[name]
    assert rows["submission_05"]["p3c"] == "0" and rows["submission_05"]["p3a"] == "1.5"
    assert rows["submission_06"]["p3b"] == "0" and rows["submission_06"]["p3c"] == "2"
    for name in ("submission_07", "submission_08", "submission_09", "submission_13"):
        assert (rows[name]["total"], rows[name]["status"]) == ("0", "graded"), rows[name]
    for name in ("submission_10", "submission_11", "submission_12"):
        assert (rows[name]["total"], rows[name]["status"]) == ("0", "rejected"), rows[name]
    assert (rows["submission_14"]["total"], rows["submission_14"]["status"]) == ("0", "timeout")
    # why a submission was not graded as usual, in one line; nothing for the graded ones
    assert "limit of 30 s" in rows["submission_14"]["reason"]
    assert "no Python files found in the upload (submission_10)" in rows["submission_10"]["reason"]
    assert "notebook" in rows["submission_11"]["reason"] and "2 submissions, not one" in rows["submission_12"]["reason"]
    for name, row in rows.items():
        assert (row["reason"] == "") == (row["status"] == "graded"), row
        assert "\n" not in row["reason"]
    # --no-progress: a line per finished submission, with its status, score and reason
    lines = [line for line in done.stdout.splitlines() if line.startswith("[")]
    assert len(lines) == 20 and lines[-1].startswith("[20/20] ")
    for name, row in rows.items():
        line = next(line for line in lines if line.split("] ", 1)[1].startswith(f"{name}: "))
        assert f"{name}: {row['status']}, {row['total']}/5" in line, line
        assert (row["reason"] in line) and ("grade.log" in line) == (row["status"] in FAILED), line
    assert rows["submission_18"]["p3a"] == "0" and rows["submission_18"]["p3b"] == "1.5"
    # hostile: no points for the attacked part, whatever happened to that grading
    for name in ("submission_15", "submission_16", "submission_17"):
        assert rows[name]["p3a"] == "0", rows[name]
        assert rows[name]["status"] in (("graded",) if ROOT else ("graded", "crashed")), rows[name]
    if ROOT:  # the sandbox user can neither kill the grader nor write its files
        assert all(rows[n]["p3b"] == "1.5" and rows[n]["p3c"] == "2" for n in ("submission_15", "submission_16"))
    # names from Gradescope's metadata, groups joined
    assert (rows["submission_03"]["name"], rows["submission_03"]["sid"]) == ("Student 3", "1003")
    assert rows["submission_20"]["name"] == "Pair One; Pair Two" and rows["submission_20"]["sid"] == "2001; 2002"
    # each submission: a valid results.json, its log, its record
    for name, row in rows.items():
        folder = out / "submissions" / name
        data = json.loads((folder / "results.json").read_text())
        validate_results(data)
        assert float(row["total"]) == pytest.approx(data["score"]) and data["score"] <= P3_MAX
        assert (folder / "grade.log").is_file() and json.loads((folder / "status.json").read_text())["id"] == name
        assert list(folder.glob(".results*")) == []  # no reserved space or temporary file left
    assert "did you mean P3_param_counts.py" in (out / "submissions" / "submission_13" / "results.json").read_text()
    assert "limit of 30 s" in (out / "submissions" / "submission_14" / "results.json").read_text()
    # the summary and the histogram
    summary = {row["part"]: row for row in read_csv(out / "summary.csv")}
    assert summary["total"]["max"] == "5" and float(summary["p3a"]["share_full_marks"]) == pytest.approx(8 / 20)
    assert (out / "totals.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the tables as the umask (022) makes new files; each submission's files the owner's only
    for name in ("scores.csv", "summary.csv", "totals.png", "batch.json"):
        assert oct((out / name).stat().st_mode & 0o777) == oct(0o644), name
    for name in ("results.json", "status.json", "grade.log"):
        assert oct((out / "submissions" / "submission_14" / name).stat().st_mode & 0o777) == oct(0o600), name
    assert "20 submissions" in done.stdout and "1 timeout" in done.stdout
    failed = [name for name, row in rows.items() if row["status"] in FAILED]
    assert f"{len(failed)} of 20 gradings failed" in done.stderr and "run the same command again" in done.stderr
    # bounded: the slow one ran beside the others; nothing waited for it (the whole batch took
    # 53-67 s on 2 busy cores: the bound is over 5 times that)
    assert seconds < 20 * 2.5 * 4 * 2 + BATCH_TIMEOUT_S, seconds
    assert leftovers == []  # every grading's temporary folder removed, the stopped one's too


@pytest.mark.slow
def test_a_second_run_skips_what_is_done(export, rubric, full_run):
    root, _ = export
    _, out, _, _ = full_run
    before = (out / "scores.csv").read_text()
    failed = [row["id"] for row in read_csv(out / "scores.csv") if row["status"] in FAILED]
    assert "submission_14" in failed  # timed out
    # a shorter limit (not part of what a result depends on) so the endless one times out sooner
    done = run_batch(root, out, rubric, "--jobs", "2", "--timeout", "6", timeout=180)
    assert done.returncode == 1, done.stderr  # they fail again
    assert (f"{20 - len(failed)} already graded, skipped (--force regrades them); {len(failed)} that timed out, "
            f"crashed or failed in the grader {'is' if len(failed) == 1 else 'are'} graded again") in done.stdout
    assert f"grading {len(failed)} with" in done.stdout
    after = {row["id"]: row for row in read_csv(out / "scores.csv")}
    assert "limit of 6 s" in after["submission_14"]["reason"]
    for row in csv.DictReader(io.StringIO(before)):  # they failed again, the same way; only the limit named differs
        assert {**after[row["id"]], "reason": ""} == {**row, "reason": ""}


@pytest.mark.slow
def test_a_rerun_grades_failures_again_and_what_changed(export, rubric, tmp_path):
    folder = _subset(export, tmp_path, ["submission_01", "submission_10"])  # graded, rejected
    out = tmp_path / "out"
    first = run_batch(folder, out, rubric, "--jobs", "2")
    assert first.returncode == 0, first.stderr  # a rejected upload is the student's, not a failed grading
    # a grading that failed last time is graded again (as if it had crashed), the others are not
    status = out / "submissions" / "submission_01" / "status.json"
    status.write_text(json.dumps({**json.loads(status.read_text()), "status": "crashed"}))
    again = run_batch(folder, out, rubric)
    assert ("1 already graded, skipped (--force regrades them); 1 that timed out, crashed or failed in the grader "
            "is graded again") in again.stdout, again.stdout
    assert json.loads(status.read_text())["status"] == "graded"
    # the course's data changed: every submission is graded again
    data = tmp_path / "data"
    data.mkdir()
    (data / "random.txt").write_text("a text\n")
    changed = run_batch(folder, out, rubric, env={**os.environ, "AUTOGRADER_DATA_DIR": str(data)})
    assert "already graded" not in changed.stdout and "grading 2 with" in changed.stdout, changed.stdout


def _subset(export, tmp_path: Path, names: list[str]) -> Path:
    """A smaller export with some of the full one's submissions (same files, same metadata)."""
    root, entries = export
    sub = tmp_path / "subset"
    sub.mkdir()
    for name in names:
        shutil.copytree(root / name, sub / name)
    _write_metadata(sub, {name: entries[name] for name in names})
    return sub


SUBSET = ["submission_02", "submission_05", "submission_07", "submission_10", "submission_16", "submission_20"]


def _exit_status(scores: Path) -> int:
    """batch's exit status for these scores: 1 when some grading failed (as the hostile
    submissions' may without root), else 0."""
    return 1 if any(row["status"] in FAILED for row in read_csv(scores)) else 0


def _rows_of(path: Path, names: list[str]) -> list[dict]:
    return [row for row in read_csv(path) if row["id"] in names]


@pytest.mark.slow
def test_an_interrupted_batch_resumes_to_the_same_scores(export, rubric, full_run, tmp_path):
    with contextlib.ExitStack() as stack:
        _interrupted_then_resumed(stack, export, rubric, full_run, tmp_path)


def _interrupted_then_resumed(stack, export, rubric, full_run, tmp_path):
    folder = _subset(export, tmp_path, SUBSET)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "autograder", "batch", str(folder), "--out", str(out), "--rubric", str(rubric),
               "--jobs", "2", "--no-progress"]
    scratch = stack.enter_context(scratch_folder())
    env = {**os.environ, "TMPDIR": str(scratch)}
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 300
    while len(list(out.glob("submissions/*/status.json"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    interrupted_at = time.monotonic()
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stdout + stderr
    assert time.monotonic() - interrupted_at < 30  # at once: SIGINT, then SIGKILL after 10 s at worst
    assert "interrupted" in stderr and "resume" in stderr
    done_records = list(out.glob("submissions/*/status.json"))
    assert 2 <= len(done_records) < len(SUBSET)
    assert not (out / "scores.csv").exists()  # nothing that looks like a finished batch
    for folder_ in out.glob("submissions/*"):  # a submission without its record has no results either
        assert (folder_ / "status.json").exists() == (folder_ / "results.json").exists(), folder_
        assert list(folder_.glob(".results*")) == [], folder_  # nor anything half-written
    assert list(scratch.iterdir()) == []  # temporary folders removed
    resumed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert resumed.returncode == _exit_status(out / "scores.csv"), resumed.stderr
    assert f"{len(done_records)} already graded" in resumed.stdout
    _, full_out, _, _ = full_run
    assert read_csv(out / "scores.csv") == _rows_of(full_out / "scores.csv", SUBSET)


@pytest.mark.slow
def test_shards_merged_equal_one_run(export, rubric, full_run, tmp_path):
    folder = _subset(export, tmp_path, SUBSET)
    shared = tmp_path / "shared"  # like a Slurm job array writing to one folder
    procs = [subprocess.Popen([sys.executable, "-m", "autograder", "batch", str(folder), "--out", str(shared),
                               "--rubric", str(rubric), "--shard", f"{i}/2", "--jobs", "1", "--no-progress"],
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in (1, 2)]
    for i, proc in enumerate(procs, start=1):
        stdout, stderr = proc.communicate(timeout=600)
        assert proc.returncode == _exit_status(shared / f"scores-shard-{i}-of-2.csv"), stdout + stderr
    ones = {row["id"] for row in read_csv(shared / "scores-shard-1-of-2.csv")}
    twos = {row["id"] for row in read_csv(shared / "scores-shard-2-of-2.csv")}
    assert ones and twos and not ones & twos and ones | twos == set(SUBSET)
    assert not (shared / "scores.csv").exists()
    done = subprocess.run([sys.executable, "-m", "autograder", "merge", str(shared)], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    _, full_out, _, _ = full_run
    assert read_csv(shared / "scores.csv") == _rows_of(full_out / "scores.csv", SUBSET)
    assert (shared / "summary.csv").is_file() and (shared / "totals.png").is_file()
    # a shard missing: merge says which, and writes nothing
    (shared / "shard-2-of-2.json").unlink()
    with pytest.raises(MergeError, match="shards 2/2 not found"):
        merge([shared], tmp_path / "merged")
    assert not (tmp_path / "merged").exists()


def test_shards_are_deterministic_and_cover_everything():
    ids = [f"submission_{i}" for i in range(400)]
    shards = [shard_of(i, 4) for i in ids]
    assert shards == [shard_of(i, 4) for i in ids] and set(shards) == {1, 2, 3, 4}
    assert all(60 < shards.count(s) < 140 for s in (1, 2, 3, 4))  # about 1/4 each
    assert parse_shard("3/8") == (3, 8)
    for bad in ("0/2", "3/2", "x", "1/0", "2", "2/", "/4", "1/four"):
        with pytest.raises(ValueError, match=r"expected I/N.*e\.g\. 1/4"):
            parse_shard(bad)


@pytest.mark.parametrize("args, message", [
    (["batch", "{tmp}", "--shard", "2"], "python -m autograder batch: error: --shard: expected I/N, e.g. 1/4"),
    (["merge", "{tmp}/nope"], "python -m autograder merge: error: {tmp}/nope: no such folder"),
], ids=["shard", "merge-path"])
def test_batch_and_merge_usage_errors_are_one_line_and_exit_2(tmp_path, args, message):
    make_submission(tmp_path / "alice")
    done = subprocess.run([sys.executable, "-m", "autograder", *(a.format(tmp=tmp_path) for a in args)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip() == message.format(tmp=tmp_path)


def test_discover_reads_folders_and_refuses_a_single_submission(tmp_path):
    make_submission(tmp_path / "plain" / "alice")
    make_submission(tmp_path / "plain" / "bob", layout="loose")
    (tmp_path / "plain" / "stray.zip").write_bytes(b"PK")
    subs, warnings, kind = discover(tmp_path / "plain")
    assert [s.id for s in subs] == ["alice", "bob"] and kind == "one folder per submission"
    assert any("stray.zip" in w for w in warnings)
    with pytest.raises(BatchError, match="looks like one submission"):
        discover(make_submission(tmp_path / "single"))
    with pytest.raises(BatchError, match="no such folder"):
        discover(tmp_path / "nope")
    done = subprocess.run([sys.executable, "-m", "autograder", "batch", str(tmp_path / "single")], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1 and "grade" in done.stderr


def _key(folder: Path, tmp_path: Path, **settings) -> str:
    """The key of the only submission in ``folder`` for a batch with ``settings``."""
    batch = Batch(folder, tmp_path / "out", jobs=1, progress=False, **settings)
    return batch.key(batch.submissions[0])


def test_the_key_covers_the_grader_code_the_data_and_the_model(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOGRADER_MODELS", str(tmp_path / "models"))  # fingerprints are remembered there
    monkeypatch.delenv("AUTOGRADER_DATA_DIR", raising=False)
    make_submission(tmp_path / "subs" / "alice")
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"weights")
    settings = dict(model=str(model), rubric=rubric_of_parts(tmp_path / "rubric.yaml", "p3a", "p6d_public"))
    first = _key(tmp_path / "subs", tmp_path, **settings)
    assert _key(tmp_path / "subs", tmp_path, **settings) == first  # nothing changed: done
    # the model's files, though its folder is the same
    (model / "model.safetensors").write_bytes(b"fine-tuned weights")
    second = _key(tmp_path / "subs", tmp_path, **settings)
    assert second != first
    # the course's data: a folder named by AUTOGRADER_DATA_DIR, then a file in it changed
    data = tmp_path / "data"
    data.mkdir()
    (data / "random.txt").write_text("one text\n")
    monkeypatch.setenv("AUTOGRADER_DATA_DIR", str(data))
    third = _key(tmp_path / "subs", tmp_path, **settings)
    (data / "random.txt").write_text("another text\n")
    fourth = _key(tmp_path / "subs", tmp_path, **settings)
    assert len({second, third, fourth}) == 3
    # the grader's own code
    monkeypatch.setattr(batch_module, "code_digest", lambda: "another grader")
    assert _key(tmp_path / "subs", tmp_path, **settings) != fourth


def test_the_code_digest_covers_the_graders_sources_only(tmp_path):
    code = tmp_path / "autograder"
    shutil.copytree(REPO / "autograder", code, ignore=shutil.ignore_patterns("__pycache__"))
    first = code_digest(code)
    (code / "__pycache__").mkdir(exist_ok=True)
    (code / "__pycache__" / "scores.cpython-311.pyc").write_bytes(b"cache")
    (code / "notes.txt").write_text("not code")
    assert code_digest(code) == first
    (code / "rubric.yaml").write_text((code / "rubric.yaml").read_text() + "\n# a comment\n")
    second = code_digest(code)
    (code / "problems" / "p3" / "new_check.py").write_text("x = 1\n")  # not yet tracked by git: graded all the same
    assert len({first, second, code_digest(code)}) == 3


EXTRA_CREDIT_MANIFEST = {"parts": ["p1", "p6g"], "part_max": {"p1": 40.0, "p6g": 6.0}, "max_score": 40.0,
                         "extra_credit": 6.0}


def test_full_marks_for_the_total_leave_extra_credit_out(tmp_path):
    records = [Record("a", total=40.0, parts={"p1": 40.0}), Record("b", total=46.0, parts={"p1": 40.0, "p6g": 6.0}),
               Record("c", total=20.0, parts={"p1": 20.0})]
    shown = write_tables(tmp_path, records, EXTRA_CREDIT_MANIFEST)
    summary = {row["part"]: row for row in read_csv(tmp_path / "summary.csv")}
    assert summary["total"]["max"] == "40" and summary["total"]["share_full_marks"] == "0.667"
    assert summary["p6g"]["max"] == "6" and summary["p6g"]["share_full_marks"] == "0.333"
    total_line = next(line for line in shown.splitlines() if line.startswith("total"))
    assert total_line.split()[1:] == ["40", "35.33", "67%"], shown
    assert "6 extra-credit points" in shown


def test_the_histogram_counts_submissions_in_whole_numbers():
    import matplotlib.pyplot as plt
    records = [Record("a", total=40.0), Record("b", total=46.0), Record("c", total=20.0)]
    figure = histogram_figure(records, max_score=40.0, extra_credit=6.0)
    try:
        ticks = figure.axes[0].get_yticks()
        assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks), ticks
    finally:
        plt.close(figure)


def test_merge_names_the_files_of_each_split(tmp_path):
    """A folder holding the outputs of a batch run whole, split in 2 and split in 3."""
    manifest = {"dir": "x", "ids": ["a", "b"], "settings": {}, "parts": ["p1"], "part_max": {"p1": 1},
                "max_score": 1, "extra_credit": 0}
    for name, shard in [("batch.json", None), ("shard-1-of-2.json", [1, 2]), ("shard-2-of-2.json", [2, 2]),
                        ("shard-1-of-3.json", [1, 3])]:
        (tmp_path / name).write_text(json.dumps({**manifest, "shard": shard}))
    with pytest.raises(MergeError) as error:
        merge([tmp_path], tmp_path)
    assert str(error.value).startswith(f"{tmp_path}: the outputs were split in different ways: not split "
                                       f"(batch.json); 2 shards (shard-1-of-2.json, shard-2-of-2.json); 3 shards "
                                       f"(shard-1-of-3.json). Delete the manifests"), error.value
    assert not (tmp_path / "scores.csv").exists()


def test_scores_csv_says_why_a_submission_was_not_graded():
    from autograder.scores import scores_csv
    records = [Record("a", total=5.0, parts={"p1": 5.0}),
               Record("b", status="rejected", reason="no Python files in the upload (found notes.txt)")]
    assert scores_csv(records, ["p1"]).splitlines() == [
        "id,name,sid,email,total,p1,status,reason", "a,,,,5,5,graded,",
        "b,,,,0,0,rejected,no Python files in the upload (found notes.txt)"]


def test_scores_csv_never_hands_a_spreadsheet_a_formula():
    from autograder.scores import scores_csv
    records = [Record("a", name='=HYPERLINK("http://x","y")', sid="+1", email="@me", total=-1.0,
                      parts={"p1": 0.0}, reason="-2+3")]
    rows = list(csv.reader(io.StringIO(scores_csv(records, ["p1"]))))
    assert rows[1] == ["a", '\'=HYPERLINK("http://x","y")', "'+1", "'@me", "-1", "0", "graded", "'-2+3"]


@contextlib.contextmanager
def _umask(mask: int):
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def test_the_tables_honour_the_umask_and_records_stay_private(tmp_path):
    from autograder.scores import save_record
    records = [Record("a", total=40.0, parts={"p1": 40.0})]
    with _umask(0o027):
        write_tables(tmp_path, records, EXTRA_CREDIT_MANIFEST)
        save_record(tmp_path / "submissions" / "a", records[0])
    for name in ("scores.csv", "summary.csv", "totals.png"):
        assert oct((tmp_path / name).stat().st_mode & 0o777) == oct(0o640), name
    assert oct((tmp_path / "submissions" / "a" / "status.json").stat().st_mode & 0o777) == oct(0o600)
    assert [p.name for p in tmp_path.rglob(".*")] == []  # no temporary file left
