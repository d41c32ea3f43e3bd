"""The GPT-2 that student code runs against, in the course's own interface.

    logits, presents = model(input_ids, past=past)

input_ids is a LongTensor (B, T); logits is float32 (B, T, V); presents is a list with one
tensor per layer, each [2, B, n_head, T_total, head_dim] (key and value stacked, the key NOT
transposed), as in the course's original plain-PyTorch GPT-2 (graykode/gpt-2-Pytorch).

Why our own model rather than transformers' GPT2LMHeadModel:
- transformers' cache objects are updated in place, while the course's `past` is a value that
  student code passes again and again (horizon-2 temperature scaling calls
  model([[t]], past=new_past) for every surviving t with the same new_past);
- this module is imported in a fresh sandboxed child process per test, where importing
  transformers would cost ~3.3 s against ~1 s for torch alone.

This file runs inside the untrusted child, from a copy of the package under another name: it
imports only torch, safetensors and the standard library (no absolute imports of our package).
The math is GPT-2's exactly (learned token and position embeddings, pre-LayerNorm blocks,
gelu_new, causal attention scaled by 1/sqrt(head_dim), final LayerNorm, lm head tied to wte),
so logits match transformers' GPT2LMHeadModel on the same checkpoint.
"""
from __future__ import annotations

import ctypes
import json
import math
import os
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .call_memo import CallMemo

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"

# Buffers some transformers versions saved with the weights (the causal mask); we rebuild the
# mask from shapes, so these keys carry nothing we need.
_IGNORED_KEY_SUFFIXES = (".attn.bias", ".attn.masked_bias")


@dataclass
class CourseConfig:
    """The sizes of a GPT-2 plus the course's sampling settings (`config` in student code)."""

    vocab_size: int
    """V: number of tokens; logits have V entries (50257 for GPT-2)."""
    n_ctx: int
    """Context length the course's code reads (config.n_ctx); equals n_positions when absent."""
    n_positions: int
    """Number of learned position embeddings: past length + new tokens must not exceed it."""
    n_embd: int
    """Width d of the residual stream."""
    n_layer: int
    """Number of transformer blocks, and of tensors in `presents`."""
    n_head: int
    """Attention heads per block; head_dim = n_embd // n_head."""
    layer_norm_epsilon: float = 1e-5
    """Epsilon of every LayerNorm."""
    initializer_range: float = 0.02
    """Std of the course's weight initialisation (kept for the course's config; unused here)."""
    top_k: int = 40
    """k of the top-k filtering that the course's sampler applies at every step."""
    seed: int = 20190929
    """The course's random seed."""

    def __post_init__(self):
        for name in ("vocab_size", "n_ctx", "n_positions", "n_embd", "n_layer", "n_head", "top_k"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"CourseConfig.{name} must be a positive int, got {value!r}")
        if self.n_embd % self.n_head != 0:
            raise ValueError(f"CourseConfig: n_embd={self.n_embd} is not a multiple of "
                             f"n_head={self.n_head}")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @classmethod
    def from_hf_dict(cls, hf: dict, *, source: str = "config") -> "CourseConfig":
        """Build from the dict of a transformers GPT2Config's config.json.

        Refuses (ValueError naming `source`) configs whose math this module does not implement,
        so a checkpoint never silently runs with the wrong architecture.
        """
        model_type = hf.get("model_type", "gpt2")
        if model_type != "gpt2":
            raise ValueError(f"{source}: model_type is {model_type!r}; only 'gpt2' is supported")
        unsupported = {
            "activation_function": (hf.get("activation_function", "gelu_new"), "gelu_new"),
            "scale_attn_weights": (hf.get("scale_attn_weights", True), True),
            "scale_attn_by_inverse_layer_idx": (hf.get("scale_attn_by_inverse_layer_idx", False),
                                                False),
            "add_cross_attention": (hf.get("add_cross_attention", False), False),
            "tie_word_embeddings": (hf.get("tie_word_embeddings", True), True),
        }
        for key, (found, wanted) in unsupported.items():
            if found != wanted:
                raise ValueError(f"{source}: {key} is {found!r}; the course model implements only "
                                 f"{wanted!r}")
        n_inner = hf.get("n_inner")
        if n_inner is not None and n_inner != 4 * hf["n_embd"]:
            raise ValueError(f"{source}: n_inner is {n_inner!r}; the course model uses 4 * n_embd")
        try:
            n_positions = hf["n_positions"]
            return cls(
                vocab_size=hf["vocab_size"],
                n_ctx=hf.get("n_ctx", n_positions),
                n_positions=n_positions,
                n_embd=hf["n_embd"],
                n_layer=hf["n_layer"],
                n_head=hf["n_head"],
                layer_norm_epsilon=float(hf.get("layer_norm_epsilon", 1e-5)),
                initializer_range=float(hf.get("initializer_range", 0.02)),
            )
        except KeyError as err:
            raise ValueError(f"{source}: missing key {err.args[0]!r}") from None

    @classmethod
    def from_json_file(cls, path) -> "CourseConfig":
        """Read a transformers GPT-2 config.json (see from_hf_dict)."""
        path = Path(path)
        with path.open(encoding="utf-8") as f:
            return cls.from_hf_dict(json.load(f), source=str(path))


