"""A refused name suggests the closest known ones (``did you mean llama-3-8b?``), on one line, with
exit 2 at the CLI: the zoo, the cluster presets, the GPUs, the model families, and any argparse
choice. The expected names are what a reader would guess; the 41 zoo names are never all listed."""

import pytest

from models import registry, suggest, zoo
from wsim.cluster import generations
from wsim.errors import ConfigError
from wsim.gpu.specs import gpu_spec
from tests.reliability.test_input_validation import run_cli


@pytest.mark.parametrize("typed,meant", [
    ("llama3-8b", ["llama-3-8b"]), ("llama2-7b", ["llama-2-7b", "llama-2-70b"]), ("gptj-6b", ["gpt-j-6b"]),
    ("neox-20b", ["gpt-neox-20b"]), ("opt-175", ["opt-175b"]), ("pythia1b", ["pythia-1b", "pythia-12b"]),
    ("megatron1t", ["megatron-1t"]),
])
def test_a_zoo_slip_names_the_model_meant(typed, meant):
    with pytest.raises(ValueError) as exc:
        zoo.get(typed)
    msg = str(exc.value)
    assert msg == f"unknown model {typed!r}; did you mean {' or '.join(meant)}?", msg


def test_a_name_close_to_nothing_says_where_the_names_are_not_all_listed():
    with pytest.raises(ValueError) as exc:
        zoo.get("bert-base")
    msg = str(exc.value)
    assert f"none of the {len(zoo.names())} known names is close" in msg and "models/zoo.py" in msg
    assert "cerebras-gpt-13b" not in msg


@pytest.mark.parametrize("call,typed,meant", [
    (lambda n: generations.preset(n, 2), "andromda", "andromeda"),
    (lambda n: generations.preset(n, 2), "cs2_192", "cs2-192"),
    (lambda n: generations.cluster(n), "cs-3", "cs3"),
    (gpu_spec, "h100-80g", "h100-80gb"),
    (gpu_spec, "h200-141", "h200-141gb"),
    (registry.family, "gpt-neox", "gpt_neox"),
    (lambda n: registry.config_from_hf_dict({"model_type": n}), "llama2", "llama"),
])
def test_presets_gpus_and_families_suggest_the_closest(call, typed, meant):
    with pytest.raises(ValueError) as exc:  # ConfigError is a ValueError
        call(typed)
    assert f"did you mean {meant}?" in str(exc.value), str(exc.value)


def test_a_short_list_is_given_whole_when_nothing_is_close():
    assert suggest.hint("bert", registry.FAMILIES, listing="supported") == (
        "supported: " + ", ".join(sorted(registry.FAMILIES)))
    assert len(registry.FAMILIES) <= suggest.LIST_ALL_UP_TO
    with pytest.raises(ConfigError, match="none of the .* known names is close .listed in wsim gpu --help"):
        gpu_spec("mi300x")  # 14 GPU names and their aliases: too many to list on one line


@pytest.mark.parametrize("argv,line", [
    (["simulate", "--model", "llama3-8b"], "wsim: error: unknown model 'llama3-8b'; did you mean llama-3-8b?"),
    (["simulate", "--model", "cerebras-gpt-111m", "--cluster", "andromda"],
     "wsim: error: unknown cluster preset 'andromda'; did you mean andromeda? (or give a cluster .json file)"),
    (["gpu", "--model", "gpt3-125m", "--gpus", "8", "--batch", "8", "--gpu", "h100-80g"],
     "wsim gpu: argument --gpu: invalid choice: 'h100-80g'; did you mean h100-80gb?"),
    (["sweep", "--kind", "analytic", "--models", "llama3-8b", "--systems", "1"],
     "wsim: error: --models: unknown model(s) ['llama3-8b']; llama3-8b: did you mean llama-3-8b?"),
    (["compare", "--model", "cerebras-gpt-13b", "--gpu", "h100-80g"],
     "wsim: error: --gpu 'h100-80g': unknown GPU type(s) ['h100-80g']; h100-80g: did you mean h100-80gb?"),
], ids=["zoo", "preset", "argparse-choice", "sweep-models", "compare-gpu"])
def test_the_cli_suggests_on_one_line_with_exit_2(argv, line):
    code, out, err = run_cli(argv)
    assert (code, out, err) == (2, "", line + "\n")


def test_a_gpu_plan_option_suggests_the_closest_choice():
    from models import zoo as z
    from wsim.gpu import estimate

    with pytest.raises(ConfigError) as exc:
        estimate(z.get("gpt3-125m"), batch=8, gpus=8, stack="megatron-cor")
    msg = str(exc.value)
    assert msg.startswith("stack 'megatron-cor' is not one of") and msg.endswith("; did you mean megatron-core?"), msg
