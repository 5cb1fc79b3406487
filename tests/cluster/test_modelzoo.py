"""Cerebras Model Zoo configs in (wsim/cluster/modelzoo.py): the files Cerebras ships
(tests/data/modelzoo/, verbatim, release and path in its README) against published parameter
counts, the two layouts against each other, the defaults, and the refusals."""

import copy
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from models import zoo
from wsim.cluster import modelzoo
from wsim.commands.cli import main
from wsim.errors import ConfigError
from wsim.studies.calibration.measured import GPT2_SMALL_2048

DATA = Path(__file__).resolve().parents[1] / "data" / "modelzoo"
RELEASES = ("Release_2.3.0", "Release_2.10.0")

# Published counts. Exact: Hugging Face config.json / safetensors totals of the models (docs/sources.md
# for Llama 2 and Llama 3); Llama 3.2 1B and 3B: meta-llama/Llama-3.2-{1B,3B} (1,235,814,400 and
# 3,212,749,824, tied embeddings); Llama 3.1 405B: the shape of Dubey et al. 2024 (arXiv 2407.21783)
# Table 3 (126 x 16384, 128 heads, 8 KV heads, FFN 53,248, vocabulary 128,256) = 405,853,388,800.
LLAMA2_7B, LLAMA2_13B, LLAMA2_70B = 6_738_415_616, 13_015_864_320, 68_976_648_192
LLAMA3_8B, LLAMA3_70B = 8_030_261_248, 70_553_706_496
EXACT = {
    "params_llama_7b": LLAMA2_7B,  # LLaMA-1 7B: the same shape and vocabulary as Llama 2 7B
    "params_llama2_7b": LLAMA2_7B, "params_llama2_13b": LLAMA2_13B, "params_llama2_70b": LLAMA2_70B,
    "params_llama3_8b": LLAMA3_8B, "params_llama3_8b_v2": LLAMA3_8B, "params_llama3_70b": LLAMA3_70B,
    "params_llama3p1_8b_msl_8k": LLAMA3_8B, "params_llama3p1_8b_msl_128k": LLAMA3_8B,
    "params_llama3p1_8b_msl_32k_swa_8k_sink_512": LLAMA3_8B,
    "params_llama3p1_70b_msl_8k": LLAMA3_70B, "params_llama3p1_70b_msl_128k": LLAMA3_70B,
    "params_llama3p3_70b_msl_128k": LLAMA3_70B,
    "params_llama3p2_1b_msl_8k": 1_235_814_400, "params_llama3p2_3b_msl_8k": 3_212_749_824,
    # Code Llama 7B/13B/70B (Roziere et al. 2023, arXiv 2308.12950; config.json vocab_size 32016): the
    # Llama 2 model plus 16 vocabulary rows in the embedding and the head
    "params_code_llama_7b": LLAMA2_7B + 2 * 16 * 4096, "params_code_llama_13b": LLAMA2_13B + 2 * 16 * 5120,
    "params_code_llama_70b": LLAMA2_70B + 2 * 16 * 8192,
    # WizardLM 13B V1.2: Llama 2 13B fine-tuned (the config keeps vocabulary 32000)
    "params_wizardlm_13b": LLAMA2_13B,
}
# Published by name only (within 2% of it, as tests/models/test_spec.py): Cerebras-GPT (Dey et al.
# 2023, Table 1), LLaMA 33B ("32.5B", Touvron et al. 2023a, arXiv 2302.13971, Table 2), Code Llama 34B
NOMINAL = {"111m": 111e6, "256m": 256e6, "590m": 590e6, "1p3b": 1.3e9, "2p7b": 2.7e9, "6p7b": 6.7e9,
           "13b_bs720": 13e9, "13b_bs1080": 13e9, "params_llama_33b": 32.5e9, "params_code_llama_34b": 34e9}
# Where a shipped config is not the published model, the difference named and checked:
# Release_2.10.0 params_llama3p1_405b_msl_128k.yaml sets num_kv_groups 16 (Meta's model has 8)
DEVIATIONS = {"params_llama3p1_405b_msl_128k": ({"kv_heads": 8}, 405_853_388_800)}


def shipped(release: str) -> list[Path]:
    return sorted((DATA / release / "gpt3" / "configs" / "Cerebras_GPT").glob("*.yaml")) + \
        sorted((DATA / release / "llama" / "configs").glob("*.yaml"))


