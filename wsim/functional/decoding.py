"""Model-independent greedy and beam-search decoding with a KV cache.

The decoder never sees a model: it drives two callbacks,

* ``forward(input_ids, past) -> (logits, past)`` runs the model incrementally. The first call gets the whole
  prompt ``(rows, T)`` with ``past=None``; every later call gets one new token per row ``(rows, 1)`` and the
  ``past`` the previous call returned. ``logits`` is ``(rows, T_new, V)``; only its last position is read, so a
  model may return ``(rows, 1, V)`` too. The cache ``past`` is opaque to the decoder.
* ``reorder(past, beam_idx) -> past`` (beam search only) selects cache rows along the batch dimension:
  row ``i`` of the result is row ``beam_idx[i]`` of the input. It may reorder in place and return ``past``.

The result reproduces, token for token, what ``transformers`` 5.24 ``GenerationMixin.generate(..., do_sample=False)``
returns for a decoder-only model, a batch of equal-length prompts and no attention mask:

* ``num_beams == 1`` mirrors ``GenerationMixin._sample`` (greedy branch): argmax of the processed float32 logits,
  finished rows continue with ``pad_token_id``, the loop stops when every row hit ``eos`` or ``max_length``.
* ``num_beams > 1`` mirrors ``GenerationMixin._beam_search`` with its helpers ``_get_top_k_continuations``,
  ``_get_running_beams_for_next_iteration``, ``_update_finished_beams``, ``_check_early_stop_heuristic`` and
  ``_beam_search_has_unfinished_sequences`` (the vectorised beam search without ``BeamScorer``).
* ``no_repeat_ngram_size`` mirrors ``NoRepeatNGramLogitsProcessor``; the stop tests mirror
  ``MaxLengthCriteria`` and ``EosTokenCriteria``; lengths and special tokens mirror ``_prepare_generated_length``,
  ``_validate_generated_length`` and ``_prepare_special_tokens`` (pad defaults to the first eos).

Every floating-point operation that decides a token (float32 cast, ``log_softmax``, score sums, length-penalty
division, the ``-1e9`` masks, ``topk``) is done in the same order and dtype as there, so ties break identically.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

ForwardFn = Callable[[torch.LongTensor, Any], "tuple[torch.Tensor, Any]"]
ReorderFn = Callable[[Any, torch.LongTensor], Any]

_NEG = -1.0e9  # the "impossible" score transformers adds to masked candidates


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


@dataclass(frozen=True)
class GenerationConfig:
    """What to generate; the fields mean what the same-named ``transformers.GenerationConfig`` fields mean.

    Give exactly one of ``max_new_tokens`` (tokens added to the prompt) or ``max_length`` (prompt plus new
    tokens). ``eos_token_id`` may be one id or a sequence of ids (stored as a tuple); ``pad_token_id`` defaults
    to the first eos id. ``early_stopping`` and ``length_penalty`` only matter for beam search.
    """

    max_new_tokens: int | None = None
    max_length: int | None = None
    num_beams: int = 1
    no_repeat_ngram_size: int = 0
    early_stopping: bool | str = False
    eos_token_id: int | tuple[int, ...] | None = None
    pad_token_id: int | None = None
    length_penalty: float = 1.0

    def __post_init__(self):
        def bad(name, value, allowed):
            raise ValueError(f"GenerationConfig.{name}={value!r} is invalid: {name} must be {allowed}")

        if (self.max_new_tokens is None) == (self.max_length is None):
            raise ValueError(
                f"GenerationConfig needs exactly one of max_new_tokens / max_length, got "
                f"max_new_tokens={self.max_new_tokens!r} and max_length={self.max_length!r}"
            )
        for name in ("max_new_tokens", "max_length", "num_beams"):
            value = getattr(self, name)
            if value is not None and (not _is_int(value) or value < 1):
                bad(name, value, "an int >= 1")
        if not _is_int(self.no_repeat_ngram_size) or self.no_repeat_ngram_size < 0:
            bad("no_repeat_ngram_size", self.no_repeat_ngram_size, "an int >= 0 (0 disables it)")
        if not (isinstance(self.early_stopping, bool) or self.early_stopping == "never"):
            bad("early_stopping", self.early_stopping, "True, False or 'never'")
        eos = self.eos_token_id
        if eos is not None:
            eos = (eos,) if _is_int(eos) else tuple(eos) if isinstance(eos, (list, tuple)) else None
            if not eos or not all(_is_int(e) and e >= 0 for e in eos):
                bad("eos_token_id", self.eos_token_id, "None, an int >= 0 or a non-empty sequence of them")
            object.__setattr__(self, "eos_token_id", eos)
        if self.pad_token_id is not None and (not _is_int(self.pad_token_id) or self.pad_token_id < 0):
            bad("pad_token_id", self.pad_token_id, "None or an int >= 0")
        lp = self.length_penalty
        if isinstance(lp, bool) or not isinstance(lp, (int, float)) or not math.isfinite(lp):
            bad("length_penalty", lp, "a finite float")

    def total_length(self, prompt_len: int) -> int:
        """The ``max_length`` transformers uses: prompt plus ``max_new_tokens``, or ``max_length`` itself."""
        total = self.max_length if self.max_new_tokens is None else prompt_len + self.max_new_tokens
        if prompt_len >= total:  # as `_validate_generated_length`
            raise ValueError(
                f"prompt length {prompt_len} leaves no room to generate: max_length={total} must exceed it"
            )
        return total


@dataclass(frozen=True)
class GenerationResult:
    """``sequences`` (B, T_total): prompts plus generated ids, exactly as ``transformers`` returns them.

    ``forward_calls[i] = (rows, new_tokens)`` is the input shape of the i-th ``forward`` call: the prefill
    ``(B * num_beams, T)`` and then one ``(B * num_beams, 1)`` per later step. In beam search ``reorder`` runs
    (on ``rows`` cache rows) between consecutive forward calls, i.e. ``len(forward_calls) - 1`` times.
    """

    sequences: torch.LongTensor
    forward_calls: list[tuple[int, int]] = field(default_factory=list)

    @property
    def num_forward_calls(self) -> int:
        return len(self.forward_calls)


def ban_repeated_ngrams(input_ids: torch.LongTensor, scores: torch.Tensor, ngram_size: int) -> torch.Tensor:
    """Set to -inf the score of every token that would repeat an ngram of ``input_ids`` (as
    ``NoRepeatNGramLogitsProcessor``): token ``w`` is banned if ``(last ngram_size-1 tokens, w)`` already occurs.

    input_ids: (N, L); scores: (N, V) -> (N, V).
    """
    n = ngram_size
    length = input_ids.shape[1]
    if n <= 0 or length < n:
        return scores
    vocab = scores.shape[-1]
    prefix = input_ids[:, length - n + 1 :]  # (N, n-1): the ngram the next token would complete
    windows = input_ids.unfold(1, n, 1)  # (N, L-n+1, n): every ngram already present
    matches = (windows[..., :-1] == prefix[:, None, :]).all(dim=-1)  # (N, L-n+1)
    # A non-matching window (or an id beyond the lm output) marks a spare column `vocab`, dropped below.
    banned_ids = torch.where(matches, windows[..., -1].clamp(max=vocab), vocab)  # (N, L-n+1)
    banned = scores.new_zeros((scores.shape[0], vocab + 1), dtype=torch.bool).scatter_(1, banned_ids, True)
    return scores.masked_fill(banned[:, :vocab], -float("inf"))


def generate(
    prompt_ids: torch.LongTensor,
    forward: ForwardFn,
    reorder: ReorderFn | None,
    config: GenerationConfig,
) -> GenerationResult:
    """Decode from ``prompt_ids`` (B, T) with greedy search (``num_beams == 1``) or beam search.

    Returns a :class:`GenerationResult` whose ``sequences`` (B, T_total) equal ``transformers``
    ``model.generate(prompt_ids, do_sample=False, ...)`` with the same fields (see the module docstring).
    ``reorder`` may be None for greedy decoding; beam search needs it.
    """
    if not isinstance(prompt_ids, torch.Tensor) or prompt_ids.dim() != 2 or prompt_ids.dtype != torch.long:
        raise ValueError("prompt_ids must be a LongTensor of shape (batch, prompt_len)")
    if prompt_ids.shape[0] < 1 or prompt_ids.shape[1] < 1:
        raise ValueError(f"prompt_ids must be non-empty, got shape {tuple(prompt_ids.shape)}")
    if config.num_beams > 1 and reorder is None:
        raise ValueError(f"num_beams={config.num_beams} needs a reorder callback for the cache, got None")
    max_length = config.total_length(prompt_ids.shape[1])
    eos = torch.tensor(config.eos_token_id or (), dtype=torch.long, device=prompt_ids.device)  # (n_eos,)
    pad = config.pad_token_id
    if pad is None and config.eos_token_id is not None:
        pad = config.eos_token_id[0]
    if config.num_beams == 1:
        return _greedy(prompt_ids, forward, config, max_length, eos, pad)
    return _beam_search(prompt_ids, forward, reorder, config, max_length, eos, pad)


def _last_logits(logits: torch.Tensor, device) -> torch.Tensor:
    """(rows, T_new, V) -> (rows, V) float32, like ``outputs.logits[:, -1].to(dtype=torch.float32)``."""
    return logits[:, -1].to(copy=True, dtype=torch.float32, device=device)


def _greedy(prompt_ids, forward, config, max_length, eos, pad) -> GenerationResult:
    """Greedy search, mirroring the ``do_sample=False`` path of ``GenerationMixin._sample``."""
    batch, _ = prompt_ids.shape
    input_ids = prompt_ids  # (B, L), grows by one column per step
    unfinished = torch.ones(batch, dtype=torch.long, device=prompt_ids.device)  # (B,) 1 = still generating
    logits, past = forward(prompt_ids, None)  # prefill: (B, T, V)
    calls = [(batch, prompt_ids.shape[1])]
    while True:
        scores = ban_repeated_ngrams(input_ids, _last_logits(logits, input_ids.device), config.no_repeat_ngram_size)
        next_tokens = torch.argmax(scores, dim=-1)  # (B,)
        if eos.numel():  # finished rows get the pad token (only when an eos criterion exists, as in HF)
            next_tokens = next_tokens * unfinished + pad * (1 - unfinished)
        input_ids = torch.cat([input_ids, next_tokens[:, None]], dim=-1)
        done = torch.isin(next_tokens, eos) | (input_ids.shape[1] >= max_length)  # (B,) bool
        unfinished = unfinished & ~done
        if unfinished.max() == 0:
            return GenerationResult(input_ids, calls)
        logits, past = forward(next_tokens[:, None], past)  # (B, 1, V)
        calls.append((batch, 1))


def _beam_search(prompt_ids, forward, reorder, config, max_length, eos, pad) -> GenerationResult:
    """Beam search, mirroring ``GenerationMixin._beam_search`` (num_return_sequences=1, do_sample=False).

    Shapes: B batch, K num_beams, C = max(2, 1 + n_eos) * K candidates kept per step, V vocab, M max_length.
    """
    device = prompt_ids.device
    batch, prompt_len = prompt_ids.shape
    k = config.num_beams
    n_cand = max(2, 1 + eos.numel()) * k
    is_top_k = torch.arange(n_cand, device=device) < k  # (C,) only the best K candidates may finish
    early_stopping, length_penalty = config.early_stopping, config.length_penalty
    # HF fills unused positions with `pad_token_id or eos_token_id[0] if eos_token_id is not None else -1`
    # (so a pad id of 0 falls back to the eos id).
    fill = (pad or int(eos[0])) if eos.numel() else -1

    # running beams: the live hypotheses; finished beams: the best K completed ones (score -1e9 = empty slot)
    running_seqs = torch.full((batch, k, max_length), fill, dtype=torch.long, device=device)  # (B, K, M)
    running_seqs[:, :, :prompt_len] = prompt_ids[:, None, :]
    finished_seqs = running_seqs.clone()  # (B, K, M)
    running_scores = torch.zeros((batch, k), dtype=torch.float, device=device)  # (B, K) sum of log-probs
    running_scores[:, 1:] = _NEG  # only beam 0 is live at first: the K copies of the prompt are identical
    finished_scores = torch.full((batch, k), _NEG, dtype=torch.float, device=device)  # (B, K) length-penalised
    finished_lens = torch.zeros((batch, k), dtype=torch.long, device=device)  # (B, K) generated tokens
    is_finished = torch.zeros((batch, k), dtype=torch.bool, device=device)  # (B, K) slot holds a hypothesis
    can_improve = torch.ones((batch, 1), dtype=torch.bool, device=device)  # (B, 1) early-stop heuristic unmet
    row_offset = torch.arange(batch, device=device)[:, None] * k  # (B, 1) first cache row of each prompt

    logits, past = forward(prompt_ids.repeat_interleave(k, dim=0), None)  # prefill: (B*K, T, V)
    calls = [(batch * k, prompt_len)]
    cur_len = prompt_len
    while True:
        # b. accumulated log-probs of every one-token continuation of every running beam
        flat_running = running_seqs[:, :, :cur_len].reshape(batch * k, cur_len)  # (B*K, L)
        log_probs = torch.log_softmax(_last_logits(logits, device), dim=-1)  # (B*K, V)
        log_probs = ban_repeated_ngrams(flat_running, log_probs, config.no_repeat_ngram_size)
        vocab = log_probs.shape[-1]
        log_probs = log_probs.view(batch, k, vocab) + running_scores[:, :, None]  # (B, K, V)
        log_probs = log_probs.reshape(batch, k * vocab)  # (B, K*V)

        # c. top C continuations (`_get_top_k_continuations`)
        cand_scores, cand_idx = torch.topk(log_probs, k=n_cand)  # (B, C)
        cand_beam, cand_token = cand_idx // vocab, cand_idx % vocab  # (B, C) source beam, new token
        cand_seqs = torch.take_along_dim(running_seqs, cand_beam[:, :, None], dim=1)  # (B, C, M)
        cand_seqs[:, :, cur_len] = cand_token
        cand_rows = cand_beam + row_offset  # (B, C) cache row each candidate extends
        # d. MaxLengthCriteria | EosTokenCriteria on each candidate
        cand_stops = torch.isin(cand_token, eos) | (cur_len + 1 >= max_length)  # (B, C)

        # e. best K candidates that did not stop keep running (`_get_running_beams_for_next_iteration`)
        cand_running_scores = cand_scores + cand_stops.to(torch.float32) * _NEG
        keep = torch.topk(cand_running_scores, k=k)[1]  # (B, K)
        running_seqs = torch.take_along_dim(cand_seqs, keep[:, :, None], dim=1)
        running_scores = torch.take_along_dim(cand_running_scores, keep, dim=1)
        beam_idx = torch.take_along_dim(cand_rows, keep, dim=1).reshape(batch * k)  # (B*K,)

        # f. stopped candidates among the top K compete for the finished slots (`_update_finished_beams`)
        just_finished = cand_stops & is_top_k[None, :]  # (B, C)
        cand_final = cand_scores / ((cur_len + 1 - prompt_len) ** length_penalty)
        slots_full = torch.all(is_finished, dim=-1, keepdim=True) & (early_stopping is True)  # (B, 1)
        cand_final += slots_full.to(torch.float32) * _NEG
        cand_final += (~can_improve).to(torch.float32) * _NEG
        cand_final += (~just_finished) * _NEG
        merged_scores = torch.cat((finished_scores, cand_final), dim=1)  # (B, K+C)
        best = torch.topk(merged_scores, k=k)[1]  # (B, K)
        finished_seqs = torch.take_along_dim(torch.cat((finished_seqs, cand_seqs), dim=1), best[:, :, None], dim=1)
        finished_scores = torch.take_along_dim(merged_scores, best, dim=1)
        cand_lens = torch.full_like(cand_token, cur_len + 1 - prompt_len)
        finished_lens = torch.take_along_dim(torch.cat((finished_lens, cand_lens), dim=1), best, dim=1)
        is_finished = torch.take_along_dim(torch.cat((is_finished, just_finished), dim=1), best, dim=1)

        # g. stop test (`_check_early_stop_heuristic`, `_beam_search_has_unfinished_sequences`)
        cur_len += 1
        if early_stopping == "never" and length_penalty > 0.0:
            best_len = max_length - prompt_len
        else:
            best_len = cur_len - prompt_len
        best_running = running_scores[:, :1] / (best_len**length_penalty)  # (B, 1)
        worst_finished = torch.where(is_finished, torch.min(finished_scores, dim=1, keepdim=True)[0], _NEG)
        can_improve = can_improve & torch.any(best_running > worst_finished, dim=-1, keepdim=True)
        all_done = torch.all(is_finished) & (early_stopping is True)
        if not bool(torch.any(can_improve) & ~all_done & ~torch.all(cand_stops)):
            break
        past = reorder(past, beam_idx)
        logits, past = forward(running_seqs[:, :, cur_len - 1].reshape(batch * k, 1), past)  # (B*K, 1, V)
        calls.append((batch * k, 1))

    # 5. best finished hypothesis per prompt, cropped to the longest of them (HF crops via beam_indices)
    out_len = prompt_len + int(finished_lens[:, 0].max())
    return GenerationResult(finished_seqs[:, 0, :out_len], calls)
