"""The P6 reference solutions (reference/submission/) on the tiny model, each checked against an
independent computation: transformers' GPT2LMHeadModel, or brute force without the cache."""
import importlib
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from autograder import models
from autograder.child.course_model import load_course_model

REFERENCE = Path(__file__).resolve().parents[1] / "reference"
MASKED = -1e10


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = models.build_tiny(tmp_path_factory.mktemp("tiny") / "tiny")
    model, config = load_course_model(folder)
    return folder, model, config


def _forget_submission():
    for name in [m for m in sys.modules if m == "submission" or m.startswith("submission.")]:
        del sys.modules[name]


@pytest.fixture(scope="module")
def submission():
    """The reference as the course imports it: a top-level package named `submission`
    (any other `submission` imported earlier is forgotten first, and ours afterwards)."""
    _forget_submission()
    sys.path.insert(0, str(REFERENCE))
    try:
        modules = {name: importlib.import_module(f"submission.{name}")
                   for name in ("sample", "likelihood", "classifier", "p6_gpt2_counts")}
        assert Path(modules["sample"].__file__).parent == REFERENCE / "submission"
        yield modules
    finally:
        sys.path.remove(str(REFERENCE))
        _forget_submission()


def tokens(length, *, seed):
    return torch.randint(0, 256, (1, length), generator=torch.Generator().manual_seed(seed))


def test_log_likelihood_matches_transformers_cross_entropy(tiny, submission):
    from transformers import GPT2LMHeadModel

    folder, model, _ = tiny
    hf = GPT2LMHeadModel.from_pretrained(str(folder)).eval()
    text = tokens(100, seed=1)
    with torch.no_grad():
        logits = hf(text).logits[0].double()  # (T, V)
    expected = -F.cross_entropy(logits[:-1], text[0, 1:], reduction="sum").item()
    got = submission["likelihood"].log_likelihood(model, text)
    assert type(got) is float
    assert got == pytest.approx(expected, abs=1e-3)
    assert submission["likelihood"].log_likelihood(model, text[:, :1]) == 0.0


def test_classification_thresholds_log_likelihood(tiny, submission, monkeypatch):
    _, model, _ = tiny
    classifier = submission["classifier"]
    for value, is_random in [(-301.0, True), (-299.0, False), (-460.0, True), (-72.0, False)]:
        monkeypatch.setattr(classifier, "log_likelihood", lambda m, t, v=value: v)
        assert classifier.classification(model, tokens(5, seed=2)) is is_random


def test_top_k_keeps_exactly_the_k_largest(submission):
    logits = torch.randn(1, 257, generator=torch.Generator().manual_seed(3))
    filtered = submission["sample"].top_k_logits(logits, 40)
    kept = filtered > MASKED
    assert kept.sum() == 40
    top = torch.zeros(257, dtype=torch.bool).index_fill(0, logits[0].topk(40).indices, True)
    assert torch.equal(kept[0], top)
    assert torch.equal(filtered[kept], logits[kept]) and (filtered[~kept] == MASKED).all()


def test_horizon_one_divides_by_the_temperature(tiny, submission):
    _, model, config = tiny
    scale = submission["sample"].temperature_scale
    logits = torch.randn(1, config.vocab_size, generator=torch.Generator().manual_seed(4))
    assert torch.equal(scale(logits, model, None, config, None, 1), logits)
    torch.testing.assert_close(scale(logits, model, None, config, 0.7, 1), logits / 0.7)


@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_horizon_two_is_the_marginal_of_the_tempered_joint(tiny, submission, temperature):
    """Brute force: every p(s | t) from the whole sequence prefix + [t], no cache, float64."""
    _, model, config = tiny
    sample = submission["sample"]
    prefix = tokens(30, seed=5)
    with torch.no_grad():
        logits, new_past = model(prefix)
        first = sample.top_k_logits(logits[:, -1, :], config.top_k)  # (1, V)
        past_before = [p.clone() for p in new_past]
        got = sample.temperature_scale(first, model, new_past, config, temperature, 2)

        survivors = torch.nonzero(first[0] > MASKED).flatten()
        assert len(survivors) == config.top_k
        p_first = F.softmax(first[0].double(), dim=-1)  # (V,)
        tempered = []
        for t in survivors.tolist():
            whole, _ = model(torch.cat([prefix, torch.tensor([[t]])], dim=1))
            second = sample.top_k_logits(whole[:, -1, :], config.top_k)[0].double()
            joint = p_first[t] * F.softmax(second, dim=-1)  # (V,): p(t, s)
            tempered.append(((joint + 1e-10).log() / temperature).exp().sum())
        tempered = torch.stack(tempered)
        expected = torch.zeros(config.vocab_size, dtype=torch.float64)
        expected[survivors] = tempered / tempered.sum()

    assert got.shape == (1, config.vocab_size)
    outside = torch.ones(config.vocab_size, dtype=torch.bool).index_fill(0, survivors, False)
    assert (got[0, outside] == MASKED).all() and torch.isfinite(got).all()
    torch.testing.assert_close(F.softmax(got[0].double(), dim=-1), expected, atol=1e-6, rtol=0)
    # the check can tell horizon 2 from horizon 1 on this model
    horizon_one = F.softmax((first[0] / temperature).double(), dim=-1)
    assert (horizon_one - expected).abs().max() > 1e-3
    assert all(torch.equal(p, q) for p, q in zip(new_past, past_before))


@pytest.mark.parametrize("temperature, horizon, length",
                         [(None, 1, 40), (0.8, 1, 40), (1.5, 2, 4)])
def test_sample_draws_within_top_k_and_keeps_the_prompt(tiny, submission, temperature, horizon,
                                                         length):
    _, model, config = tiny
    start = tokens(10, seed=6)
    torch.manual_seed(7)
    out = submission["sample"].sample(model, start, config, length, temperature=temperature,
                                      temperature_horizon=horizon)
    assert out.dtype == torch.long and out.shape == (1, 10 + length)
    assert torch.equal(out[:, :10], start)
    with torch.no_grad():
        logits, _ = model(out[:, :-1])  # (1, 10 + length - 1, V): position i predicts i + 1
    for step in range(length):
        pos = 10 + step - 1
        kth = logits[0, pos].topk(config.top_k).values[-1]
        drawn = out[0, pos + 1]
        # eps: recomputing without the cache rounds differently (see the spec's top-k note)
        assert logits[0, pos, drawn] >= kth - 1e-4, f"step {step}: token {drawn} not in the top-k"


def test_counts(submission):
    counts = submission["p6_gpt2_counts"]
    assert counts.bits_per_token(50257) == 16
    assert [counts.bits_per_token(v) for v in (1, 2, 3, 65536, 65537)] == [0, 1, 2, 16, 17]
    added = counts.added_parameters(50257, 60000, 768, tied_embeddings=False, output_bias=False)
    assert added == 14965248 and type(added) is int
    tied = counts.added_parameters(50257, 60000, 768, tied_embeddings=True, output_bias=False)
    assert tied == 9743 * 768
    biased = counts.added_parameters(50257, 60000, 768, tied_embeddings=True, output_bias=True)
    assert biased == 9743 * 768 + 9743
    assert counts.per_token_temperature_matches_joint() is False
