"""wsim.functional.decoding must return exactly the ids of transformers' `GPT2LMHeadModel.generate`.

Small random GPT-2 models are built offline (2 layers, 32 hidden, 4 heads, vocab 101, eos = bos = 100). The
decoder drives the same HF model through the `forward` / `reorder` callbacks, so any difference in the ids comes
from the decoding algorithm. A forward hook on the HF model also records the input shape of every forward pass
that `generate` makes, which must equal `GenerationResult.forward_calls`.
"""

import functools
import itertools

import pytest
import torch
import transformers

from wsim.functional.decoding import GenerationConfig, GenerationResult, ban_repeated_ngrams, generate

VOCAB, EOS, PROMPT_LEN = 101, 100, 5

transformers.logging.set_verbosity_error()


@functools.lru_cache(maxsize=None)
def tiny_gpt2(act: str, dtype: torch.dtype, seed: int, eos_bias: float = 1.0, eos: int | None = EOS):
    """A random GPT-2; `eos_bias` > 1 scales the (tied) eos embedding row so that eos gets generated early."""
    torch.manual_seed(seed)
    config = transformers.GPT2Config(
        vocab_size=VOCAB, n_positions=64, n_embd=32, n_layer=2, n_head=4,
        activation_function=act, bos_token_id=eos, eos_token_id=eos,
    )
    model = transformers.GPT2LMHeadModel(config).eval().to(dtype)
    if eos_bias != 1.0:
        with torch.no_grad():
            model.transformer.wte.weight[EOS] *= eos_bias
    return model


def callbacks(model):
    """The decoder's callbacks around an HF model with a transformers-5 `DynamicCache`."""

    @torch.no_grad()
    def forward(input_ids, past):  # (rows, T_new) -> logits (rows, T_new, V)
        out = model(input_ids=input_ids, cache=past, use_cache=True)
        return out.logits, out.cache

    def reorder(past, beam_idx):
        past.reorder_cache(beam_idx)
        return past

    return forward, reorder


def hf_generate(model, prompt, **kwargs):
    """`model.generate` and the (rows, new_tokens) of each forward pass it ran."""
    calls = []
    hook = model.register_forward_hook(lambda mod, args, kw, out: calls.append(tuple(kw["input_ids"].shape)),
                                       with_kwargs=True)
    try:
        with torch.no_grad():
            ids = model.generate(prompt, do_sample=False, **kwargs)
    finally:
        hook.remove()
    return ids, calls


def check_against_hf(model, prompt, **kwargs) -> GenerationResult:
    ref, ref_calls = hf_generate(model, prompt, **kwargs)
    ours = generate(prompt, *callbacks(model), GenerationConfig(**kwargs))
    assert ours.sequences.dtype == torch.long
    assert ours.sequences.tolist() == ref.tolist(), f"{kwargs}\nHF:\n{ref}\nours:\n{ours.sequences}"
    assert ours.forward_calls == ref_calls
    return ours


def make_prompt(batch: int, seed: int) -> torch.LongTensor:
    return torch.randint(0, EOS, (batch, PROMPT_LEN), generator=torch.Generator().manual_seed(seed))


