"""Model folders for P6: build, fetch, import, cache and resolve them (trusted side only).

Every model the grader uses is an HF-format GPT-2 folder (config.json, model.safetensors,
tokenizer files) that autograder/child/course_model.py loads without transformers. Folders are
cached under models_root():
    tiny/                  a small random GPT-2 built here (no network needed, deterministic)
    gpt2/                  GPT-2 small from the hub, fetched by setup.sh when there is network
    imported/<fingerprint> a user's `--model DIR`, normalised once
A folder appears there only complete: it is built in a temporary sibling and renamed into
place, so concurrent graders never see half a model and never clash.

transformers is imported lazily inside the functions that need it (it costs ~3 s).
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import socket
import tempfile
import threading
from pathlib import Path
from urllib.parse import urlparse


MODELS_ENV = "AUTOGRADER_MODELS"
TINY, GPT2 = "tiny", "gpt2"

# The tiny model: GPT-2's architecture at a size that builds and runs in well under a second.
TINY_SEED = 20190929  # the course's seed
TINY_SIZES = dict(n_layer=2, n_head=4, n_embd=64, n_positions=1024, vocab_size=257)
EOT_ID = 256  # 256 byte tokens, then <|endoftext|>
EOT_TOKEN = "<|endoftext|>"
# Why not GPT-2's init (std 0.02): the logits h·wte would have std ~0.02*sqrt(64) = 0.16, so
# every next-token distribution is nearly uniform, top-k boundaries are near-ties and temperature
# barely changes anything: checks could not tell right code from wrong. A larger wte alone is no
# cure: the residual stream is then mostly the input token's own embedding and, with the lm head
# tied to wte, the model predicts "repeat the last token" with probability ~1. So the blocks get
# std 0.2 (they mix the context into the stream) and wte std 0.35. Measured on random byte text:
# mean entropy 2.85 nats, mean top probability 0.31, 6 % of the mass outside the top 40 (so
# top-k filtering matters), median gap 0.03 between the 40th and 41st logit, and the argmax is
# the last input token only 4 % of the time. wpe gets std 0.2 so that a wrong position offset
# (a past-handling bug) visibly changes the logits.
TINY_INIT_STD = 0.2
TINY_WTE_STD = 0.35
TINY_WPE_STD = 0.2
TINY_BIAS_STD = 0.1

CONFIG_FILE = "config.json"  # the same names as child/course_model.py reads
WEIGHTS_FILE = "model.safetensors"
# (vocabulary, merges) file names: transformers' names, then the course's own.
VOCAB_MERGES_NAMES = (("vocab.json", "merges.txt"), ("encoder.json", "vocab.bpe"))


class ModelUnavailableError(RuntimeError):
    """A model cannot be provided here (not fetched, no network, bad folder); says what to do."""


def repo_root() -> Path:
    """The folder holding the `autograder` package."""
    return Path(__file__).resolve().parents[1]


def models_root() -> Path:
    """Where model folders are cached: $AUTOGRADER_MODELS if set, else <repo root>/models."""
    env = os.environ.get(MODELS_ENV)
    return Path(env).expanduser() if env else repo_root() / "models"


def is_prepared(model_dir: Path) -> bool:
    """True when model_dir holds a model's config.json and model.safetensors."""
    model_dir = Path(model_dir)
    return (model_dir / CONFIG_FILE).is_file() and (model_dir / WEIGHTS_FILE).is_file()


FINGERPRINTS_FILE = ".fingerprints.json"  # in models_root(): fingerprints by file identity


def fingerprint(model_dir: Path) -> str:
    """First 16 hex digits of a sha256 over config.json and the weight files' bytes.

    For a prepared folder the weights are model.safetensors; for an import source they may be
    any top-level *.safetensors / *.bin files (e.g. pytorch_model.bin), hashed in name order.
    Each file's name and size are hashed before its bytes, so no two file sets collide by
    concatenation. Raises FileNotFoundError when config.json or every weight file is missing.

    Hashing GPT-2 small's 500 MB takes a second or more, and a grading asks several times: the
    result is remembered in models_root()/.fingerprints.json under the files' identity (path,
    device, inode, size, modification time in ns), which any change to a file changes.
    """
    model_dir = Path(model_dir)
    weights = sorted(p for p in model_dir.iterdir()
                     if p.is_file() and p.name.endswith((".safetensors", ".bin")))
    if not (model_dir / CONFIG_FILE).is_file() or not weights:
        raise FileNotFoundError(f"{model_dir}: needs config.json and model.safetensors (or "
                                f"pytorch_model.bin) to be a GPT-2 checkpoint folder")
    files = [model_dir / CONFIG_FILE, *weights]
    identity = json.dumps([_file_identity(p) for p in files])
    remembered = _remembered_fingerprints()
    if identity in remembered:
        return remembered[identity]
    value = _hash_files(files)
    _remember_fingerprint(identity, value)
    return value


