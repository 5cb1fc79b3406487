"""``wsim.generate``: text generation whose every forward pass runs through the weight-streaming
engine, token for token what ``transformers`` ``generate`` gives, with the simulated latency.

Each forward call of the decoder (``wsim.functional.decoding``) is one engine run of forward-only
passes carrying tensors: MemoryX streams every layer's weights, each CS-2 runs the layer on its
rows with its KV cache (kept on the wafer, never the weights), the head's logits come back. The
simulated latency comes from one timing run of the whole recorded call sequence
(``wsim.engine.inference``), where MemoryX streams from call to call without a gap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from models.decoder import DecoderConfig
from wsim.cluster import hardware
from wsim.cluster import generations
from wsim.engine.inference import ForwardCall, build_schedule, check_kv_cache, simulate_inference
from wsim.engine.run import SimOptions, Simulation
from wsim.errors import ConfigError, require
from wsim.functional.decoding import GenerationConfig
from wsim.functional.decoding import generate as decode
from wsim.functional.train import spec_from_config


class InferencePayload:
    """The engine's payload hook for a forward call: weights down, logits out, KV cache per CS-2."""

    def __init__(self, cfg: DecoderConfig, weights: dict[str, Tensor], systems: int):
        self.cfg, self.weights, self.systems = cfg, weights, systems
        self.names = cfg.layer_names()
        self.streamed = [cfg.layer_param_names(l) for l in self.names]
        self.caches: list[list] = [[None] * len(self.names) for _ in range(systems)]
        self.ids: list[Tensor] = []
        self.pos_offset = 0
        self.x: dict[int, Tensor] = {}
        self.logits: dict[int, Tensor] = {}

    def stream_weights(self, p) -> dict[str, Tensor]:
        return {n: self.weights[n] for n in self.streamed[p.layer]}  # read-only: inference

    def compute(self, system: int, p, weights) -> None:
        name = self.names[p.layer]
        with torch.no_grad():
            if name == "embedding":
                self.x[system] = self.cfg.layer_forward(name, self.ids[system], weights, pos_offset=self.pos_offset)
            elif name == "head":
                self.logits[system] = self.cfg.layer_forward(name, self.x.pop(system), weights)
            else:  # the cache holds kv_heads keys and values per block (grouped-query attention)
                x, present = self.cfg.layer_forward(name, self.x[system], weights, pos_offset=self.pos_offset,
                                                    past_kv=self.caches[system][p.layer], use_cache=True)
                self.x[system] = x
                self.caches[system][p.layer] = present

    def reduce(self, parts):  # pragma: no cover - inference sends nothing up
        return None

    def receive_gradient(self, p, grad):  # pragma: no cover
        pass

    def update(self, step, layer):  # pragma: no cover
        pass


# Every row (prompt x beam) is decoded with real tensors on this CPU: bound the rows so that a
# typo in --batch or --num-beams is refused rather than exhausting memory.
MAX_ROWS = 65_536


def check_rows(batch: int, num_beams: int) -> None:
    """Refuse more than ``MAX_ROWS`` decoded rows (batch x num_beams) before allocating any."""
    for name, value in (("batch", batch), ("num_beams", num_beams)):
        require(isinstance(value, int) and not isinstance(value, bool) and value > 0,
                f"{name} must be a positive integer, got {value!r}")
    require(batch * num_beams <= MAX_ROWS,
            f"batch x num_beams = {batch} x {num_beams} = {batch * num_beams:,} rows, over the "
            f"{MAX_ROWS:,} that functional generation decodes on the CPU")