class Conv1D(nn.Module):
    """GPT-2's linear layer: weight stored (in, out), y = x @ W + b (the checkpoints' layout)."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_in, n_out))
        self.bias = nn.Parameter(torch.empty(n_out))

    def forward(self, x):  # x (..., n_in) -> (..., n_out)
        # addmm, like transformers' Conv1D, so rounding matches it as closely as possible
        y = torch.addmm(self.bias, x.reshape(-1, x.size(-1)), self.weight)
        return y.view(*x.shape[:-1], self.weight.size(1))


def gelu_new(x):
    """GPT-2's GELU, the tanh approximation (transformers' 'gelu_new'):
    0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), in one fused operation (written out, its
    seven temporaries of (T, 4 d) floats cost 60 MB for a 1024-token text at GPT-2 small's size)."""
    return F.gelu(x, approximate="tanh")


class Attention(nn.Module):
    def __init__(self, config: CourseConfig):
        super().__init__()
        self.n_head = config.n_head
        self.head_dim = config.head_dim
        self.c_attn = Conv1D(config.n_embd, 3 * config.n_embd)
        self.c_proj = Conv1D(config.n_embd, config.n_embd)

    def forward(self, x, layer_past=None):
        B, T, C = x.shape
        H, D = self.n_head, self.head_dim
        q, k, v = self.c_attn(x).split(C, dim=2)  # 3 x (B, T, C)
        q = q.view(B, T, H, D).transpose(1, 2)  # (B, H, T, D)
        k = k.view(B, T, H, D).transpose(1, 2)  # (B, H, T, D)
        v = v.view(B, T, H, D).transpose(1, 2)  # (B, H, T, D)
        if layer_past is not None:
            # new tensors; the caller's past is never written to, so it can be reused
            k = torch.cat((layer_past[0], k), dim=-2)  # (B, H, P+T, D)
            v = torch.cat((layer_past[1], v), dim=-2)  # (B, H, P+T, D)
        present = torch.stack((k, v))  # (2, B, H, P+T, D)

        S = k.size(-2)  # P + T
        # softmax(q k^T / sqrt(D)) v, where query i sits at absolute position P + i and may see
        # keys 0 .. P + i. PyTorch's fused attention never holds the (B, H, T, S) weights at once
        # (150 MB of temporaries for a 1024-token text at GPT-2 small's size otherwise).
        allowed = torch.ones(T, S, dtype=torch.bool, device=x.device).tril(diagonal=S - T)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)  # (B, H, T, D)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y), present