def test_every_cerebras_gpt_and_llama_config_is_here():
    """The copies are complete: `git ls-tree -r <tag>` of the two folders lists 26 YAML files at
    Release_2.3.0 (13 Cerebras-GPT, 13 Llama) and 28 at Release_2.10.0 (13 and 15)."""
    assert [len(shipped(r)) for r in RELEASES] == [13 + 13, 13 + 15]


@pytest.mark.parametrize("path", [p for r in RELEASES for p in shipped(r)], ids=lambda p: f"{p.parts[-5]}/{p.name}")
def test_parameter_count_is_the_published_one(path):
    run = modelzoo.load(path)
    count = run.model.params
    key = path.stem.removesuffix("_mup")
    if key in EXACT:
        assert count == EXACT[key]
    elif key in NOMINAL:
        assert count == pytest.approx(NOMINAL[key], rel=0.02)
    else:
        changes, published = DEVIATIONS[key]
        assert count != published
        assert dataclasses.replace(run.model, **changes).params == published


@pytest.mark.parametrize("tag", ["111m", "256m", "590m", "1p3b", "2p7b", "6p7b", "13b_bs1080"])
def test_cerebras_gpt_configs_are_the_zoo_models_in_both_layouts(tag):
    """The params layout (2.3.0) and the trainer layout (2.10.0) read to the same model, and it is the
    zoo's Cerebras-GPT row (2.7B with its 32 heads)."""
    a, b = (modelzoo.load(DATA / r / "gpt3" / "configs" / "Cerebras_GPT" / f"{tag}.yaml") for r in RELEASES)
    assert (a.layout, b.layout) == ("params", "trainer")
    fields = ("layers", "hidden", "heads", "ffn", "vocab", "positions", "tied_embeddings", "dropout",
              "family", "activation", "attention_bias", "mlp_bias", "kv_heads")
    name = "cerebras-gpt-" + tag.replace("p", ".").removesuffix("_bs1080")
    for run in (a, b):
        assert [getattr(run.model, f) for f in fields] == [getattr(zoo.get(name), f) for f in fields]
        assert run.seq == 2048 and run.bytes_per_element == 2 and run.precision == "bfloat16"
    assert a.batch_seqs == b.batch_seqs == zoo.CEREBRAS_GPT_TRAINING[name].batch_seqs or tag == "13b_bs1080"


def test_llama_and_gptj_shapes():
    """Llama 3 8B: GQA from attention_module multiquery_attention + num_kv_groups; rotary on the whole
    head; SwiGLU; untied; cbfloat16. GPT-J 6B: one LayerNorm, parallel residual, rotary 64 of 256,
    the modelzoo's vocabulary 50257 (the HF model pads to 50400) and its "gelu" (HF: "gelu_new", the
    tanh form; the same cost)."""
    m = modelzoo.load(DATA / "Release_2.3.0" / "llama" / "configs" / "params_llama3_8b.yaml")
    assert (m.model.kv_heads, m.model.rotary_dims, m.model.gated_mlp, m.model.norm, m.model.family) == \
        (8, 128, True, "rmsnorm", "llama")
    assert (m.batch_seqs, m.seq, m.micro_batch_size, m.micro_batches(1), m.precision) == \
        (80, 8192, 20, 4, "cbfloat16")
    j = modelzoo.load(DATA / "Release_2.10.0" / "gptj" / "configs" / "params_gptj_6B.yaml").model
    ref = zoo.get("gpt-j-6b")
    assert dataclasses.replace(j, vocab=ref.vocab, name=ref.name, source=ref.source, activation=ref.activation) == ref
    neox = modelzoo.load(DATA / "Release_2.3.0" / "gptj" / "configs" / "params_gpt_neox_20B.yaml").model
    assert (neox.family, neox.block_norms, neox.rotary_dims, neox.vocab) == ("gpt_neox", 2, 24, 50277)


def test_sparsity_and_defaults():
    s = modelzoo.load(DATA / "Release_2.10.0" / "gpt3" / "configs" / "sparsity" / "pretraining" /
                      "params_gpt3_125m_static75.yaml")
    assert s.block_density == pytest.approx(0.25)
    assert s.provenance["density"] == "1 - trainer.init.sparsity.sparsity (block weights)"
    # trainer layout: only the required keys; every other value is the Release_2.10.0 default
    run = modelzoo.parse({"trainer": {"init": {"model": {"name": "gpt2"}},
                                      "fit": {"train_dataloader": {"batch_size": 8}}}})
    m = run.model
    assert (m.layers, m.hidden, m.heads, m.ffn, m.vocab, m.positions, m.tied_embeddings, m.dropout) == \
        (12, 768, 12, 3072, 50257, 1024, True, True)
    assert (run.seq, run.systems, run.precision, run.provenance["model.hidden"]) == (1024, None, "float32", "default (768)")
    gptj = modelzoo.parse({"trainer": {"init": {"model": {"name": "gptj", "use_untied_layer_norm": True}},
                                       "fit": {"train_dataloader": {"batch_size": 8}}}}).model
    assert (gptj.positional, gptj.rotary_dims, gptj.mlp_bias, gptj.family) == ("rotary", 16, False, "gpt_neox")


