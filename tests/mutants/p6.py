"""P6's mutants, on the tiny model: the reference with one file changed, graded on the parts that
could notice the change (every part that runs the changed function). The statistical checks fail
a correct sampler with probability ≤ 1e-6, so the right-but-different samplers cannot flake in
practice. The course's snippets, Shakespeare and NeurIPS strings join the pools when
../shared/data/course is there (tests/test_mutants.py sets AUTOGRADER_DATA_DIR)."""
from conftest import REFERENCE

from . import BASES, cases, source

SAMPLE = (REFERENCE / "submission" / "sample.py").read_text()
LIKELIHOOD = (REFERENCE / "submission" / "likelihood.py").read_text()
CLASSIFIER = (REFERENCE / "submission" / "classifier.py").read_text()
COUNTS = (REFERENCE / "submission" / "p6_gpt2_counts.py").read_text()
DISTRIBUTION = {"p6c_distribution_public", "p6c_distribution_random"}
SECOND = "p6c_second_step"
H1 = {"p6f_public", "p6f_random"}
H2 = {"p6h_public", "p6h_random"}


def replace(source: str, old: str, new: str) -> str:
    assert source.count(old) == 1, old
    return source.replace(old, new)


def sample_file(old: str, new: str) -> dict:
    return {"sample.py": replace(SAMPLE, old, new)}


TOP_K_STEP = "            logits = top_k_logits(logits[:, -1, :], k=config.top_k)  # (1, V)"
DRAW = "            current_text = torch.multinomial(probs, num_samples=1)  # (1, 1)"
HORIZON_ONE = "        return logits / temperature"
SECOND_TOP_K = "            next_logits = top_k_logits(next_logits[:, -1, :], k=config.top_k)  # (1, V)"
TERMS = "        logits, targets = logits[0, :-1], text[0, 1:]  # (T-1, V), (T-1,)"
SUM = "        return total"
FORWARD = "        logits = model(text)[0]  # (1, T, V); position t predicts token t + 1 (the cache is not kept)"
DECISION = "        return log_likelihood(model, text) < RANDOM_TEXT_THRESHOLD"
MIN_VALUES = "    min_values = values[:, -1:]  # (B, 1)"
SCALE_CALL = """            logits = temperature_scale(logits, model, new_past, config, temperature,
                                       temperature_horizon)"""