def _file_identity(path: Path) -> list:
    info = path.stat()
    return [str(path.resolve()), info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns]


def _remembered_fingerprints() -> dict:
    try:
        data = json.loads((models_root() / FINGERPRINTS_FILE).read_text(encoding="utf-8"))
        return data if type(data) is dict else {}
    except (OSError, ValueError):
        return {}


def _remember_fingerprint(identity: str, value: str) -> None:
    """Add to the remembered fingerprints (atomically; a lost race only costs a later hash)."""
    root = models_root()
    try:
        root.mkdir(parents=True, exist_ok=True)
        data = {**_remembered_fingerprints(), identity: value}
        handle, temporary = tempfile.mkstemp(prefix=".fingerprints-", dir=root)
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(dict(list(data.items())[-200:]), out)
        os.replace(temporary, root / FINGERPRINTS_FILE)
    except OSError:
        pass


def _hash_files(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.name}\0{path.stat().st_size}\0".encode())
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte-level alphabet: each byte 0..255 as a printable unicode character."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
          *range(ord("®"), ord("ÿ") + 1)]
    cs = list(bs)  # printable bytes stand for themselves
    n = 0
    for b in range(256):
        if b not in bs:  # the others get unused code points from 256 on
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def build_tiny(dest: Path) -> Path:
    """Write the tiny GPT-2 (TINY_SIZES, seed TINY_SEED) and a byte-level tokenizer to dest.

    Token id b < 256 is byte b; 256 is <|endoftext|>; merges.txt has no merges, so the
    tokenizer maps text to its UTF-8 bytes. Deterministic: two builds give byte-identical
    model.safetensors. The caller's torch RNG state is left as it was.
    """
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    config = GPT2Config(**TINY_SIZES, initializer_range=TINY_INIT_STD, bos_token_id=EOT_ID,
                        eos_token_id=EOT_ID)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_SEED)
        model = GPT2LMHeadModel(config)
        with torch.no_grad():  # why these stds: see TINY_INIT_STD
            model.transformer.wte.weight.normal_(0.0, TINY_WTE_STD)
            model.transformer.wpe.weight.normal_(0.0, TINY_WPE_STD)
            # HF inits biases to 0 and LayerNorm gains to 1: perturb them so that a model or
            # loader that drops or swaps a bias or a LayerNorm fails the comparison tests
            for name, param in model.named_parameters():
                if name.endswith(".bias"):
                    param.normal_(0.0, TINY_BIAS_STD)
                elif ".ln_" in name and name.endswith(".weight"):
                    param.normal_(1.0, TINY_BIAS_STD)
    model.save_pretrained(dest)

    byte_symbols = _bytes_to_unicode()
    vocab = {byte_symbols[b]: b for b in range(256)} | {EOT_TOKEN: EOT_ID}
    (dest / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (dest / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    return dest


def _read_merges(path: Path) -> list[tuple[str, str]]:
    """The merges of a GPT-2 merges.txt / vocab.bpe (first line is the '#version' header)."""
    lines = path.read_text(encoding="utf-8").split("\n")
    return [tuple(line.split(" ")) for line in lines
            if line.strip() and not line.startswith("#version")]


def load_tokenizer(model_dir: Path):
    """A transformers GPT2TokenizerFast from model_dir.

    Reads tokenizer.json, or vocab.json + merges.txt, or the course's encoder.json + vocab.bpe
    (the same vocabulary and merges under other names). Raises FileNotFoundError naming the
    folder when none is there.
    """
    from transformers import GPT2TokenizerFast

    model_dir = Path(model_dir)
    if (model_dir / "tokenizer.json").is_file() or (
            (model_dir / "vocab.json").is_file() and (model_dir / "merges.txt").is_file()):
        return GPT2TokenizerFast.from_pretrained(str(model_dir), local_files_only=True)
    if (model_dir / "encoder.json").is_file() and (model_dir / "vocab.bpe").is_file():
        # transformers' from_pretrained does not know the course's file names: pass the contents
        vocab = json.loads((model_dir / "encoder.json").read_text(encoding="utf-8"))
        return GPT2TokenizerFast(vocab=vocab, merges=_read_merges(model_dir / "vocab.bpe"))
    raise FileNotFoundError(f"{model_dir}: no tokenizer (tokenizer.json, vocab.json + merges.txt, "
                            f"or encoder.json + vocab.bpe)")


def _has_tokenizer(model_dir: Path) -> bool:
    return (model_dir / "tokenizer.json").is_file() or any(
        (model_dir / v).is_file() and (model_dir / m).is_file() for v, m in VOCAB_MERGES_NAMES)


def _save_tokenizer(tokenizer, src: Path | None, dest: Path, *, vocab_size: int) -> None:
    """Save tokenizer to dest (tokenizer.json), plus the raw vocabulary/merges files as
    vocab.json/merges.txt when src has them, for readers without transformers."""
    if len(tokenizer) > vocab_size:
        raise ModelUnavailableError(f"tokenizer of {src or 'the hub model'} has {len(tokenizer)} "
                                    f"tokens but the model's vocab_size is {vocab_size}")
    tokenizer.save_pretrained(str(dest))
    for vocab_name, merges_name in VOCAB_MERGES_NAMES if src is not None else ():
        if (src / vocab_name).is_file() and (src / merges_name).is_file():
            shutil.copyfile(src / vocab_name, dest / "vocab.json")
            shutil.copyfile(src / merges_name, dest / "merges.txt")
            break


def import_checkpoint(src: Path, dest: Path) -> Path:
    """Normalise the HF-format GPT-2 folder src (for `--model DIR`) into dest.

    src holds config.json and model.safetensors or pytorch_model.bin (loaded by transformers
    with its safe defaults: safetensors, or torch.load(weights_only=True)). dest gets
    config.json + model.safetensors in float32, and the tokenizer when src has one. The result
    is checked by loading it with the course model. Raises ModelUnavailableError naming src for
    a folder that is not a complete GPT-2 checkpoint.
    """
    import torch
    from transformers import GPT2LMHeadModel

    from .child.course_model import CourseConfig, load_course_model

    src, dest = Path(src), Path(dest)
    if not (src / CONFIG_FILE).is_file():
        raise ModelUnavailableError(f"--model {src}: not a model folder (no config.json); use "
                                    f"'tiny', 'gpt2' or an HF-format GPT-2 folder")
    try:  # refuse non-GPT-2 configs before transformers tries to load them
        CourseConfig.from_json_file(src / CONFIG_FILE)
    except ValueError as err:
        raise ModelUnavailableError(f"--model {src}: {err}") from err
    model, info = GPT2LMHeadModel.from_pretrained(str(src), local_files_only=True,
                                                  dtype=torch.float32, output_loading_info=True)
    # transformers fills missing weights with random values and only warns: refuse instead
    missing = [k for k in info.get("missing_keys", ()) if k != "lm_head.weight"]
    if missing:
        raise ModelUnavailableError(f"--model {src}: checkpoint lacks weight "
                                    f"{sorted(missing)[0]!r} ({len(missing)} missing in all)")
    dest.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(dest))
    _, config = load_course_model(dest)  # raises if the course model cannot run it
    if _has_tokenizer(src):
        _save_tokenizer(load_tokenizer(src), src, dest, vocab_size=config.vocab_size)
    return dest


def _hub_unreachable_reason(timeout_s: float) -> str | None:
    """Why the hub cannot be reached (None if a TCP connection opens within timeout_s).

    Done in a thread because DNS lookups ignore socket timeouts. Skipped (None) behind a proxy,
    where a direct connection failing says nothing.
    """
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return "HF_HUB_OFFLINE is set"
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host, port = url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)
    result: list[str | None] = [f"no connection to {host}:{port} within {timeout_s:g} s"]

    def probe():
        try:
            socket.create_connection((host, port), timeout=timeout_s).close()
            result[0] = None
        except OSError as err:
            result[0] = f"cannot connect to {host}:{port} ({err})"

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout_s)
    return result[0]