class MLP(nn.Module):
    def __init__(self, config: CourseConfig):
        super().__init__()
        self.c_fc = Conv1D(config.n_embd, 4 * config.n_embd)
        self.c_proj = Conv1D(4 * config.n_embd, config.n_embd)

    def forward(self, x):  # (B, T, C) -> (B, T, C)
        return self.c_proj(gelu_new(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, config: CourseConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.attn = Attention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.mlp = MLP(config)

    def forward(self, x, layer_past=None):
        a, present = self.attn(self.ln_1(x), layer_past)
        x = x + a
        x = x + self.mlp(self.ln_2(x))
        return x, present


class CourseGPT2(nn.Module):
    """GPT-2 with the course's call: `logits, presents = model(input_ids, past=past)`.

    Parameter names are transformers' GPT2Model names (wte, wpe, h.{i}.…, ln_f), so an HF
    checkpoint loads after dropping its 'transformer.' prefix; the lm head is wte (tied).
    Parameters are created uninitialised: use load_course_model to get a usable model.
    """

    _memo: "CallMemo | None" = None  # see remember_calls

    def __init__(self, config: CourseConfig):
        super().__init__()
        self.config = config
        # given weights: nn.Embedding's own random init is skipped (costly on the meta device)
        self.wte = nn.Embedding(config.vocab_size, config.n_embd,
                                _weight=torch.empty(config.vocab_size, config.n_embd))
        self.wpe = nn.Embedding(config.n_positions, config.n_embd,
                                _weight=torch.empty(config.n_positions, config.n_embd))
        self.h = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)

    def forward(self, input_ids, past=None):
        """Logits for every position of input_ids, given the cache `past` of earlier tokens.

        input_ids: integer tensor (B, T) on the model's device (int64; int32 is accepted too,
            as torch's embedding accepts it and the course's model did).
        past: None, or the `presents` of an earlier call: a list/tuple with one tensor per
            layer [2, B, n_head, P, head_dim] (or one stacked tensor [n_layer, 2, B, n_head, P,
            head_dim]). It is only read, never modified, so it may be passed any number of times.
        Returns (logits, presents): logits float (B, T, V) for tokens P .. P+T-1 (positions
            continue from P); presents a new list of n_layer tensors [2, B, n_head, P+T, head_dim].
        Raises ValueError for a malformed input or past, or when P + T exceeds n_positions.
        """
        cfg = self.config
        self._check_input(input_ids)
        B, T = input_ids.shape
        past = self._check_past(past, batch=B)
        P = 0 if past is None else past[0][0].size(-2)
        if P + T > cfg.n_positions:
            raise ValueError(f"course model: past length {P} + input length {T} = {P + T} tokens "
                             f"exceeds the model's n_positions={cfg.n_positions}")

        memo = self._memo
        key = memo.key(input_ids, past) if memo is not None else None
        if key is not None:
            hit = memo.answer(key, past)
            if hit is not None:
                return hit

        pos = torch.arange(P, P + T, dtype=torch.long, device=input_ids.device)  # (T,)
        x = self.wte(input_ids) + self.wpe(pos)  # (B, T, C)
        presents = []
        for i, block in enumerate(self.h):
            x, present = block(x, None if past is None else past[i])
            presents.append(present)  # (2, B, H, P+T, D)
        x = self.ln_f(x)
        logits = F.linear(x, self.wte.weight)  # (B, T, V), lm head tied to wte
        if key is not None:
            memo.store(key, logits, presents, past_length=P)
        return logits, presents

    def remember_calls(self, limit_bytes: int) -> None:
        """Serve repeated identical calls (same input_ids, same past content) from memory, keeping
        at most limit_bytes of answers (0: off). See CallMemo."""
        self._memo = CallMemo(limit_bytes) if limit_bytes > 0 else None

    def _check_input(self, input_ids):
        if not isinstance(input_ids, torch.Tensor):
            raise ValueError(f"course model: input_ids must be a torch LongTensor (B, T), got "
                             f"{type(input_ids).__name__}")
        if input_ids.dim() != 2 or input_ids.size(1) == 0:
            raise ValueError(f"course model: input_ids must be 2-D (B, T) with T >= 1, got shape "
                             f"{tuple(input_ids.shape)}")
        if input_ids.dtype not in (torch.long, torch.int32):
            raise ValueError(f"course model: input_ids must be a LongTensor, got dtype "
                             f"{input_ids.dtype}")
        device = self.wte.weight.device
        if input_ids.device != device:
            raise ValueError(f"course model: input_ids is on {input_ids.device} but the model is "
                             f"on {device}; move it with .to({str(device)!r})")
        lo, hi = int(input_ids.min()), int(input_ids.max())
        if lo < 0 or hi >= self.config.vocab_size:
            raise ValueError(f"course model: token ids must lie in [0, {self.config.vocab_size}), "
                             f"got values from {lo} to {hi}")

    def _check_past(self, past, *, batch: int):
        """Validate past; returns it indexable by layer, or None. Never copies or alters it."""
        if past is None:
            return None
        cfg = self.config
        if isinstance(past, torch.Tensor):
            if past.dim() != 6:
                raise ValueError(f"course model: a stacked past must be [n_layer, 2, B, n_head, P, "
                                 f"head_dim], got shape {tuple(past.shape)}")
        elif not isinstance(past, (list, tuple)):
            raise ValueError(f"course model: past must be None or the presents list of an earlier "
                             f"call, got {type(past).__name__}")
        if len(past) != cfg.n_layer:
            raise ValueError(f"course model: past has {len(past)} layers, the model has "
                             f"{cfg.n_layer}")
        device, dtype = self.wte.weight.device, self.wte.weight.dtype
        P = None
        for i in range(cfg.n_layer):
            layer = past[i]
            if not isinstance(layer, (torch.Tensor, list, tuple)):
                raise ValueError(f"course model: past[{i}] is a {type(layer).__name__}, expected a "
                                 f"tensor [2, B, n_head, P, head_dim]")
            if isinstance(layer, torch.Tensor) and layer.dim() != 5:
                raise ValueError(f"course model: past[{i}] must be [2, B, n_head, P, head_dim], "
                                 f"got shape {tuple(layer.shape)}")
            if len(layer) != 2:
                raise ValueError(f"course model: past[{i}] must hold key and value (first dim 2), "
                                 f"got {len(layer)} entries")
            for name, t in (("key", layer[0]), ("value", layer[1])):
                where = f"course model: past[{i}] {name}"
                if not isinstance(t, torch.Tensor):
                    raise ValueError(f"{where} is a {type(t).__name__}, not a tensor")
                expected = (batch, cfg.n_head, cfg.head_dim)
                if t.dim() != 4 or (t.size(0), t.size(1), t.size(3)) != expected:
                    raise ValueError(f"{where} has shape {tuple(t.shape)}, expected "
                                     f"[{batch}, {cfg.n_head}, P, {cfg.head_dim}] (batch, heads, "
                                     f"past length, head_dim)")
                if P is None:
                    P = t.size(2)
                elif t.size(2) != P:
                    raise ValueError(f"{where} has past length {t.size(2)}, past[0] key has {P}")
                if t.device != device or t.dtype != dtype:
                    raise ValueError(f"{where} is {t.dtype} on {t.device}; the model is {dtype} on "
                                     f"{device}")
        return past


def _strip_prefix(state: dict) -> dict:
    """HF GPT2LMHeadModel names start with 'transformer.'; GPT2Model names don't. Accept both."""
    return {(k[len("transformer."):] if k.startswith("transformer.") else k): v
            for k, v in state.items()}


_SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                       "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
                       "U8": torch.uint8, "BOOL": torch.bool}