# name: (files, parts graded, rubric ids lost)
MUTANTS = {
    # p6c: draws from the unfiltered softmax
    "sample_without_top_k": (sample_file(TOP_K_STEP, "            logits = logits[:, -1, :]"),
                             ("p6c",), {"p6c_support", *DISTRIBUTION}),
    # p6c: greedy decoding, always the most likely token
    "sample_greedy": (sample_file(DRAW, "            current_text = torch.argmax(probs, dim=-1, keepdim=True)"),
                      ("p6c",), {*DISTRIBUTION, SECOND}),
    # p6c: returns only the new tokens
    "sample_without_prompt": (sample_file("    return torch.cat(output, dim=1)", "    return torch.cat(output[1:], dim=1)"),
                              ("p6c",), {"p6c_form", "p6c_support", *DISTRIBUTION, SECOND}),
    # p6c, p6h: top_k_logits keeps k − 1 tokens (<= where < belongs: the k-th largest is masked too); horizon 2's
    # second step barely moves (the k-th token's mass is inside p6h's tolerance), the direct check is exact
    "top_k_keeps_k_minus_one": (sample_file("    return torch.where(logits < min_values, torch.full_like(logits, MASKED), logits)",
                                            "    return torch.where(logits <= min_values, torch.full_like(logits, MASKED), logits)"),
                                ("p6c", "p6h"), {"p6c_top_k", "p6c_distribution_random"}),
    # p6c, p6h: top_k_logits keeps k + 1 tokens
    "top_k_keeps_k_plus_one": (sample_file("    values, _ = torch.topk(logits, k)  # (B, k), sorted descending",
                                           "    values, _ = torch.topk(logits, min(k + 1, logits.size(-1)))"),
                               ("p6c", "p6h"), {"p6c_top_k", *DISTRIBUTION}),
    # p6c: the temperature at the first step only, later steps at T = 1
    "temperature_first_step_only": (sample_file(SCALE_CALL, SCALE_CALL.replace("config, temperature,", "config, "
                                                "temperature if len(output) == 1 else None,")), ("p6c",), {SECOND}),
    # p6f: multiplies by T (the sampler that uses it draws from the wrong distribution too)
    "temperature_multiplied": (sample_file(HORIZON_ONE, "        return logits * temperature"),
                               ("p6c", "p6f"), {*H1, "p6c_distribution_random", SECOND}),
    # p6f: ignores T at horizon 1
    "temperature_ignored": (sample_file(HORIZON_ONE, "        return logits"),
                            ("p6c", "p6f"), {*H1, "p6c_distribution_random", SECOND}),
    # p6f: log_softmax(logits / T): the same distribution, a constant lower per row; the rule (README):
    # horizon 1 returns logits / T itself, so p6f is lost and the sampler keeps its points
    "temperature_log_softmax": (sample_file(HORIZON_ONE, "        return F.log_softmax(logits / temperature, dim=-1)"),
                                ("p6c", "p6f"), H1),
    # p6f: probabilities, not logits (the sampler then draws almost uniformly from the whole vocabulary)
    "temperature_softmax": (sample_file(HORIZON_ONE, "        return F.softmax(logits / temperature, dim=-1)"),
                            ("p6c", "p6f"), {*H1, "p6c_support", "p6c_distribution_random", SECOND}),
    # p6h: the second step's distribution without its top-k filter
    "horizon_two_without_second_top_k": (sample_file(SECOND_TOP_K, "            next_logits = next_logits[:, -1, :]"),
                                         ("p6f", "p6h"), H2),
    # p6h: horizon 2 computed like horizon 1
    "horizon_two_as_horizon_one": (sample_file("    if temperature_horizon == 1:", "    if temperature_horizon in (1, 2):"),
                                   ("p6f", "p6h"), H2),
    # p6h: divides by T after the logsumexp instead of inside it
    "horizon_two_temperature_outside": (
        sample_file("        first_logits = torch.logsumexp(joint_logits / temperature, dim=-1)  # (K,)",
                    "        first_logits = torch.logsumexp(joint_logits, dim=-1) / temperature  # (K,)"),
        ("p6f", "p6h"), H2),
    # p6d: averaged instead of summed
    "log_likelihood_averaged": ({"likelihood.py": replace(LIKELIHOOD, SUM, SUM + " / targets.numel()")},
                                ("p6d", "p6e"), {"p6d_public", "p6d_random"}),
    # p6d: the summed cross-entropy (the sign flipped), and the sum in bits
    "log_likelihood_negated": ({"likelihood.py": replace(LIKELIHOOD, SUM, "        return -total")},
                               ("p6d", "p6e"), {"p6d_public", "p6d_random"}),
    "log_likelihood_in_bits": ({"likelihood.py": replace(LIKELIHOOD, SUM, "        return total / math.log(2)").replace(
        "import torch\n", "import math\n\nimport torch\n", 1)}, ("p6d", "p6e"), {"p6d_public", "p6d_random"}),
    # p6d: the last token's term dropped
    "log_likelihood_missing_a_term": ({"likelihood.py": replace(LIKELIHOOD, TERMS, TERMS.replace("[0, :-1], text[0, 1:]",
                                                                                                 "[0, :-2], text[0, 1:-1]"))},
                                      ("p6d", "p6e"), {"p6d_public", "p6d_random"}),
    # p6d: position t's logits scored against token t (misaligned by one)
    "log_likelihood_misaligned": ({"likelihood.py": replace(LIKELIHOOD, TERMS, TERMS.replace("[0, :-1]", "[0, 1:]"))},
                                  ("p6d", "p6e"), {"p6d_public", "p6d_random"}),
    # p6d: the first token scored too, after <|endoftext|>
    "log_likelihood_first_token_included": (
        {"likelihood.py": replace(LIKELIHOOD, FORWARD, "        eot = torch.full((1, 1), model.config.vocab_size - 1, "
                                  "dtype=text.dtype, device=text.device)\n        text = torch.cat([eot, text], dim=1)\n" + FORWARD)},
        ("p6d", "p6e"), {"p6d_public", "p6d_random"}),
    # p6d: the log-softmax and the sum in float16
    "log_likelihood_float16": ({"likelihood.py": '''
        import torch
        import torch.nn.functional as F

        def log_likelihood(model, text):
            with torch.no_grad():
                logits, _ = model(text)
                log_probs = F.log_softmax(logits[0, :-1].half(), dim=-1)  # float16, and so is the sum
                return log_probs.gather(1, text[0, 1:, None]).sum().item()
        '''}, ("p6d", "p6e"), {"p6d_public", "p6d_random"}),
    # p6e: the comparison the wrong way round
    "classification_inverted": ({"classifier.py": replace(CLASSIFIER, DECISION, DECISION.replace(" < ", " > "))},
                                ("p6d", "p6e"), {"p6e_classification"}),
    # p6e: a threshold below every random string: everything is English
    "classification_threshold_too_low": (
        {"classifier.py": replace(CLASSIFIER, "RANDOM_TEXT_THRESHOLD = -300.0", "RANDOM_TEXT_THRESHOLD = -500.0")},
        ("p6d", "p6e"), {"p6e_classification"}),
    # p6e: an int, not a bool
    "classification_int": ({"classifier.py": replace(CLASSIFIER, DECISION, "        return int(log_likelihood(model, text) < RANDOM_TEXT_THRESHOLD)")},
                           ("p6d", "p6e"), {"p6e_classification"}),
    # p6e: log_likelihood's arguments swapped (a stand-in that answered whatever it got let it pass)
    "classification_arguments_swapped": ({"classifier.py": replace(CLASSIFIER, DECISION,
        "        return log_likelihood(text, model) < RANDOM_TEXT_THRESHOLD")}, ("p6d", "p6e"), {"p6e_classification"}),
    # p6e: never looks at the log-likelihood
    "classification_by_length": ({"classifier.py": replace(CLASSIFIER, DECISION, "        return text.shape[1] > 90")},
                                 ("p6d", "p6e"), {"p6e_classification"}),
    # p6a: floor(log2 V) + 1, one too many at powers of two
    "bits_floor_plus_one": ({"p6_gpt2_counts.py": replace(COUNTS, "    return (vocab_size - 1).bit_length()", "    return vocab_size.bit_length()")},
                            ("p6a", "p6b", "p6g"), {"p6a_public", "p6a_random"}),
    # p6a: a float
    "bits_float": ({"p6_gpt2_counts.py": replace(COUNTS, "    return (vocab_size - 1).bit_length()",
                                                 "    return float((vocab_size - 1).bit_length())")},
                   ("p6a", "p6b", "p6g"), {"p6a_public", "p6a_random"}),
    # p6b: the output layer counted even when tied
    "added_ignores_tying": ({"p6_gpt2_counts.py": replace(COUNTS, "    if not tied_embeddings:\n", "    if True:\n")},
                            ("p6a", "p6b", "p6g"), {"p6b_public", "p6b_random"}),
    # p6b: the bias counted as d per token
    "added_bias_times_d": ({"p6_gpt2_counts.py": replace(COUNTS, "        added += extra\n", "        added += extra * d_model\n")},
                           ("p6a", "p6b", "p6g"), {"p6b_public", "p6b_random"}),
    # p6a, p6b: not one int (a 1-element array, a str); the known-mistake hints compared them with == once
    "counts_not_an_int": ({"p6_gpt2_counts.py": replace(replace(COUNTS, "    return (vocab_size - 1).bit_length()",
                                                                "    return __import__('numpy').array([(vocab_size - 1).bit_length()])"),
                                                        "    return added\n", "    return str(added)\n")},
                          ("p6a", "p6b", "p6g"), {"p6a_public", "p6a_random", "p6b_public", "p6b_random"}),
    # p6g: the wrong answer, and the right one as a string
    "answer_true": ({"p6_gpt2_counts.py": replace(COUNTS, "    return False", "    return True")}, ("p6a", "p6b", "p6g"), {"p6g_answer"}),
    "answer_string": ({"p6_gpt2_counts.py": replace(COUNTS, "    return False", "    return 'False'")}, ("p6a", "p6b", "p6g"), {"p6g_answer"}),
}

