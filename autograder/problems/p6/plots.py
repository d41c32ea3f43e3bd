"""``python -m autograder plots``: the course's figure, a histogram of log-likelihoods per dataset.

Scores the course's random, Shakespeare and NeurIPS strings (from the rubric's data section or
AUTOGRADER_DATA_DIR; without them, 100 random-letter strings made here stand for the random
set, and the missing files are named) with a submission's ``log_likelihood``, or the
reference's, run in the sandbox like any graded code, and writes one PNG per dataset plus one
with all of them when there are several (with one dataset it would be the same figure twice),
with matplotlib's Agg backend (no display needed). Whatever goes wrong with the submission or
the model is a PlotError with a one-line message.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ... import models
from ...compare import CheckFailed, as_real, check_each, feedback
from ...registry import HookError
from .data import CourseTexts, DATASETS, load_course_texts, random_letters
from .reference import REFERENCE_UPLOAD, model_sizes

CHUNK = 10  # texts per request, so the progress bar moves
TIME_LIMIT_S = 3600.0
COLOURS = {"random": "tab:red", "shakespeare": "tab:blue", "neurips": "tab:green"}
TITLES = {"random": "random letters", "shakespeare": "Shakespeare", "neurips": "NeurIPS papers"}


CALL = "log_likelihood(model, text)"


class PlotError(HookError):
    """The log-likelihoods could not be computed; the message says why (the submission's error)."""


def _one_line(text: str, limit: int = 400) -> str:
    """A message on one line (the command prints one line per error), at most ``limit`` characters."""
    line = " ".join(part.strip() for part in text.splitlines() if part.strip())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def datasets(texts: CourseTexts) -> dict[str, list[str]]:
    """The strings to score, by dataset; random letters made here when the course's are absent."""
    chosen = {name: list(texts.dataset(name)) for name in DATASETS if texts.dataset(name)}
    if "random" not in chosen:
        chosen = {"random": random_letters(100, length=100, seed=20190929), **chosen}
    return chosen


def score(upload: Path, *, model_dir: Path, device: str, strings: dict[str, list[str]],
          progress: bool = True) -> dict[str, np.ndarray]:
    """log_likelihood(model, text) of every string, by dataset, computed in the sandbox.
    Raises PlotError when the submission fails or returns something that is not a number."""
    from tqdm import tqdm

    from ...sandbox import Sandbox, StudentCodeError
    tokenizer = models.load_tokenizer(model_dir)
    context = model_sizes(model_dir)["context"]
    scores = {}
    with Sandbox(Path(upload), model_dir=Path(model_dir), device=device) as sandbox, \
            sandbox.process(time_limit_s=TIME_LIMIT_S, label="plots") as process, \
            tqdm(total=sum(map(len, strings.values())), desc="log-likelihoods", unit="text", disable=not progress) as bar:
        for name, items in strings.items():
            tokens = [tokenizer.encode(text)[:context] for text in items]
            values = []
            for start in range(0, len(tokens), CHUNK):
                try:
                    answers = process.harness("p6_log_likelihood", texts=tokens[start:start + CHUNK])
                except StudentCodeError as error:
                    raise PlotError(f"log_likelihood failed on the {name} strings: {_one_line(error.message)}") from None
                def judge(item):  # the student's own error, a value that is not a number: named as in grading
                    offset, entry = item
                    instance = f"{name} string {start + offset}"
                    reply = process.reply(entry, what=CALL, instance=instance)
                    if reply.error is not None:
                        raise reply.error
                    if reply.unsupported is not None:
                        raise CheckFailed(feedback(call=CALL, instance=instance, expected="a real number",
                                                   got=f"{reply.unsupported['got']}, {reply.unsupported['type']}"))
                    values.append(as_real(reply.value, call=CALL, instance=instance))
                try:
                    check_each(enumerate(answers), judge)
                except (CheckFailed, StudentCodeError) as error:
                    raise PlotError(_one_line(error.message if isinstance(error, StudentCodeError) else str(error))) from None
                bar.update(len(answers))
            scores[name] = np.array(values)
    return scores


def write_plots(scores: dict[str, np.ndarray], out_dir: Path, *, source: str) -> list[Path]:
    """One histogram per dataset (log_likelihood_<name>.png) and, for several datasets, all
    together (log_likelihood_all.png) in out_dir; returns the paths written."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    bins = np.linspace(min(v.min() for v in scores.values()), max(v.max() for v in scores.values()), 41)
    for name, values in [*scores.items(), *([("all", None)] if len(scores) > 1 else [])]:
        figure, axes = plt.subplots(figsize=(7, 4))
        for label, data in (scores.items() if values is None else [(name, values)]):
            axes.hist(data, bins=bins, alpha=0.6, color=COLOURS.get(label), label=f"{TITLES.get(label, label)} ({len(data)})")
        axes.set_xlabel("log-likelihood (nats)")
        axes.set_ylabel("strings")
        axes.set_title(f"GPT-2 log-likelihood of 100-character strings ({source})")
        axes.legend()
        figure.tight_layout()
        path = out_dir / f"log_likelihood_{name}.png"
        figure.savefig(path, dpi=100)
        plt.close(figure)
        written.append(path)
    return written


def missing_data(data_files: dict) -> list[str]:
    """The course's datasets that are not configured (named for the user)."""
    return [name for name in DATASETS if name not in data_files]


def make_plots(*, submission: Path | None, model: str | None, device: str, out: Path, data_files: dict,
               progress: bool = True, say=None) -> list[Path]:
    """Score the datasets with the submission's log_likelihood (the reference's when None) on the
    model and write the figures to out; returns the PNG paths. say: where notes go (the
    missing course data). Raises PlotError, one line, for anything the user must fix."""
    from ...sandbox import SubmissionError
    from .data import DataError
    try:
        model_dir = models.resolve_model(model or models.default_model_spec())
    except models.ModelUnavailableError as error:
        raise PlotError(str(error)) from None
    if device == "auto":
        import torch
        device = "cuda" if torch.cuda.is_available() else "cpu"
    missing = missing_data(data_files)
    if missing and say is not None:
        files = ", ".join(f"{name}.pkl" for name in missing)
        instead = " (100 random-letter strings made here stand for random.pkl)" if "random" in missing else ""
        say(f"course data not found: {files}; set AUTOGRADER_DATA_DIR to the folder holding them, or name them in the "
            f"rubric's data: section. Plotting without them{instead}")
    try:
        strings = datasets(load_course_texts(data_files))
    except DataError as error:
        raise PlotError(str(error)) from None
    upload = Path(submission) if submission is not None else REFERENCE_UPLOAD
    try:
        scores = score(upload, model_dir=model_dir, device=device, strings=strings, progress=progress)
    except SubmissionError as error:
        raise PlotError(f"{upload}: {error}") from None
    source = "reference" if submission is None else os.path.basename(os.path.abspath(submission))
    return write_plots(scores, out, source=f"{source}, model {model_dir.name}")
