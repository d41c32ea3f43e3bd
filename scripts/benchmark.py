"""Benchmark: grading time and memory with a GPT-2 of the real size, and with the tiny model.

    .venv/bin/python scripts/benchmark.py [--device cpu|cuda] [--skip-tiny] [--data DIR] [--out FILE]
                                          [--cpus 0.5] [--memory-mb 2048] [--per-token]

Needs nothing from the network. It builds a GPT-2 of GPT-2 small's size (124M parameters: 12
layers, width 768, vocabulary 50257, context 1024) with random weights from a fixed seed and the
tiny model's byte-level tokenizer (ids < 257 fit the vocabulary), cached in
models/benchmark/gpt2-small-random. Random weights cost exactly what the trained ones do.
Then, for each model, in a fresh models folder (so nothing is reused from earlier runs):

1. imports the checkpoint (``--model DIR``) and builds the P6 reference cache, timed;
2. grades ``reference/`` the first time: this also measures the reference's time per model test
   (the calibration that model tests' time limits derive from), timed separately;
3. grades ``reference/`` again, as every later submission is graded: wall time, the time spent
   inside the reference's own calls (student code) and the rest (the grader's overhead: fork
   server start-up, forks, the grader's harness work in the children, comparisons), the fork
   server's start-up (torch import, model mapping), the score, and the peak memory of all
   processes together: the proportional set size (PSS) of the grading process and all its
   descendants, summed, sampled every 100 ms (shared pages such as the model's weights count
   once in all).

--per-token also grades p6d with a log_likelihood that calls the model once per token (right but
unbatched), to show whether it passes within the derived time limits.

--cpus and --memory-mb confine the later grading as Gradescope's CPU and memory settings would
(cgroups; root only): its time then says how long a grading takes there, and a memory limit too
small shows as processes killed and points lost.

Prints a table and writes the figures as JSON (default benchmark.json). Each grading runs in a
child process of this script: run it on a quiet machine, or read the ratios.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

REAL_SIZE = dict(n_layer=12, n_head=12, n_embd=768, n_positions=1024, vocab_size=50257)
SEED = 20190929  # the course's seed
SAMPLE_EVERY_S = 0.1

# Run in a child: grade and print the report as JSON (rows with times, the fork server's start-up).
_GRADE = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
from autograder.runner import grade
start = time.monotonic()
report = grade(sys.argv[2], model=sys.argv[3], device=sys.argv[4], seed=int(sys.argv[5]), results_path=sys.argv[6])
print(json.dumps({"wall_s": time.monotonic() - start, "score": report.score, "max_score": report.max_score,
                  "launcher": report.launcher, "notes": report.notes,
                  "rows": [{"id": r.test.test_id, "score": r.score, "max": r.test.weight, "passed": r.passed,
                            "seconds": r.seconds, "student_seconds": r.student_seconds, "timeout": r.test.timeout,
                            "peak_rss_mb": r.peak_rss_mb,
                            "output": r.output[:300] if not r.passed else ""} for r in report.results]}))
"""

_GRADE_RUBRIC = _GRADE.replace("results_path=sys.argv[6])", "results_path=sys.argv[6], rubric=sys.argv[7])")

# Run in a child: import the checkpoint and build the reference cache, timed.
_BUILD = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
from autograder import models
from autograder.p6.reference import reference_outputs
from autograder.rubric import data_files
start = time.monotonic()
model_dir = models.resolve_model(sys.argv[2])
imported = time.monotonic()
outputs = reference_outputs(model_dir, device=sys.argv[3], files=data_files())
print(json.dumps({"import_s": imported - start, "cache_s": time.monotonic() - imported,
                  "texts": len(outputs.texts), "prompts": len(outputs.prompts), "snippets": len(outputs.snippets)}))
"""


def build_real_size(dest: Path) -> Path:
    """A GPT-2 of GPT-2 small's size with random weights (fixed seed) and a byte tokenizer."""
    from autograder import models
    if models.is_prepared(dest):
        return dest
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel
    tiny = models.resolve_model(models.TINY)
    building = Path(tempfile.mkdtemp(prefix=".building-", dir=dest.parent if dest.parent.exists() else None))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        GPT2LMHeadModel(GPT2Config(**REAL_SIZE, bos_token_id=models.EOT_ID, eos_token_id=models.EOT_ID)).save_pretrained(building)
    for name in ("vocab.json", "merges.txt"):
        shutil.copyfile(tiny / name, building / name)
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.rename(building, dest)
    return dest