def fetch_gpt2(dest: Path, *, hub_id: str = "gpt2", timeout_s: float = 20.0) -> Path:
    """Download GPT-2 (model and tokenizer) from the hub and save it to dest as safetensors.

    Fails fast, with ModelUnavailableError saying why and what to do, when the hub is
    unreachable or HF_HUB_OFFLINE is set; hub requests time out after timeout_s.
    """
    reason = _hub_unreachable_reason(timeout_s)
    if reason is not None:
        raise ModelUnavailableError(f"cannot fetch {hub_id!r} from the Hugging Face hub: {reason}. "
                                    f"Run `bash setup.sh` on a machine with network, or grade with "
                                    f"`--model tiny`")
    # huggingface_hub reads these when first imported; without them a stalled request can
    # hang for minutes. setdefault keeps a user's own choice.
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", str(max(1, int(timeout_s))))
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", str(max(1, int(timeout_s))))
    import torch
    from transformers import GPT2LMHeadModel, GPT2TokenizerFast

    from .child.course_model import load_course_model

    try:
        model = GPT2LMHeadModel.from_pretrained(hub_id, dtype=torch.float32)
        tokenizer = GPT2TokenizerFast.from_pretrained(hub_id)
    except Exception as err:  # network, auth, missing repo: one clear message for setup.sh
        raise ModelUnavailableError(f"cannot fetch {hub_id!r} from the Hugging Face hub: "
                                    f"{type(err).__name__}: {err}") from err
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(dest))
    _, config = load_course_model(dest)
    _save_tokenizer(tokenizer, None, dest, vocab_size=config.vocab_size)
    return dest