def _legacy(**model):
    return {"model": {"name": "gpt3", "vocab_size": 50257} | model, "train_input": {"batch_size": 4}}


@pytest.mark.parametrize("data, key", [
    ({"trainer": {"init": {"model": {"name": "mixtral"}}, "fit": {"train_dataloader": {"batch_size": 1}}}},
     "trainer.init.model.name"),
    ({"model": {"name": "gpt3"}, "train_input": {"batch_size": 4}}, "model.vocab_size"),
    ({"model": {"name": "gpt3", "vocab_size": 100}, "train_input": {}}, "train_input.batch_size"),
    (_legacy(hidden_size="big"), "model.hidden_size"),
    (_legacy(share_embedding_weights="yes"), "model.share_embedding_weights"),
    (_legacy(position_embedding_type="alibi"), "model.position_embedding_type"),
    (_legacy(attention_module="multiquery_attention", num_heads=12,
             extra_attention_params={"num_kv_groups": 5}), "num_kv_groups"),
    ({"trainer": {"init": {"model": {"vocab_size": 10}}, "fit": {"train_dataloader": {"batch_size": 1}}}},
     "trainer.init.model.name"),
    ([1, 2], "YAML mapping"),
])
def test_refusals_name_the_key(data, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        modelzoo.parse(data)


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_flags_override_and_provenance(capsys):
    path = DATA / "Release_2.0.3" / "gpt2" / "configs" / "params_gpt2_small.yaml"
    code, out, err = run_cli(capsys, "simulate", "--config", path, "--batch", 56, "--json")
    assert code == 0, err
    r = json.loads(out)
    # the config of the ALCF GPT-2 small run: wsim's hand-written spec of it (measured.py) agrees
    assert (r["batch_seqs"], r["seq"], r["systems"], r["params"]) == (56, 2048, 1, GPT2_SMALL_2048.params)
    assert r["provenance"]["batch"] == "flag --batch"
    assert r["provenance"]["model.layers"] == "model.num_hidden_layers"
    assert r["config"]["layout"] == "params" and r["config"]["precision"] == "bfloat16"
    assert r["provenance"]["precision"] == "default (bfloat16)"
    assert r["provenance"]["model.dropout"] == "model.dropout_rate / attention_dropout_rate"


@pytest.mark.parametrize("command", ["faults", "compare"])
def test_cli_config_on_other_commands(capsys, command):
    path = DATA / "Release_2.3.0" / "gpt3" / "configs" / "Cerebras_GPT" / "111m.yaml"
    extra = ["--method", "analytic", "--gpu", "a100-80gb"] if command == "compare" else []
    code, out, err = run_cli(capsys, command, "--config", path, *extra, "--json")
    assert code == 0, err
    r = json.loads(out)
    assert r["provenance"]["batch"] == "train_input.batch_size"
    if command == "compare":
        assert r["provenance"]["max_steps"] == "runconfig.max_steps"
        assert r["cs2"]["phases"][0]["steps"] == zoo.CEREBRAS_GPT_TRAINING["cerebras-gpt-111m"].steps


def test_cli_train_with_a_config(capsys, tmp_path):
    cfg = {"trainer": {"init": {"model": {"name": "llama", "vocab_size": 101, "hidden_size": 32,
                                          "num_hidden_layers": 2, "num_heads": 4, "filter_size": 64,
                                          "max_position_embeddings": 64, "position_embedding_type": "rotary",
                                          "rotary_dim": 8, "norm_type": "rmsnorm", "nonlinearity": "swiglu",
                                          "attention_module": "multiquery_attention",
                                          "extra_attention_params": {"num_kv_groups": 2},
                                          "use_projection_bias_in_attention": False,
                                          "use_ffn_bias_in_attention": False, "use_ffn_bias": False,
                                          "share_embedding_weights": False, "dropout_rate": 0.0},
                                "backend": {"cluster_config": {"num_csx": 2}}},
                       "fit": {"train_dataloader": {"batch_size": 4}}}}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(cfg))
    data = tmp_path / "tokens.npy"
    np.save(data, np.random.default_rng(0).integers(0, 101, size=(8, 17)))
    code, out, err = run_cli(capsys, "train", "--config", path, "--data", data, "--steps", 1, "--json")
    assert code == 0, err
    r = json.loads(out)
    assert r["systems"] == 2 and r["provenance"]["systems"] == "trainer.init.backend.cluster_config.num_csx"