_PROT_READ, _PROT_WRITE, _MAP_PRIVATE = 0x1, 0x2, 0x02
_HEADER_LIMIT = 100 << 20


def map_safetensors(path) -> dict:
    """The tensors of a safetensors file as views of one private, copy-on-write memory map.

    Nothing is read up front: pages come from the page cache as they are used, and every process
    that maps the same file (the children a grading run forks, concurrent gradings) shares them,
    so the weights of GPT-2 small (500 MB in float32) are in memory once. Writing to a tensor
    copies only the page written, in that process. The map is never unmapped (it lives as long as
    the process) and holds no file descriptor, so closing every descriptor in a forked child is
    safe. The header is parsed here (JSON: dtype, shape and data offsets per tensor); no code
    is executed and nothing is unpickled.
    """
    path = Path(path)
    with path.open("rb") as f:
        size = os.fstat(f.fileno()).st_size
        raw = f.read(8)
        if len(raw) != 8:
            raise ValueError(f"{path}: not a safetensors file (shorter than its header)")
        (header_size,) = struct.unpack("<Q", raw)
        if header_size > min(_HEADER_LIMIT, size - 8):
            raise ValueError(f"{path}: not a safetensors file (header of {header_size} bytes)")
        header = json.loads(f.read(header_size))
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                              ctypes.c_long)
        address = libc.mmap(None, size, _PROT_READ | _PROT_WRITE, _MAP_PRIVATE, f.fileno(), 0)
        if address in (None, ctypes.c_void_p(-1).value):
            error = ctypes.get_errno()
            raise OSError(error, f"cannot map {path}: {os.strerror(error)}")
    buffer = (ctypes.c_char * size).from_address(address)
    start = 8 + header_size
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = _SAFETENSORS_DTYPES.get(info.get("dtype"))
        shape = [int(n) for n in info.get("shape", ())]
        begin, end = (int(n) for n in info.get("data_offsets", (0, -1)))
        count = math.prod(shape)
        if dtype is None:
            raise ValueError(f"{path}: tensor {name!r} has unsupported dtype {info.get('dtype')!r}")
        item = torch.empty((), dtype=dtype).element_size()
        if end - begin != count * item or begin < 0 or start + end > size:
            raise ValueError(f"{path}: tensor {name!r} has inconsistent offsets {begin}..{end} for shape {shape}")
        if count == 0:
            tensors[name] = torch.empty(shape, dtype=dtype)
            continue
        with warnings.catch_warnings():  # a ctypes buffer is writable: nothing to warn about
            warnings.simplefilter("ignore")
            tensors[name] = torch.frombuffer(buffer, dtype=dtype, count=count, offset=start + begin).view(shape)
    return tensors


