"""The submissions of a batch: finding them in a folder (plain folders, or a Gradescope export
with its metadata), which shard each belongs to, and the digests of what a grading's result
depends on besides the submission (the grader's code, the course's data, the model's files)."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import yaml

from .rubric import RubricError, data_files
from .uploads import EXPECTED_FILES

REPO_ROOT = Path(__file__).resolve().parents[1]
METADATA = "submission_metadata.yml"


class BatchError(RuntimeError):
    """The batch cannot start (no such folder, not a folder of submissions, bad rubric)."""


@dataclass(frozen=True)
class Submission:
    """One submission of a batch.

    id: its folder's name in the batch folder.
    path: that folder.
    name, sid, email: the submitters' (``; ``-joined for group submissions), "" when unknown.
    """

    id: str
    path: Path
    name: str = ""
    sid: str = ""
    email: str = ""


class _MetadataLoader(yaml.SafeLoader):
    """Gradescope writes its metadata from Ruby: tags such as ``!ruby/object:BigDecimal`` are
    read as the plain value under them instead of being refused."""


def _untagged(loader, _suffix, node):
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)


_MetadataLoader.add_multi_constructor("!", _untagged)


def _field(entry: dict, name: str):
    """A Gradescope metadata field: Ruby symbols appear as ``:name`` keys."""
    return entry.get(f":{name}", entry.get(name)) if isinstance(entry, dict) else None


def _metadata_file(root: Path) -> Path | None:
    if (root / METADATA).is_file():
        return root / METADATA
    nested = [p for p in root.glob(f"*/{METADATA}") if p.is_file()]
    return nested[0] if len(nested) == 1 else None


def discover(root: Path) -> tuple[list[Submission], list[str], str]:
    """(submissions sorted by id, warnings, what DIR is) for a batch folder.
    Raises BatchError when ``root`` is not a folder of submissions."""
    root = Path(root)
    if not root.is_dir():
        raise BatchError(f"{root}: no such folder")
    metadata_path = _metadata_file(root)
    warnings: list[str] = []
    if metadata_path is not None:
        base = metadata_path.parent
        try:
            metadata = yaml.load(metadata_path.read_text(encoding="utf-8"), Loader=_MetadataLoader) or {}
        except (OSError, yaml.YAMLError) as error:
            raise BatchError(f"{metadata_path}: cannot read Gradescope's metadata: {error}") from None
        if not isinstance(metadata, dict):
            raise BatchError(f"{metadata_path}: expected a mapping of submission folders to their metadata")
        subs = []
        for key, entry in metadata.items():
            folder = base / str(key)
            if not folder.is_dir():
                warnings.append(f"{key}: listed in {METADATA} but no such folder here; skipped")
                continue
            people = [p for p in (_field(entry, "submitters") or []) if isinstance(p, dict)]
            join = lambda what: "; ".join(str(_field(p, what) or "") for p in people).strip("; ")  # noqa: E731
            subs.append(Submission(str(key), folder, join("name"), join("sid"), join("email")))
        listed = {s.id for s in subs}
        for folder in sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith((".", "__"))):
            if folder.name not in listed and folder.name not in metadata:
                warnings.append(f"{folder.name}: not in {METADATA}; graded without a name")
                subs.append(Submission(folder.name, folder))
        kind = f"Gradescope export ({metadata_path})"
    else:
        if (root / "submission").is_dir() or any((root / name).is_file() for name in EXPECTED_FILES):
            raise BatchError(f"{root} looks like one submission, not a folder of submissions: grade it with "
                             f"`python -m autograder grade {root}`, or give batch the folder holding one folder "
                             f"per submission")
        subs = [Submission(p.name, p) for p in sorted(root.iterdir())
                if p.is_dir() and not p.name.startswith((".", "__"))]
        warnings += [f"{p.name}: a file, not a submission folder; ignored (unzip each submission into its own folder)"
                     for p in sorted(root.iterdir()) if p.is_file() and not p.name.startswith(".")]
        kind = "one folder per submission"
    if not subs:
        raise BatchError(f"{root}: no submission folders found")
    return sorted(subs, key=lambda s: s.id), warnings, kind


def parse_shard(text: str) -> tuple[int, int]:
    """``"2/8"`` -> (2, 8); raises ValueError, with a message for the user, unless the text is
    I/N with 1 <= I <= N."""
    index, _, count = text.partition("/")
    try:
        i, n = int(index), int(count)
    except ValueError:
        raise ValueError("expected I/N, e.g. 1/4") from None
    if not 1 <= i <= n:
        raise ValueError(f"{text}: expected I/N with 1 <= I <= N, e.g. 1/4")
    return i, n


def shard_of(submission_id: str, count: int) -> int:
    """The shard (1..count) a submission belongs to: a hash of its id, so the split is the
    same everywhere and a submission added later does not move the others."""
    return int.from_bytes(hashlib.sha256(submission_id.encode()).digest()[:8], "big") % count + 1


def _digest_files(folder: Path, digest, *, suffixes: tuple[str, ...] | None = None) -> None:
    """Add every file under ``folder`` (its relative path and bytes; links not followed) to
    ``digest``; only those whose name ends with one of ``suffixes`` when given."""
    for path in sorted(folder.rglob("*")):
        if suffixes is not None and (not path.name.endswith(suffixes) or "__pycache__" in path.parts):
            continue
        if path.is_file() and not path.is_symlink():
            digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")


def code_digest(folder: Path = REPO_ROOT / "autograder") -> str:
    """A digest of the grader's own code: the .py and .yaml files under ``folder`` (whether git
    tracks them or not: an untracked module is imported all the same; caches left out)."""
    digest = hashlib.sha256()
    _digest_files(Path(folder), digest, suffixes=(".py", ".yaml"))
    return digest.hexdigest()


def data_digest(rubric: Path) -> str:
    """A digest of the course's data files a grading reads (the rubric's ``data:`` files and those
    in AUTOGRADER_DATA_DIR, as rubric.data_files finds them), by name; "none" when there are none,
    the error when the rubric names a file that is not there (every grading then reports it)."""
    try:
        files = data_files(rubric)
    except RubricError as error:
        return f"error: {error}"
    if not files:
        return "none"
    digest = hashlib.sha256()
    for name, path in sorted(files.items()):
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def model_fingerprint(spec: str) -> str | None:
    """The fingerprint of the files of the model ``spec`` names (models.fingerprint: config and
    weights, remembered by file identity, so GPT-2 small is hashed once), without loading or
    importing it; None where there is no such folder yet (tiny not built, gpt2 not fetched, a
    folder that is not a checkpoint: grading then builds it, or fails and is retried)."""
    from . import models
    folder = models.models_root() / spec if spec in (models.TINY, models.GPT2) else Path(spec).expanduser()
    try:
        return models.fingerprint(folder)
    except OSError:  # no such folder, or no config.json and weights in it
        return None