def _process_tree(root: int) -> list[int]:
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as handle:
                    parents[int(entry)] = int(handle.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                pass
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    tree, frontier = {root}, [root]
    while frontier:
        for pid in children.get(frontier.pop(), ()):
            if pid not in tree:
                tree.add(pid)
                frontier.append(pid)
    return sorted(tree)


def _memory_kb(pid: int) -> tuple[int, int]:
    """(Pss, Rss) of a process in kB; (0, 0) if it is gone."""
    values = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as handle:
            for line in handle:
                key, _, rest = line.partition(b":")
                if key in (b"Pss", b"Rss"):
                    values[key] = int(rest.split()[0])
    except (OSError, ValueError):
        pass
    return values.get(b"Pss", 0), values.get(b"Rss", 0)


def _role(pid: int, grader: int) -> str:
    """What a process of the grading's tree is: the grader, the fork server, or a child."""
    if pid == grader:
        return "grader"
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            parent = int(handle.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return "process"
    return "fork-server" if parent == grader and _is_launcher(pid) else "child"


def _is_launcher(pid: int) -> bool:
    """The fork server, not one of the children forked from it (same command line): it runs as
    the grader's user, in the grader's PID namespace."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            command = handle.read()
        with open(f"/proc/{pid}/status", "rb") as handle:
            fields = dict(line.split(b":", 1) for line in handle if b":" in line)
    except OSError:
        return False
    return (b".launcher import main" in command and int(fields[b"Uid"].split()[0]) == os.geteuid()
            and len(fields.get(b"NSpid", b"0").split()) == 1)


class Confinement:
    """A CPU share and memory limit for the gradings, as Gradescope sets them (its "CPU" and
    "memory" settings are such limits): cgroups made here (root only; cgroup v1 or v2), which a
    grading joins before it starts, its children with it. None of them: no limit."""

    def __init__(self, *, cpus: float | None, memory_mb: int | None):
        self.folders: list[Path] = []
        self.cpus, self.memory_mb = cpus, memory_mb
        if cpus is None and memory_mb is None:
            return
        name = f"autograder-benchmark-{os.getpid()}"
        v1 = Path("/sys/fs/cgroup/cpu/cgroup.procs").exists()
        if v1:
            if cpus is not None:
                self._make(Path("/sys/fs/cgroup/cpu") / name,
                           {"cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": str(int(cpus * 100000))})
            if memory_mb is not None:
                self._make(Path("/sys/fs/cgroup/memory") / name, {"memory.limit_in_bytes": str(memory_mb << 20)})
        else:
            settings = {}
            if cpus is not None:
                settings["cpu.max"] = f"{int(cpus * 100000)} 100000"
            if memory_mb is not None:
                settings["memory.max"] = str(memory_mb << 20)
            self._make(Path("/sys/fs/cgroup") / name, settings)

    def _make(self, folder: Path, settings: dict) -> None:
        folder.mkdir()
        self.folders.append(folder)
        for key, value in settings.items():
            (folder / key).write_text(value)

    def join(self) -> None:
        """In the child, before exec: move this process into the cgroups."""
        for folder in self.folders:
            (folder / "cgroup.procs").write_text(str(os.getpid()))

    def oom_kills(self) -> int:
        """How often the memory limit killed a process (cgroup v1's memory.oom_control, v2's
        memory.events)."""
        for folder in self.folders:
            for name, key in (("memory.oom_control", "oom_kill"), ("memory.events", "oom_kill")):
                file = folder / name
                if file.exists():
                    for line in file.read_text().splitlines():
                        if line.startswith(key + " "):
                            return int(line.split()[1])
        return 0

    def remove(self) -> None:
        for folder in self.folders:
            try:
                folder.rmdir()
            except OSError:
                pass


NO_CONFINEMENT = Confinement(cpus=None, memory_mb=None)


def run_measured(command: list[str], env: dict, confinement: Confinement = NO_CONFINEMENT) -> tuple[dict, dict]:
    """Run command (which prints one JSON line last); returns (its JSON, peak memory of its tree)."""
    process = subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=confinement.join if confinement.folders else None)
    peak = {"pss_mb": 0.0, "rss_sum_mb": 0.0, "processes": 0}
    done = threading.Event()

    def sample():
        while not done.is_set():
            tree = _process_tree(process.pid)
            memory = {pid: _memory_kb(pid) for pid in tree}
            pss = sum(m[0] for m in memory.values())
            if pss / 1024 > peak["pss_mb"]:
                peak.update(pss_mb=round(pss / 1024, 1), rss_sum_mb=round(sum(m[1] for m in memory.values()) / 1024, 1),
                            processes=len(tree),
                            by_process={f"{_role(pid, process.pid)} {pid}": round(m[0] / 1024, 1)
                                        for pid, m in sorted(memory.items(), key=lambda item: -item[1][0])})
            done.wait(SAMPLE_EVERY_S)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = process.communicate()
    done.set()
    sampler.join()
    if process.returncode != 0:
        raise SystemExit(f"{command[:3]} failed with status {process.returncode}:\n{err[-3000:]}")
    return json.loads(out.strip().splitlines()[-1]), peak


def measure(model: str, *, device: str, models_root: Path, data: Path | None, seed: int,
            confinement: Confinement = NO_CONFINEMENT) -> dict:
    env = {**os.environ, "AUTOGRADER_MODELS": str(models_root), "PYTHONPATH": str(REPO)}
    env.pop("AUTOGRADER_DATA_DIR", None)
    if data is not None:
        env["AUTOGRADER_DATA_DIR"] = str(data)
    python = sys.executable
    start = time.monotonic()
    built, build_peak = run_measured([python, "-c", _BUILD, str(REPO), model, device], env)
    built["wall_s"] = time.monotonic() - start
    with tempfile.TemporaryDirectory() as results:
        first, first_peak = run_measured([python, "-c", _GRADE, str(REPO), str(REPO / "reference"), model, device,
                                          str(seed), f"{results}/first.json"], env)
        second, peak = run_measured([python, "-c", _GRADE, str(REPO), str(REPO / "reference"), model, device,
                                     str(seed), f"{results}/second.json"], env, confinement)
    student = sum(r["student_seconds"] for r in second["rows"])
    model_rows = [r for r in second["rows"] if r["id"].startswith("p6")]
    return {
        "model": model, "device": device, "cpu_count": os.cpu_count(),
        "import_checkpoint_s": round(built["import_s"], 1), "reference_cache_s": round(built["cache_s"], 1),
        "instances": {k: built[k] for k in ("texts", "prompts", "snippets")},
        "first_grading_s": round(first["wall_s"], 1),
        "calibration_s": round(first["wall_s"] - second["wall_s"], 1),
        "grading_s": round(second["wall_s"], 1), "student_s": round(student, 1),
        "overhead_s": round(second["wall_s"] - student, 1),
        "overhead_share": round((second["wall_s"] - student) / second["wall_s"], 3),
        "score": second["score"], "max_score": second["max_score"],
        "lost": {r["id"]: r["output"] for r in second["rows"] if not r["passed"]},
        "launcher": second["launcher"],
        "peak_memory": peak, "peak_memory_cache_build": build_peak, "peak_memory_first_grading": first_peak,
        "confinement": {"cpus": confinement.cpus, "memory_mb": confinement.memory_mb,
                        "oom_kills": confinement.oom_kills()},
        "p6_tests": {r["id"]: {"seconds": round(r["seconds"], 2), "student_seconds": round(r["student_seconds"], 2),
                               "peak_rss_mb": round(r["peak_rss_mb"]),
                               "timeout": round(r["timeout"], 1)} for r in model_rows},
    }


PER_TOKEN_LIKELIHOOD = '''import torch


def log_likelihood(model, text):
    """One token at a time, with the cache: right, and unbatched."""
    with torch.no_grad():
        total, past = 0.0, None
        for t in range(text.shape[1] - 1):
            logits, past = model(text[:, t:t + 1], past=past)
            total += torch.log_softmax(logits[0, -1].double(), dim=-1)[text[0, t + 1]].item()
        return total
'''


def measure_per_token(model: str, *, device: str, models_root: Path, seed: int) -> dict:
    """Grade p6d with a log_likelihood that calls the model once per token (right but unbatched),
    to show whether such a submission passes within the derived time limits."""
    import yaml
    from autograder.rubric import DEFAULT_RUBRIC
    env = {**os.environ, "AUTOGRADER_MODELS": str(models_root), "PYTHONPATH": str(REPO)}
    env.pop("AUTOGRADER_DATA_DIR", None)
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        shutil.copytree(REPO / "reference" / "submission", folder / "upload" / "submission")
        (folder / "upload" / "submission" / "likelihood.py").write_text(PER_TOKEN_LIKELIHOOD)
        data = yaml.safe_load(DEFAULT_RUBRIC.read_text(encoding="utf-8"))
        data["tests"] = {k: v for k, v in data["tests"].items() if v["part"] == "p6d"}
        (folder / "rubric.yaml").write_text(yaml.safe_dump(data))
        os.chmod(folder, 0o755)
        graded, _ = run_measured([sys.executable, "-c", _GRADE_RUBRIC, str(REPO), str(folder / "upload"), model, device,
                                  str(seed), str(folder / "results.json"), str(folder / "rubric.yaml")], env)
    return {r["id"]: {"passed": r["passed"], "seconds": round(r["seconds"], 1), "timeout": round(r["timeout"], 1)}
            for r in graded["rows"] if r["id"].startswith("p6d")}


def _table(results: list[dict]) -> str:
    rows = [("", *[f"{r['model_name']} ({r['device']})" for r in results])]
    def add(label, fn):
        rows.append((label, *[fn(r) for r in results]))
    add("import checkpoint", lambda r: f"{r['import_checkpoint_s']} s")
    add("reference cache build", lambda r: f"{r['reference_cache_s']} s")
    add("calibration (first grading - later)", lambda r: f"{r['calibration_s']} s")
    add("grading reference/", lambda r: f"{r['grading_s']} s, {r['score']:g}/{r['max_score']:g} (+extra credit)")
    add("  in the reference's own calls", lambda r: f"{r['student_s']} s")
    add("  overhead", lambda r: f"{r['overhead_s']} s ({r['overhead_share']:.0%} of wall)")
    add("  fork server start-up", lambda r: f"{r['launcher'].get('start_s', '?')} s (torch {r['launcher'].get('torch_s', '?')} s, "
                                            f"model {r['launcher'].get('model_s', '?')} s)")
    add("peak memory, all processes (PSS)", lambda r: f"{r['peak_memory']['pss_mb']:.0f} MB in {r['peak_memory']['processes']} processes")
    add("  by process at the peak", lambda r: ", ".join(f"{k.split()[0]} {v:.0f}" for k, v in
                                                       list(r["peak_memory"].get("by_process", {}).items())[:4]))
    add("peak memory, cache build (PSS)", lambda r: f"{r['peak_memory_cache_build']['pss_mb']:.0f} MB")
    add("tests that lost points", lambda r: ", ".join(r["lost"]) or "none")
    if any("per_token" in r for r in results):
        add("per-token log_likelihood (p6d)", lambda r: ", ".join(
            f"{k} {'passed' if v['passed'] else 'FAILED'} in {v['seconds']} s of {v['timeout']} s"
            for k, v in r.get("per_token", {}).items()) or "-")
    if any(r["confinement"]["cpus"] or r["confinement"]["memory_mb"] for r in results):
        add("grading confined to", lambda r: f"{r['confinement']['cpus'] or 'all'} CPUs, "
                                             f"{r['confinement']['memory_mb'] or 'unlimited'} MiB, "
                                             f"{r['confinement']['oom_kills']} processes killed for memory")
    width = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(cell).ljust(w) for cell, w in zip(row, width)) for row in rows]
    for r in results:
        lines.append(f"\n{r['model_name']} ({r['device']}), P6 tests: seconds / in the reference's calls / time limit "
                     f"/ the child's peak RSS (MB)")
        lines += [f"  {test:<26} {t['seconds']:7.2f} {t['student_seconds']:7.2f} {t['timeout']:7.1f} {t['peak_rss_mb']:6d}"
                  for test, t in r["p6_tests"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--skip-tiny", action="store_true", help="measure the real-size model only")
    parser.add_argument("--skip-real-size", action="store_true", help="measure the tiny model only")
    parser.add_argument("--data", type=Path, default=None,
                        help="the course's data files (AUTOGRADER_DATA_DIR), e.g. ../shared/data/course")
    parser.add_argument("--seed", type=int, default=1, help="seed of the gradings (default 1)")
    parser.add_argument("--out", type=Path, default=Path("benchmark.json"))
    parser.add_argument("--per-token", action="store_true",
                        help="also grade p6d with a log_likelihood that runs the model once per token")
    parser.add_argument("--cpus", type=float, default=None,
                        help="CPU share of the (later) grading, e.g. 0.5, as Gradescope's CPU setting (root: cgroups)")
    parser.add_argument("--memory-mb", type=int, default=None,
                        help="memory limit of the (later) grading in MiB, as Gradescope's memory setting (root: cgroups)")
    args = parser.parse_args(argv)
    confinement = Confinement(cpus=args.cpus, memory_mb=args.memory_mb)
    from autograder import models
    plans = []
    if not args.skip_real_size:
        plans.append(("gpt2-small-random", str(build_real_size(models.models_root() / "benchmark" / "gpt2-small-random"))))
    if not args.skip_tiny:
        plans.append(("tiny", "tiny"))
    results = []
    for name, model in plans:
        with tempfile.TemporaryDirectory(prefix="autograder-benchmark-") as root:
            os.chmod(root, 0o755)  # the sandbox's user reads the model folders in it
            print(f"measuring {name} on {args.device} ...", file=sys.stderr, flush=True)
            try:
                results.append({"model_name": name, **measure(model, device=args.device, models_root=Path(root),
                                                                 data=args.data, seed=args.seed, confinement=confinement)})
                if args.per_token:
                    results[-1]["per_token"] = measure_per_token(model, device=args.device, models_root=Path(root),
                                                                 seed=args.seed)
            finally:
                if name == plans[-1][0]:
                    confinement.remove()
    print(_table(results))
    args.out.write_text(json.dumps({"machine": {"cpu_count": os.cpu_count(), "python": sys.version.split()[0]},
                                    "results": results}, indent=1))
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
