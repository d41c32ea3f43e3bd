"""The reference's outputs on every P6 instance: computed once per model and data, then cached.

Built in one clean child process of a Sandbox (the model loaded once, no student code) by the
trusted harnesses in autograder/child/p6_reference.py: the reference solution's formulas
(reference/submission) computed in batches, so that GPT-2 small's cache builds in minutes on a
CPU. Stored as JSON (no pickle) in ``models_root()/reference-cache/<model fingerprint>-<digest>.json``,
where the digest covers the instances (strings, token ids), the tokenizer files and ``FORMAT``: a
change to any of them builds a new file. Written atomically (a temporary file renamed into
place), so concurrent graders never read half a file; a lock file makes a concurrent grader wait
for a build in progress rather than repeat it. The file is readable by the grader's user only.

Grading reads the file: the grader's process never recomputes the reference, never loads the
model and never imports torch. Only building tokenizes texts (transformers' tokenizer).
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from ... import models
from ...registry import REFERENCE_UPLOAD
from .data import CourseTexts, load_course_texts
from .instances import HORIZONS, TEMPERATURES, Source, likelihood_sources, prompt_sources, snippet_sources

FORMAT = 3  # bump when what is stored, or how it is computed, changes
CACHE_DIR = "reference-cache"

MASK_LEVEL = -1e9  # a logit at or below this is masked: softmax gives it probability 0 exactly
NEAR = 0.05  # logits within NEAR of the k-th are stored, so ties within checks' TIE_EPS are known
BUILD_TIME_LIMIT_S = 3600.0  # for the building child; GPT-2 small on 2 CPU cores needs about a minute
CHUNK = 16  # texts or prompts per harness call: bounded messages, and progress between them
_TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "merges.txt", "encoder.json", "vocab.bpe")


class ReferenceBuildError(RuntimeError):
    """The reference could not be computed (a grader fault, never the student's)."""


@dataclass(frozen=True)
class Text:
    """A text to score. log_likelihood: the reference's, in nats."""

    id: str
    kind: str
    public: bool
    text: str | None
    tokens: tuple[int, ...]
    log_likelihood: float


@dataclass(frozen=True)
class Prompt:
    """A prompt and the model's next-token logits around the top-k boundary.

    top_ids, top_logits: the k most likely next tokens, largest logit first (float64 of fp32).
    near_ids, near_logits: every other token whose logit is within NEAR of the k-th.
    """

    id: str
    kind: str
    public: bool
    text: str | None
    tokens: tuple[int, ...]
    top_ids: np.ndarray
    top_logits: np.ndarray
    near_ids: np.ndarray
    near_logits: np.ndarray

    @property
    def kth_logit(self) -> float:
        return float(self.top_logits[-1])

    def distribution(self, temperature: float | None) -> np.ndarray:
        """The sampler's next-token probabilities over top_ids: softmax(top-k logits / T), float64."""
        scaled = self.top_logits / (1.0 if temperature is None else temperature)
        weights = np.exp(scaled - scaled.max())
        return weights / weights.sum()

    def ties(self, eps: float) -> np.ndarray:
        """Token ids whose logit is within eps of the k-th largest (in the top-k or just outside):
        another device's top-k may keep or drop them."""
        ids = np.concatenate([self.top_ids, self.near_ids])
        logits = np.concatenate([self.top_logits, self.near_logits])
        return ids[np.abs(logits - self.kth_logit) <= eps]


@dataclass(frozen=True)
class Scaled:
    """The reference's temperature_scale output (1, V), stored sparsely: kept entries (> MASK_LEVEL)
    by id, and the one value every other entry holds."""

    kept_ids: np.ndarray
    kept_values: np.ndarray
    masked: float


@dataclass(frozen=True)
class ReferenceOutputs:
    """Everything P6's checks compare with, for one model and one data configuration.

    config: the model config students see (vocab_size, n_ctx, n_positions, top_k, …).
    tiny: whether the model is the project's tiny random GPT-2 (its texts are not separable).
    texts, prompts: the instances, public ones first; snippets: (tokens, is_random) pairs, empty
    when the course's snippets are not configured; scaled: (prompt id, T, horizon) -> Scaled.
    built: where and how the cache was computed (device, torch version, seconds).
    """

    path: Path
    config: dict
    tiny: bool
    texts: tuple[Text, ...]
    prompts: tuple[Prompt, ...]
    snippets: tuple[tuple[tuple[int, ...], bool], ...]
    scaled: dict
    built: dict

    def prompt(self, prompt_id: str) -> Prompt:
        return next(p for p in self.prompts if p.id == prompt_id)

    def scaled_output(self, prompt_id: str, temperature: float | None, horizon: int) -> Scaled:
        return self.scaled[(prompt_id, temperature, horizon)]


# -- where the cache lives ------------------------------------------------------------------------
def model_sizes(model_dir: Path) -> dict:
    """vocab_size, n_positions and context (tokens a text may have) from config.json."""
    config = json.loads((Path(model_dir) / models.CONFIG_FILE).read_text(encoding="utf-8"))
    n_positions = int(config["n_positions"])
    return {"vocab_size": int(config["vocab_size"]), "n_positions": n_positions,
            "context": min(int(config.get("n_ctx", n_positions)), n_positions),
            "tiny": all(config.get(k) == v for k, v in models.TINY_SIZES.items())}


def sources_for(model_dir: Path, texts: CourseTexts) -> dict[str, list[Source]]:
    sizes = model_sizes(model_dir)
    return {"texts": likelihood_sources(texts, vocab_size=sizes["vocab_size"], context=sizes["context"]),
            "prompts": prompt_sources(texts), "snippets": snippet_sources(texts)}


def cache_path(model_dir: Path, sources: dict[str, list[Source]]) -> Path:
    """models_root()/reference-cache/<fingerprint>-<digest of instances, tokenizer, FORMAT>.json"""
    digest = hashlib.sha256(json.dumps({"format": FORMAT, "temperatures": TEMPERATURES, "horizons": HORIZONS,
                                        "sources": {k: [vars(s) for s in v] for k, v in sources.items()}},
                                       sort_keys=True, default=list).encode())
    for name in _TOKENIZER_FILES:
        file = Path(model_dir) / name
        if file.is_file():
            digest.update(name.encode() + b"\0" + file.read_bytes())
    return models.models_root() / CACHE_DIR / f"{models.fingerprint(model_dir)}-{digest.hexdigest()[:16]}.json"


# Memo of loaded caches, keyed by the files they depend on (paths, sizes, modification times):
# finding the cache hashes the model's weights (~1 s for GPT-2 small), and each P6 check module
# asks once per grading run.
_LOADED: dict[tuple, ReferenceOutputs] = {}


def _stamp(path: Path) -> tuple:
    info = Path(path).stat()
    return str(Path(path).resolve()), info.st_size, info.st_mtime_ns


def reference_outputs(model_dir: Path, *, device: str, files: Mapping[str, Path],
                      progress: Callable[[str], None] | None = None) -> ReferenceOutputs:
    """The reference outputs for this model and these data files: read from the cache, built
    (on ``device``) and written there first if missing."""
    key = (_stamp(Path(model_dir) / models.WEIGHTS_FILE), tuple(sorted((n, _stamp(f)) for n, f in files.items())))
    loaded = _LOADED.get(key)
    if loaded is not None and loaded.path.is_file():
        return loaded
    sources = sources_for(model_dir, load_course_texts(files))
    path = cache_path(model_dir, sources)
    if not path.is_file():
        with models.cache_lock(path):  # a concurrent grader building the same file: wait for it
            if not path.is_file():
                data = build(model_dir, device=device, sources=sources, progress=progress)
                models.write_cache(path, data)
    _LOADED[key] = _parse(path)
    return _LOADED[key]


# -- building -------------------------------------------------------------------------------------
def _tokenized(sources: list[Source], tokenizer, context: int, *, minimum: int) -> list[tuple[Source, list[int], str]]:
    """(source, token ids, text shown in feedback) for each source with at least ``minimum``
    tokens, cut at max_tokens and at the context (the text shown is then what was kept)."""
    result = []
    for source in sources:
        ids = list(source.tokens) if source.tokens is not None else tokenizer.encode(source.text)
        cut = ids[: min(source.max_tokens or context, context)]
        shown = source.text if source.text is None or len(cut) == len(ids) else tokenizer.decode(cut)
        if len(cut) >= minimum:
            result.append((source, [int(i) for i in cut], shown))
    return result


def _chunks(items: list, size: int = CHUNK):
    for start in range(0, len(items), size):
        yield items[start:start + size]


def build(model_dir: Path, *, device: str, sources: dict[str, list[Source]],
          progress: Callable[[str], None] | None = None) -> dict:
    """Compute the reference outputs (the cache file's content) for these sources.

    Raises ReferenceBuildError when the computation fails: that is the grader's fault, never a student's.
    """
    from ...sandbox import Sandbox, StudentCodeError
    say = progress or (lambda text: None)
    start = time.monotonic()
    sizes = model_sizes(model_dir)
    tokenizer = models.load_tokenizer(model_dir)
    texts = _tokenized(sources["texts"], tokenizer, sizes["context"], minimum=2)
    prompts = _tokenized(sources["prompts"], tokenizer, sizes["context"] - 2, minimum=1)
    snippets = _tokenized(sources["snippets"], tokenizer, sizes["context"], minimum=1)
    data = {"format": FORMAT, "tiny": sizes["tiny"]}
    try:
        with Sandbox(REFERENCE_UPLOAD, model_dir=Path(model_dir), device=device) as sandbox:
            with sandbox.process(time_limit_s=BUILD_TIME_LIMIT_S, label="reference-build",
                                 runs_student_code=False) as clean:
                data["config"] = clean.harness("p6_config")
                say(f"next-token logits and temperature scaling of {len(prompts)} prompts")
                answers = [a for chunk in _chunks(prompts) for a in clean.harness(
                    "p6_reference_prompts", prompts=[ids for _, ids, _ in chunk], near=NEAR,
                    temperatures=list(TEMPERATURES), horizons=list(HORIZONS))]
                say(f"log-likelihood of {len(texts)} texts")
                values = [float(v) for chunk in _chunks(texts)
                          for v in clean.harness("p6_reference_texts", texts=[ids for _, ids, _ in chunk])]
    except StudentCodeError as error:
        raise ReferenceBuildError(f"computing the P6 reference failed: {error.feedback()}") from None
    data["texts"] = []
    for (source, ids, shown), value in zip(texts, values, strict=True):
        if not math.isfinite(value):
            raise ReferenceBuildError(f"the reference's log_likelihood on {source.id} is {value}")
        data["texts"].append({"id": source.id, "kind": source.kind, "public": source.public, "text": shown,
                              "tokens": ids, "log_likelihood": value})
    data["prompts"], data["scaled"] = [], []
    for (source, ids, shown), answer in zip(prompts, answers, strict=True):
        data["prompts"].append({"id": source.id, "kind": source.kind, "public": source.public, "text": shown,
                                "tokens": ids, **{k: np.asarray(answer[k]).tolist()
                                                  for k in ("top_ids", "top_logits", "near_ids", "near_logits")}})
        data["scaled"] += [{"prompt": source.id, "temperature": case["temperature"], "horizon": case["horizon"],
                            "kept": np.asarray(case["kept"]).tolist(), "values": np.asarray(case["values"]).tolist(),
                            "masked": float(case["masked"])} for case in answer["scaled"]]
    data["snippets"] = [{"tokens": ids, "label": s.label} for s, ids, _ in snippets]
    import torch  # already imported by the tokenizer; only for the record
    data["built"] = {"device": device, "torch": torch.__version__, "seconds": round(time.monotonic() - start, 1)}
    return data


def _parse(path: Path) -> ReferenceOutputs:
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("format") != FORMAT:
        raise ReferenceBuildError(f"{path}: cache format {data.get('format')!r}, expected {FORMAT}; delete the file")
    texts = tuple(Text(t["id"], t["kind"], t["public"], t["text"], tuple(t["tokens"]), float(t["log_likelihood"]))
                  for t in data["texts"])
    prompts = tuple(Prompt(p["id"], p["kind"], p["public"], p["text"], tuple(p["tokens"]),
                           *(np.asarray(p[k], dtype=dtype) for k, dtype in
                             (("top_ids", np.int64), ("top_logits", np.float64), ("near_ids", np.int64),
                              ("near_logits", np.float64))))
                    for p in data["prompts"])
    scaled = {(s["prompt"], s["temperature"], s["horizon"]):
              Scaled(np.asarray(s["kept"], dtype=np.int64), np.asarray(s["values"], dtype=np.float64), s["masked"])
              for s in data["scaled"]}
    snippets = tuple((tuple(s["tokens"]), bool(s["label"])) for s in data["snippets"])
    return ReferenceOutputs(path, data["config"], bool(data["tiny"]), texts, prompts, snippets, scaled, data["built"])


def prepare(*, rubric: Path, device: str = "cpu") -> str:
    """For setup.sh (``prepare-model``): build the reference cache for the default model and the
    rubric's data now, so that no graded submission pays for it (on Gradescope every submission
    starts from the image setup.sh built). Never raises; returns one line saying what it did."""
    from ...rubric import RubricError, data_files
    try:
        model_dir = models.resolve_model(models.default_model_spec())
        outputs = reference_outputs(model_dir, device=device, files=data_files(rubric))
    except (ReferenceBuildError, RubricError, models.ModelUnavailableError, OSError, ValueError) as error:
        return f"P6 reference cache not built ({type(error).__name__}: {error}); the first P6 grading will build it"
    return f"P6 reference cache: {outputs.path} (built on {outputs.built['device']} in {outputs.built['seconds']} s)"