@dataclass(frozen=True)
class GenerateReport:
    token_ids: list  # whole sequences, prompt included
    text: list | None
    simulated_latency_s: float
    simulated_tokens_per_s: float
    stream_bound_tokens_per_s: float
    forward_calls: int
    systems: int
    rows: int
    kv_cache_bytes: float
    functional_events: int
    timing: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def generate(cfg: DecoderConfig, weights: dict[str, Tensor], prompt_ids: Tensor, *,
             max_new_tokens: int | None = None, max_length: int | None = None, num_beams: int = 1,
             no_repeat_ngram_size: int = 0, early_stopping: bool | str = False,
             systems: int = 1, cluster: hardware.ClusterSpec | None = None,
             tokenizer=None) -> GenerateReport:
    """Greedy or beam-search generation from ``prompt_ids`` (B, T) through the engine.

    Rows (prompts x beams) are split over ``systems`` CS-2s by whole prompts, so a beam search
    reorders KV caches within each CS-2 only; B must be divisible by ``systems``."""
    require(isinstance(prompt_ids, Tensor) and prompt_ids.dim() == 2 and prompt_ids.numel() > 0,
            "prompt ids must be a non-empty (batch, tokens) integer tensor")
    batch, prompt_len = prompt_ids.shape
    check_rows(batch, num_beams)
    require(batch % systems == 0, f"batch {batch} is not divisible by systems {systems}")
    lo, hi = int(prompt_ids.min()), int(prompt_ids.max())
    require(lo >= 0 and hi < cfg.vocab_size, f"prompt ids span [{lo}, {hi}], outside [0, {cfg.vocab_size})")
    eos = cfg.eos_token_id
    first_eos = eos[0] if isinstance(eos, tuple) else eos  # transformers pads with the first eos
    try:
        gen = GenerationConfig(max_new_tokens=max_new_tokens, max_length=max_length, num_beams=num_beams,
                               no_repeat_ngram_size=no_repeat_ngram_size, early_stopping=early_stopping,
                               eos_token_id=cfg.eos_token_id, pad_token_id=first_eos)
        total = gen.total_length(prompt_len)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    require(total <= cfg.max_positions,
            f"prompt + new tokens ({total}) exceed the model's {cfg.max_positions} positions")
    cluster = (cluster or generations.preset("cs2", systems)).with_systems(systems)
    model = spec_from_config(cfg)
    # the whole generation's KV cache must fit the wafer: checked here, before any row is decoded
    # (each forward call's build_schedule checks its own)
    check_kv_cache(model, batch * num_beams // systems, total, cluster)
    payload = InferencePayload(cfg, weights, systems)
    state = {"context": 0, "events": 0}

    def forward(input_ids: Tensor, past):
        rows, new = input_ids.shape
        state["context"] += new
        call = ForwardCall(rows, new, state["context"])
        per = rows // systems
        payload.ids = [input_ids[i * per:(i + 1) * per] for i in range(systems)]
        payload.pos_offset = state["context"] - new
        schedule = build_schedule(model, [call], cluster, chunk_bytes=float("inf"))
        sim = Simulation(None, cluster, SimOptions(symmetry=False), payload=payload, schedule=schedule)
        sim.run()
        state["events"] += sim.events
        logits = torch.cat([payload.logits.pop(i) for i in range(systems)])  # (rows, new, V)
        return logits, payload

    def reorder(past, beam_idx: Tensor):
        per = beam_idx.numel() // systems
        for i in range(systems):
            local = beam_idx[i * per:(i + 1) * per] - i * per
            if local.numel() and (int(local.min()) < 0 or int(local.max()) >= per):  # pragma: no cover
                raise RuntimeError("a beam moved between CS-2s: prompts must not straddle systems")
            payload.caches[i] = [None if kv is None else (kv[0].index_select(0, local), kv[1].index_select(0, local))
                                 for kv in payload.caches[i]]
        return past

    result = decode(prompt_ids.long(), forward, reorder, gen)
    calls, context = [], 0
    for rows, new in result.forward_calls:
        context += new
        calls.append(ForwardCall(rows, new, context))
    timing = simulate_inference(model, calls, cluster)
    sequences = result.sequences.tolist()
    text = [tokenizer.decode(s) for s in sequences] if tokenizer is not None else None
    generated = batch * (result.sequences.size(1) - prompt_len)
    return GenerateReport(
        token_ids=sequences, text=text, simulated_latency_s=timing.latency_s,
        simulated_tokens_per_s=generated / timing.latency_s,
        stream_bound_tokens_per_s=timing.stream_bound_tokens_per_s, forward_calls=len(calls),
        systems=systems, rows=calls[0].rows, kv_cache_bytes=timing.kv_cache_bytes,
        functional_events=state["events"], timing=timing.to_dict() | {"call_times_s": None},
    )


def load_tokenizer(folder: str | Path):
    """The checkpoint's own tokenizer files, if any (never fetched from a hub)."""
    folder = Path(folder)
    names = ("tokenizer.json", "vocab.json", "tokenizer_config.json")
    if not any((folder / n).exists() for n in names):
        return None
    try:
        from transformers import AutoTokenizer
    except ImportError:  # pragma: no cover
        return None
    try:
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError):
        return None
