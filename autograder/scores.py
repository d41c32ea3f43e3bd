"""A batch's scores: each submission's record, ``scores.csv``, the per-part summary, the
histogram of totals, and ``merge`` of shard outputs.

A batch output folder holds ``submissions/<id>/status.json`` (one ``Record`` per graded
submission, written last and atomically: its presence means that submission is done) and one
manifest per run, ``batch.json`` or ``shard-<i>-of-<n>.json``, naming every submission of the
batch and the ones that run was given. ``write_tables`` turns records into ``scores.csv``,
``summary.csv`` and ``totals.png``; ``merge`` does so over the records of several folders (or
one shared folder), after checking that every submission of the batch is there.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .results import write_atomically

STATUS_FILE = "status.json"
SUBMISSIONS = "submissions"
MANIFEST = "batch.json"
SHARD_MANIFEST = "shard-{index}-of-{count}.json"
SCORES, SUMMARY, HISTOGRAM = "scores.csv", "summary.csv", "totals.png"
STATUSES = ("graded", "grader_error", "rejected", "timeout", "crashed")
FAILED = ("grader_error", "timeout", "crashed")  # the grading failed, not the student: a re-run grades again


class MergeError(RuntimeError):
    """Shard outputs that cannot be joined (a shard or a submission missing, a conflict)."""


@dataclass
class Record:
    """One submission's outcome in a batch (``status.json``).

    id: the submission's folder name in the batch folder (Gradescope: ``submission_<n>``).
    name, sid, email: the submitters' (``; ``-joined for groups), from Gradescope's metadata.
    status: one of STATUSES.
    total: points earned, extra credit included.
    parts: points per rubric part, e.g. {"p1": 3.0, "p3a": 1.5}.
    key: digest of what the result depends on (its files, the rubric, the settings, the model's
        files, the grader's code, the course's data); a re-run regrades a submission whose key changed.
    seconds: wall-clock time of its grading.
    reason: why it was not graded as usual, in one line (the upload's fault for ``rejected``, the
        grading's failure otherwise); "" when graded.
    """

    id: str
    name: str = ""
    sid: str = ""
    email: str = ""
    status: str = "graded"
    total: float = 0.0
    parts: dict = field(default_factory=dict)
    key: str = ""
    seconds: float = 0.0
    reason: str = ""


def save_record(folder: Path, record: Record) -> None:
    """Write ``status.json``, the owner's only: it names the students (see write_atomically)."""
    write_atomically(Path(folder) / STATUS_FILE, json.dumps(asdict(record), indent=1))


def load_record(folder: Path) -> Record | None:
    """The record in ``folder``, or None when there is none (not graded, or interrupted)."""
    try:
        data = json.loads((Path(folder) / STATUS_FILE).read_text(encoding="utf-8"))
        return Record(**data)
    except (OSError, ValueError, TypeError):
        return None


def _number(value: float) -> str:
    """Points as the CSV shows them: at most 6 decimals, no trailing zeros (12, 12.5)."""
    return f"{value:.6f}".rstrip("0").rstrip(".") or "0"


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet may run as a formula


def _text_cell(text: str) -> str:
    """A text cell as a spreadsheet shows it, never runs it: names and reasons come from students
    (Gradescope's metadata, their file names), so one starting like a formula gets a leading '."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def scores_csv(records: list[Record], parts: list[str]) -> str:
    """``id,name,sid,email,total,<part>…,status,reason``: one row per submission, sorted by id.
    Text cells that a spreadsheet would take for a formula start with ' (``_text_cell``)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["id", "name", "sid", "email", "total", *parts, "status", "reason"])
    for r in sorted(records, key=lambda r: r.id):
        writer.writerow([*map(_text_cell, (r.id, r.name, r.sid, r.email)), _number(r.total),
                         *(_number(r.parts.get(p, 0.0)) for p in parts), r.status, _text_cell(r.reason)])
    return out.getvalue()


def summary_rows(records: list[Record], parts: list[str], part_max: dict[str, float], *,
                 max_score: float) -> list[dict]:
    """Per part and for the total: points available, mean, and the share of submissions with
    full marks. The total's points available are the rubric's ``max_score`` (extra credit left
    out: a total at least that is full marks). Every submission counts, whatever its status (a
    rejected upload scores 0)."""
    rows = []
    count = len(records) or 1
    for part in [*parts, "total"]:
        values = [r.total if part == "total" else r.parts.get(part, 0.0) for r in records]
        top = max_score if part == "total" else part_max.get(part, 0.0)
        full = sum(1 for v in values if top > 0 and v >= top - 1e-9)
        rows.append({"part": part, "max": top, "mean": sum(values) / count, "full_marks": full / count})
    return rows


def summary_csv(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["part", "max", "mean", "share_full_marks"])
    for row in rows:
        writer.writerow([row["part"], _number(row["max"]), f"{row['mean']:.3f}", f"{row['full_marks']:.3f}"])
    return out.getvalue()


def format_summary(rows: list[dict], records: list[Record], *, extra_credit: float = 0.0) -> str:
    """The summary as the terminal shows it, with the count of submissions per status."""
    lines = [f"{'part':<6} {'max':>6} {'mean':>8} {'full marks':>11}"]
    lines += [f"{r['part']:<6} {_number(r['max']):>6} {r['mean']:>8.2f} {r['full_marks']:>10.0%}" for r in rows]
    if extra_credit:
        lines.append(f"(the total's max leaves out the {_number(extra_credit)} extra-credit points, which come on top)")
    counts = {s: sum(1 for r in records if r.status == s) for s in STATUSES}
    lines.append(f"{len(records)} submissions: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n))
    return "\n".join(lines)


def histogram_png(records: list[Record], *, max_score: float, extra_credit: float) -> bytes:
    """A histogram of totals (PNG bytes): see ``histogram_figure``."""
    import matplotlib.pyplot as plt

    figure = histogram_figure(records, max_score=max_score, extra_credit=extra_credit)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return buffer.getvalue()


def histogram_figure(records: list[Record], *, max_score: float, extra_credit: float):
    """A matplotlib figure: the histogram of totals, one bin per point, counts of submissions on
    whole-number ticks, full marks (``max_score``) marked."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    totals = [r.total for r in records]
    top = max([max_score + extra_credit, *totals, 1.0])
    figure, axes = plt.subplots(figsize=(7, 4))
    axes.hist(totals, bins=[i * top / min(40, max(1, int(top))) for i in range(min(40, max(1, int(top))) + 1)],
              color="tab:blue", edgecolor="white")
    axes.axvline(max_score, color="tab:red", linestyle="--", label=f"full marks ({_number(max_score)})")
    axes.set_xlabel("total points" + (f" ({_number(extra_credit)} extra credit available on top)" if extra_credit else ""))
    axes.set_ylabel("submissions")
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts: no 0.5 submission
    axes.set_title(f"Totals of {len(totals)} submissions")
    axes.legend()
    figure.tight_layout()
    return figure


def write_tables(out: Path, records: list[Record], manifest: dict) -> str:
    """Write scores.csv, summary.csv and totals.png into ``out``; returns the terminal summary.
    manifest: a run's manifest (its ``parts`` and ``part_max``, ``max_score``, ``extra_credit``)."""
    parts, part_max = manifest["parts"], manifest["part_max"]
    rows = summary_rows(records, parts, part_max, max_score=manifest["max_score"])
    write_atomically(out / SCORES, scores_csv(records, parts), shared=True)
    write_atomically(out / SUMMARY, summary_csv(rows), shared=True)
    write_atomically(out / HISTOGRAM, histogram_png(records, max_score=manifest["max_score"],
                                                     extra_credit=manifest["extra_credit"]), shared=True)
    return format_summary(rows, records, extra_credit=manifest["extra_credit"])


def manifest_name(shard: tuple[int, int] | None) -> str:
    return MANIFEST if shard is None else SHARD_MANIFEST.format(index=shard[0], count=shard[1])


def merge(folders: list[Path], out: Path) -> str:
    """Join the records of batch outputs (shards in separate folders, or one shared folder)
    into scores.csv, summary.csv and totals.png in ``out``; returns the terminal summary.
    Raises MergeError when the shards disagree, one is missing, or a submission has no record."""
    manifests, records = [], {}
    for folder in map(Path, folders):
        found = sorted(folder.glob("shard-*-of-*.json")) + sorted(folder.glob(MANIFEST))
        if not found:
            raise MergeError(f"{folder}: no batch output here (no {MANIFEST} or shard-*-of-*.json)")
        for path in found:
            manifests.append((path, json.loads(path.read_text(encoding="utf-8"))))
        for status in sorted((folder / SUBMISSIONS).glob(f"*/{STATUS_FILE}")):
            record = load_record(status.parent)
            if record is None:
                continue
            if record.id in records and asdict(records[record.id]) != asdict(record):
                raise MergeError(f"submission {record.id} was graded twice with different results "
                                 f"({status} and an earlier folder); delete one of them")
            records[record.id] = record
    first_path, first = manifests[0]
    for path, manifest in manifests[1:]:
        for key in ("ids", "settings", "parts"):
            if manifest[key] != first[key]:
                raise MergeError(f"{path} and {first_path} come from different batches (their {key} differ)")
    splits: dict[int, list[Path]] = {}  # number of shards -> the manifests of runs split so
    for path, manifest in manifests:
        splits.setdefault(manifest["shard"][1] if manifest["shard"] else 1, []).append(path)
    if len(splits) > 1:
        shown = (lambda path: path.name) if len(folders) == 1 else str
        where = f"{Path(folders[0])}: " if len(folders) == 1 else ""
        listed = "; ".join(f"{'not split' if n == 1 else f'{n} shards'} ({', '.join(map(shown, paths))})"
                           for n, paths in sorted(splits.items()))
        raise MergeError(f"{where}the outputs were split in different ways: {listed}. Delete the manifests of the "
                         f"splits you do not want (and their scores-shard-*.csv); the graded submissions are shared")
    count = next(iter(splits))
    shards = {tuple(m["shard"]) for _, m in manifests if m["shard"]}
    missing_shards = [i for i in range(1, count + 1) if (i, count) not in shards] if shards else []
    missing = [i for i in first["ids"] if i not in records]
    problems = []
    if missing_shards:
        problems.append(f"shards {', '.join(f'{i}/{count}' for i in missing_shards)} not found")
    if missing:
        problems.append(f"{len(missing)} submissions have no result yet ({', '.join(missing[:10])}"
                        f"{' …' if len(missing) > 10 else ''})")
    if problems:
        raise MergeError(f"{'; '.join(problems)}: run the missing shards, or re-run an interrupted one to resume")
    chosen = [records[i] for i in first["ids"]]
    return write_tables(Path(out), chosen, first)