def load_course_model(model_dir, device="cpu", *, remember_bytes: int = 0):
    """Load (CourseGPT2, CourseConfig) from an HF-format GPT-2 folder.

    model_dir holds config.json and model.safetensors with transformers' GPT2LMHeadModel (or
    GPT2Model) key names. The weights are mapped, not read (map_safetensors: no pickle, shared
    between processes, nothing computed while loading when they are float32, as every prepared
    folder's are; other dtypes are converted to float32). They must cover every parameter with
    the right shape: a missing, misshapen or unknown key raises ValueError naming it.
    `lm_head.weight` may be absent (tied to wte) but if present must equal wte. The model is
    returned in eval mode on `device`, with requires_grad off, so outputs never carry autograd
    history even outside torch.no_grad. remember_bytes > 0 turns on the memo of repeated calls
    (CourseGPT2.remember_calls).
    """
    model_dir = Path(model_dir)
    config_path, weights_path = model_dir / CONFIG_FILE, model_dir / WEIGHTS_FILE
    for path in (config_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(f"course model: {path} does not exist")
    config = CourseConfig.from_json_file(config_path)
    with torch.device("meta"):  # shapes only: the mapped weights are assigned below
        model = CourseGPT2(config)

    state = _strip_prefix(map_safetensors(weights_path))
    lm_head = state.pop("lm_head.weight", None)
    state = {k: v for k, v in state.items() if not k.endswith(_IGNORED_KEY_SUFFIXES)}
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    if missing:
        raise ValueError(f"course model: {weights_path} lacks weight {missing[0]!r}"
                         f" ({len(missing)} missing in all)")
    unknown = sorted(k for k in state if k not in expected)
    if unknown:
        raise ValueError(f"course model: {weights_path} has unexpected weight {unknown[0]!r}"
                         f" ({len(unknown)} unexpected in all); is n_layer in config.json right?")
    for key, param in expected.items():
        if tuple(state[key].shape) != tuple(param.shape):
            raise ValueError(f"course model: weight {key!r} in {weights_path} has shape "
                             f"{tuple(state[key].shape)}, config.json implies {tuple(param.shape)}")
    if lm_head is not None and not torch.equal(lm_head.float(), state["wte.weight"].float()):
        raise ValueError(f"course model: lm_head.weight in {weights_path} differs from wte; only "
                         f"tied embeddings are supported")
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True, assign=True)
    model.requires_grad_(False)
    model.remember_calls(remember_bytes)
    return model.to(device).eval(), config
