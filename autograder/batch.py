"""``python -m autograder batch DIR``: grade a folder of submissions, in parallel, resumably.

DIR holds one folder per submission (its name is the submission's id), or is a Gradescope
export ("Download Submissions"), whose ``submission_metadata.yml`` maps each folder
``submission_<n>`` to its submitters' names, student ids and e-mails.

Each submission is graded by its own process (``python -m autograder grade``), so gradings
never share state; as root each also gets its own sandbox uid (see isolation.py). A grading
gets a wall-clock limit (``timeout_s``; by default the rubric's ``time_budget`` for a grading,
or the sum of its per-test limits, plus ``OVERHEAD_S``); past it, it is stopped (SIGTERM, then
SIGKILL after ``GRACE_S``) and recorded as ``timeout``. A process that dies without results is recorded as ``crashed``. Nothing a
submission does stops the batch.

Output (``out``): ``submissions/<id>/`` with ``results.json`` (Gradescope's format), ``grade.log``
and ``status.json`` (written last, atomically: it marks the submission done), then ``scores.csv``,
``summary.csv`` and ``totals.png`` (see scores.py). Re-running the same command skips the done
submissions whose files and settings are unchanged (``force`` regrades them), except those whose
grading failed (timeout, crashed, grader_error), which are graded again. Settings: the rubric, the
model (and its files' fingerprint), device, seed, the grader's code and the course's data. So an
interrupted batch resumed ends with exactly the scores of an uninterrupted one.

``shard=(i, n)`` grades only the submissions whose id hashes to shard i of n: about 1/n of
them, the same ones on every machine and on every run, even when submissions are added. Shards
write ``shard-<i>-of-<n>.json`` and ``scores-shard-<i>-of-<n>.csv``; ``merge`` joins them.

Ctrl-C (or SIGTERM) stops every grading at once: each gets SIGINT, then SIGKILL after
``GRACE_S``; their temporary folders are removed and no status.json is written for them, so
the next run grades them again; the caller exits 130.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import isolation
from .results import GRADER_ROW, failure_report, printable, results_json, write_atomically
from .rubric import DEFAULT_RUBRIC, load_rubric, rubric_settings
from .scores import (FAILED, SUBMISSIONS, Record, load_record, manifest_name, save_record, scores_csv,
                     write_tables)
from .roster import (REPO_ROOT, BatchError, Submission, _digest_files, code_digest, data_digest,  # noqa: F401
                     discover, model_fingerprint, parse_shard, shard_of)

OVERHEAD_S = 120.0    # a grading's time beyond its tests' limits: start-up, model, reference outputs
GRACE_S = 10.0        # from SIGTERM/SIGINT to SIGKILL
GIB_PER_GRADING = {True: 3.0, False: 1.0}  # memory one grading may use, with P6 (GPT-2 small) and without
POLL_S = 0.1
REASON_CHARS = 300    # a reason is one line of at most this many characters


def default_jobs(*, needs_model: bool) -> int:
    """Parallel gradings that fit here: min(usable CPUs, available memory / the memory one
    grading may use: 3 GiB with P6's GPT-2, 1 GiB without), and at least 1."""
    cpus = isolation.usable_cpus()
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            info = dict(line.split(":", 1) for line in handle)
        available_gib = int(info["MemAvailable"].split()[0]) / (1 << 20)
    except (OSError, KeyError, ValueError):
        available_gib = float("inf")
    return max(1, min(cpus, int(available_gib // GIB_PER_GRADING[needs_model])))


@dataclass
class _Job:
    submission: Submission
    folder: Path
    key: str
    proc: subprocess.Popen
    tmpdir: Path
    started: float
    deadline: float
    log: object
    stop_sent: float | None = None  # when SIGTERM/SIGINT was sent
    timed_out: bool = False


@dataclass
class Batch:
    """One batch run; ``run()`` grades, ``tables()`` writes the CSVs and the histogram.

    root: the batch folder; out: the output folder.
    jobs: parallel gradings (None: ``default_jobs``).
    shard: (i, n) to grade only shard i of n; None for all.
    force: regrade submissions already done.
    model, device, seed, rubric: as for ``grade`` (model None: AUTOGRADER_MODEL or the default).
    timeout_s: wall-clock limit of one grading (None: the rubric's time_budget, else the sum of
        its per-test limits, + OVERHEAD_S).
    progress: show a tqdm progress bar (on stderr), and a line for each submission not graded as
        usual; False: a line for every submission as it finishes (for logs).
    """

    root: Path
    out: Path
    jobs: int | None = None
    shard: tuple[int, int] | None = None
    force: bool = False
    model: str | None = None
    device: str = "cpu"
    seed: int | None = None
    rubric: Path = DEFAULT_RUBRIC
    timeout_s: float | None = None
    progress: bool = True
    stream: object = None
    submissions: list[Submission] = field(init=False)
    assigned: list[Submission] = field(init=False)
    _tmpdirs: set = field(init=False, default_factory=set)  # the gradings' TMPDIRs not yet removed

    def __post_init__(self):
        self.root, self.out, self.rubric = Path(self.root).resolve(), Path(self.out).resolve(), Path(self.rubric).resolve()
        self.stream = self.stream or sys.stdout
        self.submissions, self.warnings, self.kind = discover(self.root)
        self.assigned = [s for s in self.submissions if self.shard is None or shard_of(s.id, self.shard[1]) == self.shard[0]]
        try:
            tests, settings = load_rubric(self.rubric), rubric_settings(self.rubric)
        except Exception as error:
            raise BatchError(str(error)) from None
        self.needs_model = any(t.needs_model for t in tests)
        self.parts = list(dict.fromkeys(t.part for t in tests))
        self.part_max = {p: sum(t.weight for t in tests if t.part == p) for p in self.parts}
        self.max_score = sum(t.weight for t in tests if not t.extra_credit)
        self.extra_credit = sum(t.weight for t in tests if t.extra_credit)
        self.test_rows = tests
        if self.timeout_s is None:  # the rubric's budget for a whole grading, else the sum of its tests' limits
            self.timeout_s = (settings.time_budget_s or sum(t.timeout for t in tests)) + OVERHEAD_S
        if self.jobs is None:
            self.jobs = default_jobs(needs_model=self.needs_model)
        from . import models
        self.model_spec = self.model or os.environ.get("AUTOGRADER_MODEL") or models.default_model_spec()
        # what every result depends on besides the submission's files, computed once per batch:
        # the grader's code, the course's data, the model's files (when the rubric runs it)
        settings = {"rubric": hashlib.sha256(self.rubric.read_bytes()).hexdigest(), "model": self.model_spec,
                    "model_files": model_fingerprint(self.model_spec) if self.needs_model else None,
                    "device": self.device, "seed": self.seed, "code": code_digest(), "data": data_digest(self.rubric)}
        self.settings = settings
        self._settings_digest = json.dumps(settings, sort_keys=True).encode()

    # -- bookkeeping -----------------------------------------------------------------------
    def folder(self, submission: Submission) -> Path:
        return self.out / SUBMISSIONS / submission.id

    def key(self, submission: Submission) -> str:
        """What the result depends on: the submission's files and ``settings`` (the rubric, the
        model and its files, device, seed, the grader's code and the course's data)."""
        digest = hashlib.sha256(self._settings_digest)
        _digest_files(submission.path, digest)
        return digest.hexdigest()

    def manifest(self) -> dict:
        return {"dir": str(self.root), "ids": [s.id for s in self.submissions],
                "shard": list(self.shard) if self.shard else None, "assigned": [s.id for s in self.assigned],
                "settings": self.settings, "parts": self.parts, "part_max": self.part_max,
                "max_score": self.max_score, "extra_credit": self.extra_credit}

    def _say(self, text: str) -> None:
        """Print a line of the batch's progress (ids and reasons may hold a submission's text: printable)."""
        print(printable(text), file=self.stream, flush=True)

    # -- running ---------------------------------------------------------------------------
    def run(self) -> list[Record]:
        """Grade every assigned submission not done yet; returns the records of all assigned
        ones. Raises KeyboardInterrupt (after stopping every grading) when interrupted."""
        from tqdm import tqdm

        self.out.mkdir(parents=True, exist_ok=True)
        write_atomically(self.out / manifest_name(self.shard), json.dumps(self.manifest(), indent=1),
                         shared=True)
        for line in self.warnings:
            self._say(f"warning: {line}")
        keys = {s.id: self.key(s) for s in self.assigned}
        done, todo, retried = {}, [], 0
        for s in self.assigned:
            record = None if self.force else load_record(self.folder(s))
            if record is not None and record.key == keys[s.id] and record.status not in FAILED:
                done[s.id] = replace(record, name=s.name, sid=s.sid, email=s.email)  # the metadata as it is now
            else:
                todo.append(s)
                retried += record is not None and record.key == keys[s.id]  # failed last time: try again
        shard_text = f", shard {self.shard[0]}/{self.shard[1]}: {len(self.assigned)} of them" if self.shard else ""
        self._say(f"{len(self.submissions)} submissions in {self.root} ({self.kind}){shard_text}")
        skipped = [f"{len(done)} already graded, skipped (--force regrades them)"] if done else []
        if retried:
            skipped.append(f"{retried} that timed out, crashed or failed in the grader "
                           f"{'is' if retried == 1 else 'are'} graded again")
        if skipped:
            self._say("; ".join(skipped))
        if todo:
            # stale tables would look like this run's; they are written again at the end
            for name in ("scores.csv", "summary.csv", "totals.png"):
                (self.out / name).unlink(missing_ok=True)
            self._say(f"grading {len(todo)} with {min(self.jobs, len(todo))} parallel jobs, at most "
                      f"{self.timeout_s:g} s each; results in {self.out}")
            if self.needs_model:
                self._warm_up()
        isolation.become_subreaper()  # orphans of a killed grading come back here to be killed
        running: dict[int, _Job] = {}
        pending = list(todo)
        bar = tqdm(total=len(todo), unit="submission", desc="grading", file=sys.stderr, disable=not self.progress,
                   dynamic_ncols=True)
        finished = 0
        try:
            while pending or running:
                while pending and len(running) < self.jobs:
                    job = self._start(pending.pop(0), keys)
                    running[job.proc.pid] = job
                time.sleep(POLL_S)
                for pid, job in list(running.items()):
                    if self._poll(job):
                        with _interrupts_deferred():  # a record is written whole, or not at all
                            record = self._finish(job, keep=set(running) - {pid})
                            del running[pid]
                        done[record.id] = record
                        finished += 1
                        if not self.progress:  # a line per submission shows the progress in logs
                            self._say(f"[{finished}/{len(todo)}] {self._outcome(record)}")
                        elif record.status != "graded":  # the bar shows the rest
                            bar.write(printable(self._outcome(record)), file=self.stream)
                        bar.update(1)
        except BaseException:
            self._stop_all(list(running.values()))
            raise
        finally:
            bar.close()
        return [done[s.id] for s in self.assigned]

    def _outcome(self, record: Record) -> str:
        """One line for a finished grading: its id, status and score, and why when not graded."""
        line = f"{record.id}: {record.status}, {record.total:g}/{self.max_score:g}"
        if record.reason:
            line += f" ({record.reason})"
        if record.status in FAILED:
            line += f"; log: {self.out / SUBMISSIONS / record.id / 'grade.log'}"
        return line

    def _warm_up(self) -> None:
        """Build P6's reference outputs once, before parallel gradings would each build them."""
        command = [sys.executable, "-m", "autograder", "prepare-model", "--no-gpt2", "--model", self.model_spec,
                   "--device", self.device, "--rubric", str(self.rubric)]
        proc = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)
        try:
            output, _ = proc.communicate()
        except BaseException:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        last = (output.strip().splitlines() or [""])[-1]
        self._say(last if proc.returncode == 0 else f"warning: preparing the model failed: {last}")

    def _start(self, submission: Submission, keys: dict) -> _Job:
        folder = self.folder(submission)
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("status.json", "results.json"):  # not done until this grading says so
            (folder / name).unlink(missing_ok=True)
        tmpdir = Path(tempfile.mkdtemp(prefix="autograder-batch-"))
        self._tmpdirs.add(tmpdir)  # removed when the job ends, or by _stop_all
        os.chmod(tmpdir, 0o711)  # the sandbox user must reach the grading's folders inside it
        env = {**os.environ, "TMPDIR": str(tmpdir), "PYTHONUNBUFFERED": "1"}
        env.setdefault("OMP_NUM_THREADS", str(max(1, isolation.usable_cpus() // self.jobs)))  # no oversubscription
        command = [sys.executable, "-m", "autograder", "grade", str(submission.path), "--results",
                   str(folder / "results.json"), "--rubric", str(self.rubric), "--device", self.device]
        if self.model:
            command += ["--model", self.model]
        if self.seed is not None:
            command += ["--seed", str(self.seed)]
        log = open(folder / "grade.log", "w", encoding="utf-8", opener=_private)
        os.fchmod(log.fileno(), 0o600)  # one left by an earlier version may be readable by others
        now = time.monotonic()
        proc = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        return _Job(submission, folder, keys[submission.id], proc, tmpdir, now, now + self.timeout_s, log)

    def _poll(self, job: _Job) -> bool:
        """True once the job's process has ended; enforces its time limit."""
        if job.proc.poll() is not None:
            return True
        now = time.monotonic()
        if job.stop_sent is None and now > job.deadline:
            job.timed_out, job.stop_sent = True, now
            job.proc.send_signal(signal.SIGTERM)  # the grading cleans up its sandbox and exits
        elif job.stop_sent is not None and now > job.stop_sent + GRACE_S:
            _kill_group(job.proc)
        return False

    def _finish(self, job: _Job, *, keep: set[int]) -> Record:
        """Record an ended job (its results, or a failure report saying why there are none).
        keep: the pids of the gradings still running."""
        job.log.close()
        _kill_strays(keep=keep)
        shutil.rmtree(job.tmpdir, ignore_errors=True)
        self._tmpdirs.discard(job.tmpdir)
        _remove_partial_writes(job.folder)  # a killed grading's reserved space or half-written file
        results = job.folder / "results.json"
        data, status, message = None, "crashed", ""
        if job.timed_out:
            status, message = "timeout", (f"Grading did not finish within the batch's limit of {self.timeout_s:g} s "
                                          f"and was stopped; see grade.log")
            with open(job.folder / "grade.log", "a", encoding="utf-8") as log:
                log.write(f"\nbatch: {message}\n")
        else:
            try:
                data = json.loads(results.read_text(encoding="utf-8"))
                status = data.get("extra_data", {}).get("status", "graded")
            except (OSError, ValueError):
                message = (f"The grading process ended with exit status {job.proc.returncode} before writing its "
                           f"results; see grade.log")
        if data is None:
            report = failure_report(self.test_rows, message, execution_time=time.monotonic() - job.started,
                                    status=status)
            data = results_json(report)
            write_atomically(results, json.dumps(data, indent=1))  # the owner's only, as a grading's own
        elif status != "graded":
            message = _reason(data)
        parts = {p: 0.0 for p in self.parts}
        for row in data.get("tests", []):
            part = (row.get("tags") or [""])[0]
            if part in parts:
                parts[part] = round(parts[part] + float(row.get("score", 0.0)), 6)
        s = job.submission
        record = Record(s.id, s.name, s.sid, s.email, status, round(float(data.get("score", 0.0)), 6), parts,
                        job.key, round(time.monotonic() - job.started, 1),
                        _one_line(message.replace(str(s.path), s.id)))  # its id: the same wherever DIR is
        save_record(job.folder, record)
        return record

    def _stop_all(self, jobs: list[_Job]) -> None:
        """Interrupted: SIGINT to every grading, SIGKILL after GRACE_S, then clean up; no
        record is written for them, so the next run grades them again."""
        for job in jobs:
            if job.proc.poll() is None:
                job.proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + GRACE_S
        for job in jobs:
            try:
                job.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _kill_group(job.proc)
        _kill_strays(keep=set())  # also a grading started just before the interrupt, not yet listed
        for job in jobs:
            job.log.close()
        # every submission without its record loses its results: the stopped ones, and one whose
        # grading started just as the interrupt came (killed above, but not yet among ``jobs``)
        for submission in self.assigned:
            folder = self.folder(submission)
            if not (folder / "status.json").exists():
                (folder / "results.json").unlink(missing_ok=True)
                _remove_partial_writes(folder)
        for tmpdir in list(self._tmpdirs):
            shutil.rmtree(tmpdir, ignore_errors=True)
            self._tmpdirs.discard(tmpdir)

    # -- tables ----------------------------------------------------------------------------
    def tables(self, records: list[Record]) -> str:
        """Write the run's tables; returns what to print. A shard writes its own CSV only."""
        if self.shard:
            name = f"scores-shard-{self.shard[0]}-of-{self.shard[1]}.csv"
            # the owner's only: other shards may still grade, and their students must not read these names
            write_atomically(self.out / name, scores_csv(records, self.parts))
            return (f"wrote {self.out / name}; when every shard is done, join them with "
                    f"`python -m autograder merge {self.out}` (or list each shard's folder)")
        summary = write_tables(self.out, records, self.manifest())
        return f"{summary}\nwrote {self.out / 'scores.csv'}, {self.out / 'summary.csv'}, {self.out / 'totals.png'}"


def _private(path: str, flags: int) -> int:
    """An opener for a file its owner alone may read (the students graded meanwhile must not)."""
    return os.open(path, flags, 0o600)


def _reason(data: dict) -> str:
    """Why a grading's results.json is not a plain grading: the row saying why the upload could
    not be graded (rejected, or the grader failed before grading), else the tests the grader
    failed on."""
    rows = data.get("tests", [])
    for row in rows:
        if row.get("name") == GRADER_ROW.title:
            return str(row.get("output", ""))
    faults = [row for row in rows if "not a fault of your submission" in str(row.get("output", ""))]
    if not faults:
        return "the grader failed on some tests; see results.json"
    last_line = str(faults[0]["output"]).strip().splitlines()[-1]
    return f"the grader failed on {len(faults)} tests, the first {faults[0]['name']}: {last_line}"


def _one_line(text: str) -> str:
    """``text``'s first line, cut to REASON_CHARS."""
    line = (text.strip().splitlines() or [""])[0]
    return line if len(line) <= REASON_CHARS else line[:REASON_CHARS - 1] + "…"


def _remove_partial_writes(folder: Path) -> None:
    """Hidden files a grading process leaves when it is killed mid-way: the space it reserved
    for results.json, a temporary file not yet renamed into place."""
    for path in folder.glob(".results*"):
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def _interrupts_deferred():
    """SIGINT and SIGTERM wait until the block is done (then the interrupt happens as usual)."""
    signals = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def _children_table() -> dict[int, list[int]]:
    """ppid -> child pids, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as handle:
                    ppid = int(handle.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    return children


def _kill_strays(*, keep: set[int]) -> None:
    """Kill the processes reparented to this one (a subreaper) by gradings that died, with
    their descendants, and reap them. ``keep``: the live gradings (this process's own children)."""
    me = os.getpid()
    table = _children_table()
    strays = [p for p in table.get(me, []) if p not in keep]
    stack, targets = list(strays), set()
    while stack:
        pid = stack.pop()
        if pid not in targets:
            targets.add(pid)
            stack.extend(table.get(pid, []))
    for pid in targets:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    for pid in strays:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
