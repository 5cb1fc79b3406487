"""Registry of named models, and models read from a Hugging Face ``config.json``.

Cerebras-GPT rows are docs/sources.md's table (Dey et al. 2023, arXiv 2304.03208, Table 1;
Cerebras modelzoo configs; 2.7B's heads as its config and config.json give them, not Table 1): sequence 2048, vocabulary 50,257, learned positions, tied embeddings,
no dropout. Their published training setup rides along in ``CEREBRAS_GPT_TRAINING``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from models.spec import ModelSpec
from models.suggest import hint

_CGPT_SRC = "Cerebras-GPT, Dey et al. 2023 (arXiv 2304.03208) Table 1"
_GPT3_SRC = "GPT-3, Brown et al. 2020 (arXiv 2005.14165) Table 2.1"
_MEG_SRC = "Megatron-LM SC21 (arXiv 2104.04473) Table 1, V = 51,200"


@dataclass(frozen=True)
class PublishedTraining:
    """How a Cerebras-GPT model was trained (docs/sources.md; Dey et al. 2023 Table 1 / modelzoo)."""

    lr: float
    batch_seqs: int  # the batch used for most of training (13B: 720 then 1080, we keep 1080's end)
    tokens: float
    steps: int
    cs2_systems: int
    training_flops: float  # the paper's column
    pile_test_loss: float
    batch_seqs_start: int = 0  # 13B switched batch 720 -> 1080 (and 8 -> 12 CS-2)
    cs2_systems_start: int = 0


def _cgpt(tag: str, layers: int, hidden: int, heads: int, ffn: int) -> ModelSpec:
    return ModelSpec(
        name=f"cerebras-gpt-{tag}", layers=layers, hidden=hidden, heads=heads, ffn=ffn,
        vocab=50257, positions=2048, tied_embeddings=True, activation="gelu", dropout=False,
        source=_CGPT_SRC,
    )


CEREBRAS_GPT = {
    m.name: m
    for m in (
        _cgpt("111m", 10, 768, 12, 3072),
        _cgpt("256m", 14, 1088, 17, 4352),
        _cgpt("590m", 18, 1536, 12, 6144),
        _cgpt("1.3b", 24, 2048, 16, 8192),
        # 32 heads of 80, as trained: Cerebras modelzoo gpt3/configs/Cerebras_GPT/2p7b.yaml (num_heads
        # 32 in Releases 1.9.1 to 2.10.0) and Hugging Face cerebras/Cerebras-GPT-2.7B config.json
        # (n_head 32); the paper's Table 1 prints 20 x 128 (the model cards were corrected to 32 x 80)
        _cgpt("2.7b", 32, 2560, 32, 10240),
        _cgpt("6.7b", 32, 4096, 32, 16384),
        _cgpt("13b", 40, 5120, 40, 20480),
    )
}

CEREBRAS_GPT_TRAINING = {
    "cerebras-gpt-111m": PublishedTraining(6e-4, 120, 2.22e9, 9037, 1, 2.6e18, 2.608),
    "cerebras-gpt-256m": PublishedTraining(6e-4, 264, 5.12e9, 9468, 1, 1.3e19, 2.349),
    "cerebras-gpt-590m": PublishedTraining(2e-4, 264, 1.18e10, 21836, 1, 6.1e19, 2.181),
    "cerebras-gpt-1.3b": PublishedTraining(2e-4, 528, 2.63e10, 24334, 4, 2.8e20, 1.997),
    "cerebras-gpt-2.7b": PublishedTraining(2e-4, 528, 5.30e10, 49041, 4, 1.1e21, 1.834),
    "cerebras-gpt-6.7b": PublishedTraining(1.2e-4, 1040, 1.33e11, 62522, 8, 6.3e21, 1.704),
    "cerebras-gpt-13b": PublishedTraining(
        1.2e-4, 1080, 2.57e11, 174335, 12, 2.3e22, 1.572, batch_seqs_start=720, cs2_systems_start=8
    ),
}


def _gpt3(tag: str, layers: int, hidden: int, heads: int) -> ModelSpec:
    return ModelSpec(name=f"gpt3-{tag}", layers=layers, hidden=hidden, heads=heads, vocab=50257,
                     positions=2048, tied_embeddings=True, dropout=True, source=_GPT3_SRC)


# GPT-3 Table 2.1. Two rows are not self-consistent in the paper: XL lists 24 heads of 128 with
# d_model 2048 (we use 16 heads of 128), 13B lists d_model 5140 (we use 5120 = 40 x 128).
GPT3 = {
    m.name: m
    for m in (
        _gpt3("125m", 12, 768, 12),
        _gpt3("350m", 24, 1024, 16),
        _gpt3("760m", 24, 1536, 16),
        _gpt3("1.3b", 24, 2048, 16),
        _gpt3("2.7b", 32, 2560, 32),
        _gpt3("6.7b", 32, 4096, 32),
        _gpt3("13b", 40, 5120, 40),
        _gpt3("175b", 96, 12288, 96),
    )
}

OTHERS = {
    # Zhang et al. 2022 (arXiv 2205.01068) Table 1; HF config: vocab 50272, tied embeddings.
    "opt-175b": ModelSpec(name="opt-175b", layers=96, hidden=12288, heads=96, vocab=50272,
                          positions=2048, tied_embeddings=True, activation="relu", dropout=True,
                          source="OPT-175B, Zhang et al. 2022 Table 1"),
}

# ---- Llama: RMSNorm, SwiGLU, rotary on the whole head, no biases, untied head ------------------
_LLAMA2_SRC = ("Llama 2, Touvron et al. 2023 (arXiv 2307.09288) Table 1; Hugging Face config.json of "
               "meta-llama/Llama-2-{}-hf")
_LLAMA3_SRC = ("Meta Llama 3 model card (github.com/meta-llama/llama3 MODEL_CARD.md); Hugging Face "
               "config.json of meta-llama/Meta-Llama-3-{}")


def _llama(name: str, source: str, layers: int, hidden: int, heads: int, kv_heads: int, ffn: int,
           vocab: int, positions: int) -> ModelSpec:
    return ModelSpec(name=name, layers=layers, hidden=hidden, heads=heads, kv_heads=kv_heads, ffn=ffn,
                     vocab=vocab, positions=positions, tied_embeddings=False, activation="silu",
                     gated_mlp=True, norm="rmsnorm", positional="rotary", attention_bias=False,
                     mlp_bias=False, family="llama", source=source)


LLAMA = {
    m.name: m
    for m in (
        # 6,738,415,616 / 13,015,864,320 / 68,976,648,192 parameters; 70B uses 8 KV heads (GQA)
        _llama("llama-2-7b", _LLAMA2_SRC.format("7b"), 32, 4096, 32, 32, 11008, 32000, 4096),
        _llama("llama-2-13b", _LLAMA2_SRC.format("13b"), 40, 5120, 40, 40, 13824, 32000, 4096),
        _llama("llama-2-70b", _LLAMA2_SRC.format("70b"), 80, 8192, 64, 8, 28672, 32000, 4096),
        # 8,030,261,248 / 70,553,706,496 parameters; both use GQA with 8 KV heads, rope_theta 5e5
        _llama("llama-3-8b", _LLAMA3_SRC.format("8B"), 32, 4096, 32, 8, 14336, 128256, 8192),
        _llama("llama-3-70b", _LLAMA3_SRC.format("70B"), 80, 8192, 64, 8, 28672, 128256, 8192),
    )
}

# ---- GPT-J: one LayerNorm feeding attention and MLP in parallel, rotary on 64 of 256 head dims,
# no attention biases, an untied LM head with a bias (Wang & Komatsuzaki 2021, mesh-transformer-jax;
# Hugging Face config.json of EleutherAI/gpt-j-6b: vocab 50400, rotary_dim 64, n_positions 2048).
GPTJ = {
    "gpt-j-6b": ModelSpec(name="gpt-j-6b", layers=28, hidden=4096, heads=16, ffn=16384, vocab=50400,
                          positions=2048, tied_embeddings=False, activation="gelu_new",
                          positional="rotary", rotary_fraction=64 / 256, block_norms=1,
                          parallel_residual=True, attention_bias=False, head_bias=True,
                          family="gptj", source="GPT-J-6B, EleutherAI/gpt-j-6b model card and config.json"),
}

# ---- GPT-NeoX: two LayerNorms on the block input, parallel residual, rotary on 25% of each head,
# biases, untied head ("embed_out"). GPT-NeoX-20B: Black et al. 2022 (arXiv 2204.06745) sec. 2 and
# Table 1, config.json of EleutherAI/gpt-neox-20b (vocabulary 50277 padded to 50432, gelu_fast).
# Pythia: Biderman et al. 2023 (arXiv 2304.01373) Table 1 and the EleutherAI/pythia-* config.json
# files (vocabulary 50304, 50432 for 6.9B, 50688 for 12B; FFN 4 x d_model; gelu).


def _neox(name: str, source: str, layers: int, hidden: int, heads: int, vocab: int,
          activation: str = "gelu") -> ModelSpec:
    return ModelSpec(name=name, layers=layers, hidden=hidden, heads=heads, vocab=vocab, positions=2048,
                     tied_embeddings=False, activation=activation, positional="rotary",
                     rotary_fraction=0.25, parallel_residual=True, family="gpt_neox", source=source)


_PYTHIA_SRC = "Pythia, Biderman et al. 2023 (arXiv 2304.01373) Table 1; EleutherAI/pythia-{} config.json"
GPT_NEOX = {
    m.name: m
    for m in (
        _neox("gpt-neox-20b", "GPT-NeoX-20B, Black et al. 2022 Table 1; EleutherAI/gpt-neox-20b config.json",
              44, 6144, 64, 50432, activation="gelu_fast"),
        # the model card's non-embedding parameter counts: 18,915,328 ... 11,327,027,200 (tested)
        _neox("pythia-70m", _PYTHIA_SRC.format("70m"), 6, 512, 8, 50304),
        _neox("pythia-160m", _PYTHIA_SRC.format("160m"), 12, 768, 12, 50304),
        _neox("pythia-410m", _PYTHIA_SRC.format("410m"), 24, 1024, 16, 50304),
        _neox("pythia-1b", _PYTHIA_SRC.format("1b"), 16, 2048, 8, 50304),
        _neox("pythia-1.4b", _PYTHIA_SRC.format("1.4b"), 24, 2048, 16, 50304),
        _neox("pythia-2.8b", _PYTHIA_SRC.format("2.8b"), 32, 2560, 32, 50304),
        _neox("pythia-6.9b", _PYTHIA_SRC.format("6.9b"), 32, 4096, 32, 50432),
        _neox("pythia-12b", _PYTHIA_SRC.format("12b"), 36, 5120, 40, 50688),
    )
}


# ---- mixtures of experts (models/moe.py): every expert streamed, k of E computed per token.
# Mixtral: Jiang et al. 2024 (arXiv 2401.04088) sec. 2 and Table 1; the Hugging Face config.json of
# mistralai/Mixtral-8x7B-v0.1 (hidden 4096, intermediate 14336, 32 layers, 32 heads, 8 KV heads,
# vocab 32000, 8 experts top-2, max_position_embeddings 32768, rope_theta 1e6) and of
# mistralai/Mixtral-8x22B-v0.1 (6144, 16384, 56 layers, 48 heads, 8 KV, vocab 32000, 65536 positions).
# Published totals: 46.7B parameters, 12.9B active (Mistral AI, "Mixtral of experts", 2023-12-11);
# 141B, 39B active (Mistral AI, "Cheaper, Better, Faster, Stronger", 2024-04-17).
# Qwen3-30B-A3B: Qwen3 Technical Report (arXiv 2505.09388) Table 2 and the config.json of
# Qwen/Qwen3-30B-A3B (hidden 2048, 48 layers, 32 heads of 128 dims, 4 KV heads, 128 experts of 768,
# top-8 renormalised, vocab 151936, 40960 positions, untied); model card: 30.5B total, 3.3B activated,
# 29.9B non-embedding.
_MIXTRAL_SRC = ("Mixtral, Jiang et al. 2024 (arXiv 2401.04088) sec. 2; Hugging Face config.json of "
                "mistralai/Mixtral-{}-v0.1")


def _moe(name: str, source: str, family: str, layers: int, hidden: int, heads: int, kv_heads: int,
         experts: int, top_k: int, expert_ffn: int, vocab: int, positions: int, head_width: int = 0,
         qk_norm: bool = False) -> ModelSpec:
    return ModelSpec(name=name, layers=layers, hidden=hidden, heads=heads, kv_heads=kv_heads, ffn=expert_ffn,
                     vocab=vocab, positions=positions, tied_embeddings=False, activation="silu",
                     gated_mlp=True, norm="rmsnorm", positional="rotary", attention_bias=False,
                     mlp_bias=False, family=family, source=source, head_width=head_width, qk_norm=qk_norm,
                     experts=experts, experts_per_token=top_k, expert_ffn=expert_ffn)


MOE = {
    m.name: m
    for m in (
        _moe("mixtral-8x7b", _MIXTRAL_SRC.format("8x7B"), "mixtral", 32, 4096, 32, 8, 8, 2, 14336, 32000, 32768),
        _moe("mixtral-8x22b", _MIXTRAL_SRC.format("8x22B"), "mixtral", 56, 6144, 48, 8, 8, 2, 16384, 32000, 65536),
        _moe("qwen3-30b-a3b", "Qwen3 Technical Report (arXiv 2505.09388) Table 2; Hugging Face config.json "
             "of Qwen/Qwen3-30B-A3B", "qwen3_moe", 48, 2048, 32, 4, 128, 8, 768, 151936, 40960,
             head_width=128, qk_norm=True),
    )
}

# DeepSeek-V3 (timing only): DeepSeek-AI, "DeepSeek-V3 Technical Report" (arXiv 2412.19437) sec. 4.2
# and the config.json of deepseek-ai/DeepSeek-V3 (huggingface.co/deepseek-ai/DeepSeek-V3/blob/main/
# config.json): num_hidden_layers 61, hidden_size 7168, num_attention_heads 128, first_k_dense_replace 3
# (blocks 0-2 dense, intermediate_size 18432), n_routed_experts 256 of moe_intermediate_size 2048,
# num_experts_per_tok 8, n_shared_experts 1, vocab_size 129280, untied, max_position_embeddings 163840;
# multi-head latent attention exact from its q_lora_rank 1536, kv_lora_rank 512, qk_nope_head_dim 128,
# qk_rope_head_dim 64, v_head_dim 128, attention_bias false (187,107,328 weights a block with the q_a
# and kv_a RMSNorms; models.spec.ModelSpec.mla_params). Published: 671B total, 37B activated (the
# report's abstract; its 14B multi-token-prediction module is not part of these and not modelled).
# What remains approximate: the router's e_score_correction_bias (256 a sparse block) is not counted
# and a 1 x h shared-expert gate is (models.spec gives Qwen2-MoE's): +6,912 a sparse block, 0.4M in
# all. Family qwen2_moe: the shape with a shared expert, for timing; DeepSeek-V3 checkpoints are not
# read by the functional mode.
MOE["deepseek-v3"] = ModelSpec(
    name="deepseek-v3", layers=61, hidden=7168, heads=128, ffn=18432, vocab=129280,
    positions=163840, tied_embeddings=False, activation="silu", gated_mlp=True, norm="rmsnorm",
    positional="rotary", attention_bias=False, mlp_bias=False, family="qwen2_moe",
    source="DeepSeek-V3 Technical Report (arXiv 2412.19437); Hugging Face config.json of "
           "deepseek-ai/DeepSeek-V3 (multi-head latent attention exact)",
    experts=256, experts_per_token=8, expert_ffn=2048, shared_expert_ffn=2048, moe_layers=tuple(range(3, 61)),
    q_lora_rank=1536, kv_lora_rank=512, qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128)


def _meg(tag: str, heads: int, hidden: int, layers: int) -> ModelSpec:
    return ModelSpec(name=f"megatron-{tag}", layers=layers, hidden=hidden, heads=heads, vocab=51200,
                     positions=2048, tied_embeddings=True, dropout=True, source=_MEG_SRC)


MEGATRON = {
    m.name: m
    for m in (
        _meg("1.7b", 24, 2304, 24), _meg("3.6b", 32, 3072, 30), _meg("7.5b", 32, 4096, 36),
        _meg("18.4b", 48, 6144, 40), _meg("39.1b", 64, 8192, 48), _meg("76.1b", 80, 10240, 60),
        _meg("145.6b", 96, 12288, 80), _meg("310.1b", 128, 16384, 96),
        _meg("529.6b", 128, 20480, 105), _meg("1t", 160, 25600, 128),
    )
}

ZOO: dict[str, ModelSpec] = {**CEREBRAS_GPT, **GPT3, **OTHERS, **MEGATRON, **LLAMA, **GPTJ, **GPT_NEOX, **MOE}


def names() -> list[str]:
    return sorted(ZOO)


def get(name: str) -> ModelSpec:
    """A registered model by (case-insensitive) name."""
    key = name.lower()
    if key not in ZOO:
        raise ValueError(f"unknown model {name!r}; {hint(name, names(), 'models/zoo.py')}")
    return ZOO[key]


def from_hf_config(path: str | Path) -> ModelSpec:
    """A ``ModelSpec`` from a Hugging Face ``config.json`` (file or checkpoint folder) of any
    supported family, dispatching on its ``model_type``; named after the config itself
    (``_name_or_path`` or the architecture), never after its folder."""
    from models.registry import spec_from_hf_dict

    p = Path(path)
    if p.is_dir():
        p = p / "config.json"
    try:
        cfg = json.loads(p.read_text())
    except FileNotFoundError:
        raise ValueError(f"model config {str(p)!r} does not exist") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"model config {str(p)!r} is not readable JSON: {exc}") from None
    if not isinstance(cfg, dict):
        raise ValueError(f"model config {str(p)!r} is not a JSON object")
    try:
        return spec_from_hf_dict(cfg, source=f"Hugging Face config {p}")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"model config {str(p)!r}: {exc}") from None