# What the feedback must say for a mutant whose answer matches a known mistake: {mutant: {test id: words}}.
NAMES_THE_MISTAKE = {
    "sample_greedy": {"p6c_distribution_public": "the argmax, not a draw"},
    "sample_without_top_k": {"p6c_distribution_public": "top_k_logits was not applied"},
    "top_k_keeps_k_minus_one": {"p6c_top_k": "you kept k − 1 = 39 tokens",
                                "p6c_distribution_random": "top_k_logits seems to keep k − 1 = 39 tokens"},
    "top_k_keeps_k_plus_one": {"p6c_top_k": "you kept k + 1 = 41 tokens", "p6c_support": "keeps k + 1 tokens"},
    "temperature_first_step_only": {SECOND: "the temperature was applied at the first step only"},
    "temperature_multiplied": {"p6f_public": "the temperature was multiplied", "p6f_random": "multiplied",
                               "p6c_distribution_random": "the temperature was multiplied"},
    "temperature_ignored": {"p6f_public": "the temperature was ignored", "p6f_random": "ignored",
                            "p6c_distribution_random": "the temperature was ignored"},
    "temperature_log_softmax": {"p6f_public": "one constant for the whole row: that is log_softmax(logits / T)"},
    "temperature_softmax": {"p6f_public": "looks like probabilities", "p6f_random": "looks like probabilities"},
    "horizon_two_without_second_top_k": {"p6h_public": "the second step was not top-k filtered"},
    "horizon_two_as_horizon_one": {"p6h_public": "the whole row was divided by T, as horizon 1 does"},
    "horizon_two_temperature_outside": {"p6h_public": "the temperature applied after the logsumexp"},
    "log_likelihood_averaged": {"p6d_public": "the average over the", "p6d_random": "the average over the"},
    "log_likelihood_negated": {"p6d_public": "the negative log-likelihood", "p6d_random": "the negative log-likelihood"},
    "log_likelihood_in_bits": {"p6d_public": "in bits", "p6d_random": "in bits"},
    "log_likelihood_missing_a_term": {"p6d_public": "the sum without the last term"},
    "log_likelihood_misaligned": {"p6d_public": "shifted by one position"},
    "log_likelihood_first_token_included": {"p6d_public": "an extra first-token term"},
    "log_likelihood_float16": {"p6d_public": "computed in float16"},
    "classification_inverted": {"p6e_classification": "your comparison is the wrong way round"},
    "classification_threshold_too_low": {"p6e_classification": "for every value from -460 to -72"},
    "classification_by_length": {"p6e_classification": "without calling log_likelihood or the model"},
    "classification_arguments_swapped": {"p6e_classification": "'Tensor' object is not callable"},
    "classification_int": {"p6e_classification": "return the bool itself, not an int"},
    "bits_floor_plus_one": {"p6a_public": "floor(log2 V) + 1"},
    "added_ignores_tying": {"p6b_public": "tied embeddings share one matrix"},
    "added_bias_times_d": {"p6b_public": "one entry per token, not d"},
    "counts_not_an_int": {"p6a_public": ["bits_per_token(50257) returned array([16]), an ndarray",
                                         "not a sequence or an array", "Hint: a fixed-length binary code"],
                          "p6b_random": ["returned '", "a str", "not a str", "Hint: the embedding gains"]},
}

