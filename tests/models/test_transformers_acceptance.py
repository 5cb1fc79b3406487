"""What models/ refuses, transformers refuses too (issue 17 item 3): each config below is refused by
our family config, and transformers' own class either refuses it or fails on its first forward
pass. (What it runs, we run with its numbers: tests/models/test_families.py VARIANTS.)"""

import pytest
import torch
import transformers

from models import registry

BASE = {
    "llama": {"model_type": "llama", "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 4,
              "intermediate_size": 48, "vocab_size": 101, "bos_token_id": 0, "eos_token_id": 1},
    "gptj": {"model_type": "gptj", "n_embd": 32, "n_layer": 1, "n_head": 4, "vocab_size": 101,
             "n_positions": 64, "bos_token_id": 0, "eos_token_id": 1},
    "gpt_neox": {"model_type": "gpt_neox", "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 4,
                 "intermediate_size": 64, "vocab_size": 101, "bos_token_id": 0, "eos_token_id": 1},
}
HF = {"llama": ("LlamaConfig", "LlamaForCausalLM"), "gptj": ("GPTJConfig", "GPTJForCausalLM"),
      "gpt_neox": ("GPTNeoXConfig", "GPTNeoXForCausalLM")}

REFUSED = [  # (family, config.json fields over BASE, our message)
    ("gptj", dict(rotary_dim=5), "rotary_dim"),  # odd: rotate_every_two pairs unequal halves
    ("gptj", dict(rotary_dim=7), "rotary_dim"),
    ("gptj", dict(rotary_dim=10), "rotary_dim"),  # wider than the head (8)
    ("gptj", dict(rotary_dim=0), "rotary_dim"),  # 0 reads as n_embd in its table
    ("gpt_neox", dict(rotary_pct=1.2), "rotary_pct"),  # a 10-dim table on 8-dim heads
    ("gpt_neox", dict(rotary_pct=-0.2), "rotary_pct"),  # int(-1.6) = -1: a negative arange
    ("gpt_neox", dict(hidden_size=28, rotary_pct=1.0), "rotary_pct"),  # head 7: an 8-dim table
    ("llama", dict(head_dim=5), "head_dim 5 must be even"),
    ("llama", dict(hidden_size=30), "must be divisible by num_attention_heads"),
]


def transformers_runs(family: str, d: dict) -> bool:
    cfg_cls, model_cls = (getattr(transformers, n) for n in HF[family])
    fields = {k: v for k, v in d.items() if k != "model_type"}
    try:
        model = model_cls(cfg_cls(**fields, attn_implementation="eager"))
        model(torch.tensor([[1, 2, 3, 4]]))
    except Exception:  # noqa: BLE001 - any refusal or failure of transformers counts
        return False
    return True


@pytest.mark.parametrize("family,kw,needle", REFUSED)
def test_refused_only_where_transformers_fails_too(family, kw, needle):
    d = {**BASE[family], **kw}
    with pytest.raises(ValueError, match=needle):
        registry.config_from_hf_dict(d)
    assert not transformers_runs(family, d)


@pytest.mark.parametrize("family,kw", [
    ("gpt_neox", dict(rotary_pct=0.375)), ("gpt_neox", dict(rotary_pct=0.1)), ("gpt_neox", dict(rotary_pct=1.05)),
    ("gpt_neox", dict(rope_parameters={"rope_type": "default", "rope_theta": 500.0, "partial_rotary_factor": 0.6})),
    ("gptj", dict(rotary_dim=8)), ("llama", dict(head_dim=16)), ("llama", dict(head_dim=6, hidden_act="relu")),
    ("llama", dict(rope_parameters={"rope_type": "default", "rope_theta": 500.0, "partial_rotary_factor": 0.5})),
])
def test_accepted_where_transformers_runs(family, kw):
    """The control: these run in transformers and are accepted here (with its numbers: the
    logits tests of test_families.py cover the odd rotary widths and the given head_dim)."""
    d = {**BASE[family], **kw}
    assert transformers_runs(family, d)
    cfg = registry.config_from_hf_dict(d)
    got = transformers.AutoConfig.for_model(**cfg.to_hf_dict())  # our config.json reads back
    assert got.model_type == family


def test_neox_partial_fraction_reads_back_as_transformers_reads_it():
    """rotary_pct 0.375 of 8-dim heads: int(3.0) = 3, a table of 4 dims (2 frequencies over 3)."""
    cfg = registry.config_from_hf_dict({**BASE["gpt_neox"], "rotary_pct": 0.375})
    assert (cfg.rotary_ndims, cfg.rotated_dims) == (3, 4)
    assert cfg.spec("x").rotary_dims == 4  # the cost model counts the rotated dims


@pytest.mark.parametrize("family,kind", [("llama", "dynamic"), ("llama", "yarn"), ("llama", "longrope"),
                                         ("gpt_neox", "linear"), ("gpt_neox", "llama3")])
def test_other_scaled_rotary_is_refused_as_not_modelled(family, kind):
    """Llama (and the MoE families) model the linear and llama3 scalings (logits tests in
    test_families.py); the dynamic ones and YaRN's attention factor are not, nor any for GPT-NeoX."""
    d = {**BASE[family], "rope_scaling": {"rope_type": kind, "factor": 2.0, "low_freq_factor": 1.0,
                                          "high_freq_factor": 4.0, "original_max_position_embeddings": 16}}
    with pytest.raises(ValueError, match=f"transformers' {kind} rotary scaling is not modelled"):
        registry.config_from_hf_dict(d)


def test_llama3_scaling_reads_from_either_config_format():
    """transformers 4.x's rope_scaling and 5.x's rope_parameters give the same config."""
    fields = {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 16}
    old = registry.config_from_hf_dict({**BASE["llama"], "rope_theta": 500.0,
                                        "rope_scaling": {"rope_type": "llama3", **fields}})
    new = registry.config_from_hf_dict({**BASE["llama"], "rope_parameters": {"rope_type": "llama3",
                                                                          "rope_theta": 500.0, **fields}})
    assert old == new and old.rope_scaling == ("llama3", 8.0, 1.0, 4.0, 16) and old.rope_theta == 500.0
