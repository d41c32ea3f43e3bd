"""The memo of repeated model calls (CourseGPT2.remember_calls): exact answers served from memory.

Runs inside the untrusted child with course_model.py: imports only torch, xxhash (when there)
and the standard library."""
from __future__ import annotations

import hashlib
import os
from collections import OrderedDict

import torch

try:
    import xxhash
except ImportError:  # a venv without it hashes with blake2b, 30x slower
    xxhash = None


class CallMemo:
    """Answers to repeated identical model calls, served from memory.

    Graded code calls the model with the same arguments many times: sample(model, prompt,
    config, 1) drawn 1200 times runs the prompt 1200 times, and horizon-2 temperature scaling
    at two temperatures runs the same 40 one-token continuations twice. At GPT-2 small's size
    on a CPU each such call costs 50 ms to 0.2 s; served from memory it costs a copy.

    Exactness: a call is answered from memory only when input_ids (dtype, shape, values) and
    past (structure, shapes, dtypes and every value, hashed with 128 bits and a random seed per
    memo, so neither chance nor a crafted tensor makes two differ) equal an earlier call's, so the
    answer is what the model computes for those inputs (its kernels are deterministic on a given
    machine). The answer is built as the model builds it: logits are a fresh copy of the
    remembered ones; each layer's present is torch.stack((cat(past key, new keys), cat(past
    value, new values))) from the caller's own past and the remembered new part. Nothing
    returned is shared with the memo or with another call, so changing a returned tensor in
    place changes nothing else. Calls whose past is on a GPU or needs gradients, and answers
    larger than ANSWER_LIMIT bytes, are not remembered; the least recently used answers are
    dropped beyond limit_bytes.
    """

    ANSWER_LIMIT = 16 << 20

    def __init__(self, limit_bytes: int):
        self.limit = int(limit_bytes)
        self.seed = int.from_bytes(os.urandom(8), "little")
        self.entries: OrderedDict = OrderedDict()  # key -> (logits, new parts per layer, bytes)
        self.bytes = 0
        self.hits = 0

    @staticmethod
    def _tensor_digest(digest, tensor) -> bool:
        if not isinstance(tensor, torch.Tensor) or tensor.device.type != "cpu" or tensor.requires_grad:
            return False
        digest.update(f"{tensor.dtype}{tuple(tensor.shape)};".encode())
        digest.update(memoryview(tensor.detach().contiguous().numpy()).cast("B"))
        return True

    def _digest(self):
        """A 128-bit hash with a random seed of this memo's own: xxh3 (a past is megabytes, hashed
        at every call: 0.1 ms a MB, against 3 ms for blake2b), else blake2b."""
        if xxhash is not None:
            return xxhash.xxh3_128(seed=self.seed)
        return hashlib.blake2b(digest_size=16, key=self.seed.to_bytes(8, "little"))

    def key(self, input_ids, past):
        """A digest of the call's arguments, or None when the call must not be remembered."""
        digest = self._digest()
        digest.update(f"{input_ids.dtype}{tuple(input_ids.shape)}{input_ids.device};".encode())
        digest.update(memoryview(input_ids.detach().cpu().contiguous().numpy()).cast("B"))
        if past is None:
            return digest.digest()
        digest.update(f"past:{type(past).__name__}{len(past)};".encode())
        for layer in past:
            parts = [layer] if isinstance(layer, torch.Tensor) else list(layer)
            digest.update(f"layer:{len(parts)};".encode())
            if not all(self._tensor_digest(digest, part) for part in parts):
                return None
        return digest.digest()

    def answer(self, key, past):
        entry = self.entries.get(key)
        if entry is None:
            return None
        self.entries.move_to_end(key)
        self.hits += 1
        logits, new_parts, _ = entry
        if past is None:
            presents = [part.clone() for part in new_parts]
        else:
            presents = [torch.stack((torch.cat((past[i][0], new[0]), dim=-2),
                                     torch.cat((past[i][1], new[1]), dim=-2)))
                        for i, new in enumerate(new_parts)]
        return logits.clone(), presents

    def store(self, key, logits, presents, *, past_length: int) -> None:
        size = logits.numel() * logits.element_size() + sum(p[:, :, :, past_length:].numel() * p.element_size()
                                                            for p in presents)
        if size > min(self.ANSWER_LIMIT, self.limit):
            return
        with torch.inference_mode(False):  # a normal tensor even when the caller is in inference mode
            kept = logits.detach().clone()
            new_parts = [p[:, :, :, past_length:, :].detach().clone() for p in presents]  # (2, B, H, T, D)
        self.entries[key] = (kept, new_parts, size)
        self.bytes += size
        while self.bytes > self.limit and self.entries:
            _, (_, _, dropped) = self.entries.popitem(last=False)
            self.bytes -= dropped