def _make_readable(folder: Path) -> None:
    """Folders 0755, files 0644: a sandboxed child running as another user must read the model.
    (mkdtemp makes folders 0700 and safetensors writes model.safetensors 0600.) Also applied to
    folders prepared before this was done."""
    for path in [folder, *folder.rglob("*")]:
        mode = 0o755 if path.is_dir() else 0o644
        if not path.is_symlink() and path.stat().st_mode & 0o777 != mode and os.access(path, os.W_OK):
            path.chmod(mode)


def _build_once(final: Path, build) -> Path:
    """Make final with build(tmp_dir) unless it is already prepared; safe across processes.

    Builds in a temporary sibling and renames it into place (atomic on one filesystem); if
    another process got there first, its folder is kept and ours discarded.
    """
    if is_prepared(final):
        _make_readable(final)
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.building-", dir=final.parent))
    try:
        build(tmp)
        _make_readable(tmp)
        try:
            os.rename(tmp, final)
        except OSError:
            if not is_prepared(final):
                raise ModelUnavailableError(f"{final} exists but is not a complete model folder "
                                            f"(needs {CONFIG_FILE} and {WEIGHTS_FILE}): delete it "
                                            f"and retry") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def resolve_model(spec: str) -> Path:
    """The prepared model folder for a `--model` value.

    'tiny': models_root()/tiny, built on first use. 'gpt2': models_root()/gpt2, which setup.sh
    must have fetched (else ModelUnavailableError saying so). Anything else is a folder holding
    an HF-format GPT-2, imported once into models_root()/imported/<fingerprint>.
    """
    root = models_root()
    if spec == TINY:
        return _build_once(root / TINY, build_tiny)
    if spec == GPT2:
        if not is_prepared(root / GPT2):
            raise ModelUnavailableError(f"GPT-2 small is not prepared in {root / GPT2}: run "
                                        f"`bash setup.sh` on a machine with network, or grade with "
                                        f"`--model tiny`")
        return root / GPT2
    src = Path(spec).expanduser()
    if not src.is_dir():
        raise ModelUnavailableError(f"--model {spec!r}: not 'tiny', 'gpt2' or an existing folder")
    try:
        fp = fingerprint(src)
    except FileNotFoundError as err:
        raise ModelUnavailableError(f"--model {spec!r}: {err}") from None
    return _build_once(root / "imported" / fp, lambda tmp: import_checkpoint(src, tmp))


def default_model_spec() -> str:
    """'gpt2' when GPT-2 small has been prepared under models_root(), else 'tiny'."""
    return GPT2 if is_prepared(models_root() / GPT2) else TINY


def prepare(*, want_gpt2: bool) -> str:
    """For setup.sh: fetch GPT-2 small if wanted (and not there yet), always build tiny.

    Never raises for a failed fetch; returns one line saying which model is now the default
    (and why GPT-2 is not, when it was wanted).
    """
    root = models_root()
    why_not = None
    if want_gpt2:
        try:
            _build_once(root / GPT2, fetch_gpt2)
        except ModelUnavailableError as err:
            why_not = str(err)
    tiny = resolve_model(TINY)
    if default_model_spec() == GPT2:
        return f"default model: gpt2 (GPT-2 small, {root / GPT2})"
    line = f"default model: tiny (a small random GPT-2 for testing the grader, {tiny})"
    return f"{line}; GPT-2 small not available: {why_not}" if why_not else line


# -- cache files (reference outputs, time limits): private, locked while built, written atomically --
@contextlib.contextmanager
def cache_lock(path: Path):
    """An exclusive lock for building the cache file ``path`` (its folder made private first)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)  # the sandbox's user must not read the reference's answers
    with open(path.parent / f".{path.stem}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def write_cache(path: Path, data: dict) -> None:
    """Write ``data`` as JSON to ``path`` atomically, readable by the grader's user only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(data, out, allow_nan=False, separators=(",", ":"))
        os.chmod(temporary, 0o600)  # the grader's user only: student code must not read the answers
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
