"""Grade P6 on CPU and on CUDA and check that the verdicts and scores are the same.

    .venv/bin/python scripts/gpu_check.py [--real-size] [--seed N]

Grades, with a rubric of P6's tests only and one fixed seed: the reference, a sampler without
top-k filtering, and a log-likelihood that averages instead of summing, first on the CPU, then
on CUDA. The reference cache is built by the first (CPU) run and reused on CUDA, so the CUDA
verdicts are also judged against CPU-computed reference outputs, the cross-device case the
checks' tolerances are for. Prints one table row per (submission, test) with both scores and
exits 1 when a verdict or score differs between devices, the reference loses a point, or a
wrong submission does not lose exactly the tests it should.

--real-size adds a GPT-2 small-sized model with random weights (124M parameters, built here
from a fixed seed, byte-level tokenizer), grading the reference only.
Run time on one H100 with 16 cores: about 3 minutes for the tiny model, 4 more with --real-size.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from autograder import models  # noqa: E402
from autograder.rubric import DEFAULT_RUBRIC  # noqa: E402
from autograder.runner import grade  # noqa: E402

REFERENCE = REPO / "reference"
WRONG = {
    "sample_without_top_k": ("sample.py", "            logits = top_k_logits(logits[:, -1, :], k=config.top_k)  # (1, V)",
                             "            logits = logits[:, -1, :]",
                             {"p6c_support", "p6c_distribution_public", "p6c_distribution_random"}),
    "log_likelihood_averaged": ("likelihood.py", "        return total", "        return total / targets.numel()",
                                {"p6d_public", "p6d_random"}),
}


def p6_rubric(folder: Path) -> Path:
    data = yaml.safe_load(DEFAULT_RUBRIC.read_text(encoding="utf-8"))
    data["tests"] = {k: v for k, v in data["tests"].items() if v["part"].startswith("p6")}
    path = folder / "rubric" / "rubric.yaml"  # in a folder of its own: grading protects the rubric's folder
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def wrong_submission(folder: Path, name: str) -> Path:
    file, old, new, _ = WRONG[name]
    target = folder / name / "submission"
    shutil.copytree(REFERENCE / "submission", target, ignore=shutil.ignore_patterns("__pycache__"))
    source = (target / file).read_text()
    assert source.count(old) == 1, (name, old)
    (target / file).write_text(source.replace(old, new))
    return target.parent


def real_size_model(folder: Path) -> Path:
    """A GPT-2 small-sized checkpoint with random weights (GPT-2's own init) and the tiny
    model's byte-level tokenizer (ids < 257 are valid GPT-2 ids)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel
    target = folder / "gpt2-size-random"
    torch.manual_seed(20190929)
    GPT2LMHeadModel(GPT2Config()).save_pretrained(target)
    tiny = models.resolve_model("tiny")
    for name in ("vocab.json", "merges.txt"):
        shutil.copyfile(tiny / name, target / name)
    return target


def verdicts(report) -> dict[str, tuple[bool, float]]:
    return {row.test.test_id: (row.passed, row.score) for row in report.results}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--real-size", action="store_true", help="also grade the reference on a GPT-2 small-sized random model")
    parser.add_argument("--seed", type=int, default=12345)
    parser.add_argument("--devices", default="cpu,cuda", help="the two devices compared (default cpu,cuda; "
                                                               "cpu,cpu tries the script without a GPU)")
    args = parser.parse_args(argv)
    first, second = args.devices.split(",")
    import torch
    if "cuda" in (first, second) and not torch.cuda.is_available():
        print("gpu_check: CUDA is not available here", file=sys.stderr)
        return 2
    if os.geteuid() == 0:
        from autograder.isolation import prepare_sandbox_user
        print(prepare_sandbox_user())
    folder = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    problems, rows = [], []
    try:
        rubric = p6_rubric(folder)
        submissions = {"reference": (REFERENCE, set())}
        submissions.update({name: (wrong_submission(folder, name), spec[3]) for name, spec in WRONG.items()})
        plans = [("tiny", submissions)]
        if args.real_size:
            plans.append((str(real_size_model(folder)), {"reference": submissions["reference"]}))
        for model, chosen in plans:
            for name, (upload, lose) in chosen.items():
                results, seconds = [], []  # one entry per device, in order
                for device in (first, second):
                    start = time.monotonic()
                    report = grade(upload, model=model, device=device, seed=args.seed, rubric=rubric)
                    seconds.append(time.monotonic() - start)
                    results.append(verdicts(report))
                    failed = {t for t, (passed, _) in results[-1].items() if not passed}
                    if failed != lose:
                        problems.append(f"{name} on {device} ({model}): lost {sorted(failed)}, expected {sorted(lose)}")
                        problems += [f"  {r.test.test_id}: {r.output[:600]}" for r in report.results if r.test.test_id in failed ^ lose]
                label = "tiny" if model == "tiny" else "gpt2-size"
                for test_id in results[0]:
                    cpu, cuda = results[0][test_id], results[1][test_id]
                    rows.append((label, name, test_id, cpu, cuda))
                    if cpu != cuda:
                        problems.append(f"{name} ({label}) {test_id}: {first} {cpu}, {second} {cuda}")
                print(f"{label:9} {name:24} graded in {seconds[0]:.0f} s on {first}, {seconds[1]:.0f} s on {second}",
                      flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"\n{'model':9} {'submission':24} {'test':26} {first:>12} {second:>12}  same")
    for label, name, test_id, cpu, cuda in rows:
        show = lambda v: f"{'pass' if v[0] else 'FAIL'} {v[1]:g}"  # noqa: E731
        print(f"{label:9} {name:24} {test_id:26} {show(cpu):>12} {show(cuda):>12}  {'yes' if cpu == cuda else 'NO'}")
    caches = sorted((models.models_root() / "reference-cache").glob("*.json"))
    print(f"\nreference caches: {', '.join(p.name for p in caches)}")
    if problems:
        print("\nPROBLEMS:\n" + "\n".join(problems))
        return 1
    print(f"\n{first} and {second} give the same verdicts and scores.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