BATCHED_HORIZON_TWO = '''
    if temperature_horizon == 2:
        first_probs = F.softmax(logits, dim=-1)  # (1, V)
        first_tokens = torch.nonzero(logits[0] > MASKED).flatten()  # (K,)
        batch_past = [layer.expand(-1, first_tokens.numel(), -1, -1, -1) for layer in new_past]
        next_logits, _ = model(first_tokens[:, None], past=batch_past)  # (K, 1, V): all first tokens at once
        next_probs = F.softmax(top_k_logits(next_logits[:, -1, :], k=config.top_k), dim=-1)  # (K, V)
        joint = first_probs[0, first_tokens][:, None] * next_probs
        scaled = torch.full_like(logits, MASKED)
        scaled[0, first_tokens] = torch.logsumexp(torch.log(joint + 1e-10) / temperature, dim=-1)
        return scaled
    if temperature_horizon == 2 and False:'''

RIGHT_BUT_DIFFERENT = {
    "sample_categorical": (sample_file(DRAW, "            current_text = torch.distributions.Categorical(probs=probs).sample()[:, None]"),
                           ("p6c",)),
    "sample_gumbel_max": (sample_file(DRAW, "            current_text = torch.argmax(logits - torch.log(-torch.log("
                                            "torch.rand_like(logits))), dim=-1, keepdim=True)"), ("p6c",)),
    "sample_numpy": (sample_file(DRAW, "            import numpy as np\n            p = probs[0].double().cpu().numpy()\n"
                                       "            current_text = torch.tensor([[np.random.choice(p.size, p=p / p.sum())]], "
                                       "device=start_text.device)"), ("p6c",)),
    # no cache (the whole sequence every step), temperature before top-k, horizon 2 batched
    "no_cache_and_batched_horizon_two": ({"sample.py": replace(replace(replace(replace(SAMPLE,
        "    if temperature_horizon == 2:", BATCHED_HORIZON_TWO),
        "            logits, new_past = model(current_text, past=past)  # (1, T, V)",
        "            logits, new_past = model(torch.cat(output, dim=1))  # (1, T, V), no cache"),
        TOP_K_STEP, "            logits = logits[:, -1, :] / (temperature or 1.0)\n"
                    "            logits = top_k_logits(logits, k=config.top_k)"),
        "            logits = temperature_scale(logits, model, new_past, config, temperature,\n"
        "                                       temperature_horizon)",
        "            if temperature_horizon == 2:\n"
        "                logits = temperature_scale(logits * (temperature or 1.0), model, new_past, config, temperature, 2)")},
        ("p6c", "p6f", "p6h")),
    # masked entries -inf at horizon 1 (softmax gives them probability 0, as -1e10 does)
    "temperature_masked_minus_inf": ({"sample.py": replace(SAMPLE, "        return logits / temperature",
        "        return torch.where(logits > -1e9, logits / temperature, torch.full_like(logits, float('-inf')))")},
        ("p6c", "p6f")),
    "log_likelihood_cross_entropy_tensor": ({"likelihood.py": '''
        import torch
        import torch.nn.functional as F

        def log_likelihood(model, text):
            logits, _ = model(text)
            return -F.cross_entropy(logits[0, :-1], text[0, 1:], reduction="sum")  # a 0-d float32 tensor
        '''}, ("p6d", "p6e")),
    "log_likelihood_incremental_numpy": ({"likelihood.py": '''
        import numpy as np
        import torch

        def log_likelihood(model, text):
            total, past = np.float64(0.0), None
            with torch.no_grad():
                for t in range(text.shape[1] - 1):
                    logits, past = model(text[:, t:t + 1], past=past)
                    total += torch.log_softmax(logits[0, -1], dim=-1)[text[0, t + 1]].item()
            return total
        '''}, ("p6d", "p6e")),
    # the stand-in for log_likelihood is called by keyword; the real one returns a 0-d tensor, and .item() is used
    "classification_keywords_and_item": ({"classifier.py": '''
        from submission.likelihood import log_likelihood

        def classification(model, text):
            return log_likelihood(model=model, text=text).item() < -300.0
        ''', "likelihood.py": '''
        import torch.nn.functional as F

        def log_likelihood(model, text):
            logits, _ = model(text)
            return -F.cross_entropy(logits[0, :-1], text[0, 1:], reduction="sum")  # a 0-d float32 tensor
        '''}, ("p6d", "p6e")),
    # the log-likelihood computed inline, token by token with the cache, not through log_likelihood (the rule:
    # classification is judged by its decisions, so this is as right as calling log_likelihood)
    "classification_inline": ({"classifier.py": '''
        import torch

        def classification(model, text):
            total, past = 0.0, None
            with torch.no_grad():
                for t in range(text.shape[1] - 1):
                    logits, past = model(text[:, t:t + 1], past=past)
                    total += torch.log_softmax(logits[0, -1], dim=-1)[text[0, t + 1]].item()
            return total < -300
        '''}, ("p6e",)),
    "classification_module_attribute_tensor": ({"classifier.py": '''
        import torch
        import submission.likelihood as likelihood

        def classification(model, text):
            return torch.tensor(likelihood.log_likelihood(model, text) < -350.0)  # a 0-d bool tensor
        '''}, ("p6e",)),
    "counts_other_forms": ({"p6_gpt2_counts.py": '''
        import math
        import numpy as np

        def bits_per_token(vocab_size):
            return math.ceil(math.log2(vocab_size))

        def added_parameters(old_vocab, new_vocab, d_model, *, tied_embeddings, output_bias):
            rows = np.int64(new_vocab - old_vocab)
            return rows * d_model * (1 if tied_embeddings else 2) + (rows if output_bias else 0)

        def per_token_temperature_matches_joint():
            return np.bool_(False)
        '''}, ("p6a", "p6b", "p6g")),
}


BASES.update({"sample.py": SAMPLE, "likelihood.py": LIKELIHOOD, "classifier.py": CLASSIFIER,
              "p6_gpt2_counts.py": COUNTS})


def _files(files: dict) -> dict:
    return {name: source(text) for name, text in files.items()}


PARTS = {name: entry[1] for name, entry in {**MUTANTS, **RIGHT_BUT_DIFFERENT}.items()}
# Tests whose power against a mutant depends on the instances drawn: the support test sees k + 1
# tokens only when a draw lands on the 41st token, which has little mass in some prompt pools
# (with the course's data here it does; without, it need not); p6c_top_k catches it exactly.
MAY_LOSE = {"top_k_keeps_k_plus_one": {"p6c_support"}}

CASES = cases("p6", files_of=_files, may_lose=MAY_LOSE, mutants={name: (files, lose) for name, (files, _, lose) in MUTANTS.items()},
              right={name: files for name, (files, _) in RIGHT_BUT_DIFFERENT.items()}, parts=PARTS.__getitem__,
              names_the_mistake=NAMES_THE_MISTAKE)