@pytest.mark.parametrize("text, key", [
    ("trainer:\n  init:\n    model:\n      name: falcon\n  fit:\n    train_dataloader:\n      batch_size: 4\n",
     "unknown model 'falcon'"),
    ("model:\n  name: gpt3\n  vocab_size: 50257\ntrain_input:\n  shuffle: true\n", "train_input.batch_size"),
    ("model:\n  name: gpt3\n  vocab_size: 50257\n  num_heads: twelve\ntrain_input:\n  batch_size: 4\n",
     "model.num_heads"),
    ("model: [unclosed\n", "not valid YAML"),
])
def test_cli_refusals_are_one_line_exit_2(capsys, tmp_path, text, key):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    code, out, err = run_cli(capsys, "simulate", "--config", path, "--json")
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and key in err


@pytest.mark.parametrize("label, path", [
    ("GPT-2 small b112 (ALCF)", "Release_2.0.3/gpt2/configs/params_gpt2_small.yaml"),
    ("GPT-J 6B b120 on 2 CS-2 (ALCF)", "Release_2.0.3/gptj/configs/params_gptj_6B.yaml"),
    ("GPT-J 6B b120 on 1 CS-3 (ALCF)", "Release_2.10.0/gptj/configs/params_gptj_6B.yaml"),
    ("LLaMA-7B b99 (ALCF)", "Release_2.0.3/llama/configs/params_llama_7b.yaml"),
    ("Llama-2-7B b1024 on 1 CS-3 (ALCF)", "Release_2.10.0/llama/configs/params_llama2_7b.yaml"),
])
def test_measured_rows_are_their_modelzoo_configs(label, path):
    """Each ALCF run's hand-written model (wsim/studies/calibration/measured.py) is the model its
    modelzoo config reads to, except GPT-J's vocabulary and GELU name (the HF model: 50400, gelu_new;
    the same cost a token within 0.1%) and, for rotary models, the position limit."""
    from wsim.studies.calibration import measured

    row = next(r for r in measured.rows() if r.label == label)
    run = modelzoo.load(DATA / path)
    m = dataclasses.replace(run.model, name=row.model.name, source=row.model.source)
    if m.family == "gptj":
        m = dataclasses.replace(m, vocab=row.model.vocab, activation=row.model.activation)
    if row.model.positional == "rotary":  # rotary: positions are the context limit, not a table
        m = dataclasses.replace(m, positions=row.model.positions)
    assert m == row.model
    assert run.batch_seqs == row.batch  # every run kept its config's global batch


KEYS = ["hidden_size", "num_hidden_layers", "num_heads", "filter_size", "vocab_size", "max_position_embeddings",
        "position_embedding_type", "rotary_dim", "nonlinearity", "norm_type", "attention_module",
        "extra_attention_params", "share_embedding_weights", "use_ffn_bias", "dropout_rate", "name", "moe"]
VALUES = [None, 0, -3, 7, 4096, 1.5, True, "swiglu", "rotary", "x", [], {}, {"num_kv_groups": 3},
          {"num_kv_groups": "8"}, {"num_experts": 8}]


def test_any_mutated_config_is_read_or_refused_by_name():
    """Every key of a shipped trainer-layout Llama config set to every kind of value: the reader returns
    a run or raises ConfigError naming a model key; never another exception (the CLI's exit 2)."""
    base = yaml.safe_load((DATA / "Release_2.10.0" / "llama" / "configs" / "params_llama3p1_8b_msl_8k.yaml").read_text())
    outcomes = {"read": 0, "refused": 0}
    for key in KEYS:
        for value in VALUES:
            data = copy.deepcopy(base)
            data["trainer"]["init"]["model"][key] = value
            try:
                modelzoo.parse(data)
                outcomes["read"] += 1
            except ConfigError as exc:
                assert "trainer.init.model" in str(exc) or "model zoo config: model " in str(exc), (key, value, exc)
                outcomes["refused"] += 1
    assert outcomes["read"] > 20 and outcomes["refused"] > 100