# Every (num_beams, no_repeat_ngram_size, early_stopping) combination; each one runs on a plain model and on one
# biased towards eos, with activation, dtype, seed, batch size and length argument rotating across the cases.
DECODING = [(1, ng, False) for ng in (0, 2, 3)] + list(itertools.product((2, 3, 4), (0, 2, 3), (False, True, "never")))
CASES = []
for i, (beams, ngram, early) in enumerate(DECODING):
    for eos_bias in (1.0, 4.0):
        j = 2 * i + (eos_bias > 1)
        CASES.append(dict(
            act=("gelu", "gelu_new")[j % 2], dtype=(torch.float32, torch.float64)[(j // 2) % 2], seed=j % 5,
            eos_bias=eos_bias, batch=(1, 3)[(j // 4) % 2], length=("max_new_tokens", "max_length")[(j // 3) % 2],
            num_beams=beams, no_repeat_ngram_size=ngram, early_stopping=early,
        ))


def _case_id(c):
    return (f"b{c['num_beams']}-ng{c['no_repeat_ngram_size']}-es{c['early_stopping']}-{c['act']}-"
            f"{str(c['dtype'])[6:]}-s{c['seed']}-eos{c['eos_bias']:g}-B{c['batch']}-{c['length']}")


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_matches_hf_generate(case):
    model = tiny_gpt2(case["act"], case["dtype"], case["seed"], case["eos_bias"])
    prompt = make_prompt(case["batch"], case["seed"])
    length = {"max_new_tokens": 12} if case["length"] == "max_new_tokens" else {"max_length": PROMPT_LEN + 11}
    kwargs = dict(num_beams=case["num_beams"], no_repeat_ngram_size=case["no_repeat_ngram_size"],
                  eos_token_id=EOS, pad_token_id=EOS, **length)
    if case["num_beams"] > 1:
        kwargs["early_stopping"] = case["early_stopping"]
    check_against_hf(model, prompt, **kwargs)


def test_early_eos_is_exercised_and_matches():
    """With a strong eos bias, sequences end early: greedy pads finished rows, beam search returns short beams."""
    model = tiny_gpt2("gelu_new", torch.float32, 3, eos_bias=4.0)
    prompt = make_prompt(3, 3)
    greedy = check_against_hf(model, prompt, max_new_tokens=12, eos_token_id=EOS, pad_token_id=EOS)
    generated = greedy.sequences[:, PROMPT_LEN:]
    assert (generated[:, :-1] == EOS).any(), "the eos bias no longer makes eos likely; raise it"
    assert len(greedy.forward_calls) == generated.shape[1]
    for beams in (2, 3, 4):
        check_against_hf(model, prompt, max_new_tokens=12, num_beams=beams, eos_token_id=EOS, pad_token_id=EOS)
    # a vocabulary where every prompt stops at once
    short = check_against_hf(tiny_gpt2("gelu", torch.float32, 3, eos_bias=20.0), prompt, max_new_tokens=12,
                             num_beams=3, eos_token_id=EOS, pad_token_id=EOS)
    assert short.sequences.shape[1] < PROMPT_LEN + 12


@pytest.mark.parametrize("num_beams", [1, 3])
@pytest.mark.parametrize("extra", [
    dict(pad_token_id=0),  # HF quirk: beam search pads with eos when pad is 0 (`pad or eos`)
    dict(pad_token_id=7),
    dict(eos_token_id=[EOS, 3, 17]),  # several eos ids: beam search keeps more candidates
    dict(length_penalty=2.0, early_stopping="never"),
    dict(length_penalty=-0.5, early_stopping="never"),
    dict(length_penalty=0.0, early_stopping=True),
], ids=["pad0", "pad7", "multi_eos", "lp2_never", "lp-0.5_never", "lp0_true"])
def test_special_tokens_and_length_penalty_match_hf(num_beams, extra):
    model = tiny_gpt2("gelu_new", torch.float32, 1, eos_bias=3.0)
    kwargs = dict(max_new_tokens=10, num_beams=num_beams, eos_token_id=EOS, pad_token_id=EOS) | extra
    if num_beams == 1:  # beam-only flags: HF warns about them with greedy search
        kwargs = {k: v for k, v in kwargs.items() if k not in ("length_penalty", "early_stopping")}
    check_against_hf(model, make_prompt(3, 1), **kwargs)


@pytest.mark.parametrize("num_beams", [1, 2])
def test_without_eos_runs_to_max_length(num_beams):
    model = tiny_gpt2("gelu", torch.float64, 2, eos=None)
    res = check_against_hf(model, make_prompt(3, 2), max_new_tokens=9, num_beams=num_beams, no_repeat_ngram_size=2)
    assert res.sequences.shape == (3, PROMPT_LEN + 9)
    assert res.forward_calls == [(3 * num_beams, PROMPT_LEN)] + [(3 * num_beams, 1)] * 8


def test_cache_is_opaque_and_calls_are_reported():
    """The decoder only threads `past` through the callbacks; a cache of plain tensors works the same."""
    model = tiny_gpt2("gelu_new", torch.float32, 0)
    forward, reorder = callbacks(model)
    seen = []

    def wrapped_forward(ids, past):  # past: (tuple of prefix ids (rows, L), real cache) or None
        seen.append(tuple(ids.shape))
        logits, cache = forward(ids, None if past is None else past[1])
        prefix = ids if past is None else torch.cat([past[0], ids], dim=1)
        return logits, (prefix, cache)

    def wrapped_reorder(past, beam_idx):
        assert beam_idx.dtype == torch.long and beam_idx.shape == (past[0].shape[0],)
        return past[0][beam_idx], reorder(past[1], beam_idx)

    prompt = make_prompt(2, 0)
    config = GenerationConfig(max_new_tokens=8, num_beams=3, eos_token_id=EOS, pad_token_id=EOS)
    res = generate(prompt, wrapped_forward, wrapped_reorder, config)
    ref, _ = hf_generate(model, prompt, max_new_tokens=8, num_beams=3, eos_token_id=EOS, pad_token_id=EOS)
    assert res.sequences.tolist() == ref.tolist()
    assert seen == res.forward_calls == [(6, PROMPT_LEN)] + [(6, 1)] * 7
    assert res.num_forward_calls == 8


def test_ban_repeated_ngrams():
    ids = torch.tensor([[1, 2, 3, 1, 2], [4, 4, 4, 4, 4]])
    scores = torch.zeros(2, 6)
    banned = ban_repeated_ngrams(ids, scores, 2) == -float("inf")
    assert banned.tolist() == [[False, False, False, True, False, False], [False, False, False, False, True, False]]
    banned = ban_repeated_ngrams(ids, scores, 3) == -float("inf")  # (1, 2) was followed by 3
    assert banned[0].nonzero().flatten().tolist() == [3] and banned[1].nonzero().flatten().tolist() == [4]
    assert ban_repeated_ngrams(ids[:, :1], scores, 2) is scores  # no complete ngram yet


@pytest.mark.parametrize("kwargs, field", [
    (dict(), "max_new_tokens"),
    (dict(max_new_tokens=3, max_length=9), "max_new_tokens"),
    (dict(max_new_tokens=0), "max_new_tokens"),
    (dict(max_length=-1), "max_length"),
    (dict(max_new_tokens=3, num_beams=0), "num_beams"),
    (dict(max_new_tokens=3, num_beams=2.0), "num_beams"),
    (dict(max_new_tokens=3, no_repeat_ngram_size=-1), "no_repeat_ngram_size"),
    (dict(max_new_tokens=3, early_stopping="sometimes"), "early_stopping"),
    (dict(max_new_tokens=3, early_stopping=1), "early_stopping"),
    (dict(max_new_tokens=3, eos_token_id=-2), "eos_token_id"),
    (dict(max_new_tokens=3, eos_token_id=()), "eos_token_id"),
    (dict(max_new_tokens=3, pad_token_id=True), "pad_token_id"),
    (dict(max_new_tokens=3, length_penalty=float("nan")), "length_penalty"),
])
def test_config_validation(kwargs, field):
    with pytest.raises(ValueError, match=field):
        GenerationConfig(**kwargs)


def test_generate_validation():
    forward, reorder = callbacks(tiny_gpt2("gelu", torch.float32, 0))
    prompt = make_prompt(1, 0)
    with pytest.raises(ValueError, match="max_length"):
        generate(prompt, forward, reorder, GenerationConfig(max_length=PROMPT_LEN))
    with pytest.raises(ValueError, match="reorder"):
        generate(prompt, forward, None, GenerationConfig(max_new_tokens=2, num_beams=2))
    with pytest.raises(ValueError, match="LongTensor"):
        generate(prompt.float(), forward, reorder, GenerationConfig(max_new_tokens=2))
    assert GenerationConfig(max_new_tokens=2, eos_token_id=[3, 4]).eos_token_id == (3, 4)


def test_the_first_full_ngram_is_banned_like_transformers():
    """Prompt [7, 7] with n = 2 holds one complete 2-gram, (7, 7): transformers bans 7 next. The
    boundary where the history is exactly n long is where an off-by-one hides."""
    from transformers.generation.logits_process import NoRepeatNGramLogitsProcessor

    ids, scores = torch.tensor([[7, 7]]), torch.zeros(1, 10)
    ref = NoRepeatNGramLogitsProcessor(2)(ids, scores.clone())
    ours = ban_repeated_ngrams(ids, scores.clone(), 2)
    assert torch.isinf(ref[0, 7]) and ref[0].isinf().sum() == 1  # what transformers does
    assert torch.equal(ours, ref)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_every_short_history_bans_what_transformers_bans(n):
    """Every history of length 1..6 over two ids (126 of them) and n = 1..3, one row each, against
    transformers' processor: shorter than n, exactly n, and longer."""
    from transformers.generation.logits_process import NoRepeatNGramLogitsProcessor

    for length in range(1, 7):
        for hist in itertools.product([7, 8], repeat=length):
            ids, scores = torch.tensor([hist]), torch.zeros(1, 10)
            ref = NoRepeatNGramLogitsProcessor(n)(ids, scores.clone())
            assert torch.equal(ban_repeated_ngrams(ids, scores.clone(), n), ref), (hist, n)
