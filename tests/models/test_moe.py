"""The mixture-of-experts pieces (models/moe.py) against transformers 5's own MoE models: the
router's choices, the load-balancing loss, dense and sparse blocks, refusals; and the MoE ModelSpec
(all experts' parameters, the active ones per token, FLOPs) against its formula and transformers."""

import pytest
import torch
import torch.nn.functional as F
import transformers

from models import registry
from models.decoder import CausalLM
from models.moe import collect_router_logits, experts, route
from tests.tiny_models import MOE_FAMILIES, hf_model, perturbed, rel, tiny


def idx(rows=3, T=17, seed=7):
    return torch.randint(0, 101, (rows, T), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("family", MOE_FAMILIES)
def test_router_logits_and_aux_loss_match_transformers(family):
    """With output_router_logits the loss adds coef x transformers' load_balancing_loss_func (in
    float32, over the sparse blocks' tokens); loss and float64 gradients match its model."""
    cfg = tiny(family, output_router_logits=True, router_aux_loss_coef=0.3)
    w = perturbed(cfg, torch.float64)
    x = idx()
    ref_model = hf_model(cfg, w, torch.float64)
    out = ref_model(x[:, :-1], output_router_logits=True)
    ref_loss = F.cross_entropy(out.logits.reshape(-1, 101), x[:, 1:].reshape(-1)) + 0.3 * out.aux_loss
    model = CausalLM(cfg, w)
    with collect_router_logits() as logits:
        _, loss = model(x[:, :-1], x[:, 1:])
    sparse = [i for i in range(cfg.n_layers) if cfg.sparse_layer(i)]
    assert len(logits) == len(out.router_logits) == len(sparse) >= 1
    assert all(torch.equal(a, b) for a, b in zip(logits, out.router_logits))
    assert out.aux_loss.item() > 0.5  # E x sum f P is about 1 for a balanced router: not a zero term
    assert abs(loss.item() - ref_loss.item()) <= 1e-12 * abs(ref_loss.item())
    loss.backward()
    ref_loss.backward()
    theirs = dict(ref_model.named_parameters())
    for n, p in model.named_parameters():
        assert rel(p.grad, theirs[n].grad) < 1e-10, n
    router = [n for n in theirs if n.endswith("mlp.gate.weight")]
    cfg0 = tiny(family)  # without the aux loss the routers' gradients differ: the term is live
    model0 = CausalLM(cfg0, w)
    model0(x[:, :-1], x[:, 1:])[1].backward()
    assert max(rel(dict(model0.named_parameters())[n].grad, theirs[n].grad) for n in router) > 1e-6


def test_route_and_experts_by_hand():
    """Two tokens, three experts, top 2: the float32 softmax picks, renormalised, and each token's
    output is the weighted sum of its experts' SwiGLU outputs."""
    torch.manual_seed(0)
    x = torch.randn(2, 4, dtype=torch.float64)
    gate = torch.randn(3, 4, dtype=torch.float64)
    gate_up, down = torch.randn(3, 6, 4, dtype=torch.float64), torch.randn(3, 4, 3, dtype=torch.float64)
    logits, top_w, top_i = route(x, gate, 2, normalise=True)
    probs = torch.softmax(logits.float(), dim=-1)
    assert top_w.dtype == torch.float32 and torch.allclose(top_w.sum(-1), torch.ones(2))
    out = experts(x, gate_up, down, top_i, top_w.double(), "silu")
    for t in range(2):
        want = torch.zeros(4, dtype=torch.float64)
        chosen = probs[t].topk(2).indices.tolist()
        for e in chosen:
            g, u = (gate_up[e] @ x[t]).chunk(2)
            want += (probs[t, e] / probs[t, chosen].sum()).double() * (down[e] @ (F.silu(g) * u))
        assert torch.allclose(out[t], want, rtol=1e-6)


def test_qwen_dense_and_sparse_blocks_follow_decoder_sparse_step_and_mlp_only_layers():
    cfg = tiny("qwen3_moe", num_hidden_layers=6, decoder_sparse_step=2, mlp_only_layers=(3, 9))
    assert [cfg.sparse_layer(i) for i in range(6)] == [False, True, False, False, False, True]
    hf = hf_model(cfg)
    kinds = [type(layer.mlp).__name__ for layer in hf.model.layers]
    assert kinds == ["Qwen3MoeMLP", "Qwen3MoeSparseMoeBlock", "Qwen3MoeMLP", "Qwen3MoeMLP", "Qwen3MoeMLP",
                     "Qwen3MoeSparseMoeBlock"]
    assert cfg.spec("x").moe_layers == (1, 5)
    assert cfg.spec("x").params == sum(p.numel() for p in hf.parameters())


@pytest.mark.parametrize("family", MOE_FAMILIES)
def test_active_parameters_and_flops_per_token(family):
    """FLOPs count the k chosen experts (plus router and shared expert), params every expert."""
    cfg = tiny(family)
    spec = cfg.spec("x")
    dense = spec.moe_params() - spec.moe_params(active=True)
    assert spec.active_params == spec.params - len(spec.sparse_layers) * dense
    assert dense == (cfg.n_experts - cfg.experts_per_token) * 3 * cfg.hidden_size * cfg.expert_ffn
    block = spec.layer_specs(seq=16)[1 + min(spec.sparse_layers)]
    h, k, fe, fs = cfg.hidden_size, cfg.experts_per_token, cfg.expert_ffn, cfg.shared_expert_ffn
    mlp = sum(m.flops_per_token for m in block.matmuls if m.name.startswith(("router", "expert", "shared")))
    assert mlp == 2 * h * cfg.n_experts + k * 6 * h * fe + (6 * h * fs + 2 * h if fs else 0)
    assert block.params == spec.block_params_at(min(spec.sparse_layers))


@pytest.mark.parametrize("d,needle", [
    (dict(model_type="mixtral", sliding_window=4096), "sliding_window=4096 is not supported"),
    (dict(model_type="mixtral", router_jitter_noise=0.01), "router_jitter_noise"),
    (dict(model_type="mixtral", num_local_experts=2, num_experts_per_tok=3), "exceeds num_local_experts"),
    (dict(model_type="qwen2_moe", use_sliding_window=True), "sliding-window attention is not modelled"),
    (dict(model_type="qwen3_moe", decoder_sparse_step=0), "decoder_sparse_step"),
    (dict(model_type="qwen3_moe", num_experts=-1), "num_experts"),
])
def test_moe_configs_refused_naming_the_problem(d, needle):
    base = dict(vocab_size=101, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4)
    with pytest.raises(ValueError, match=needle):
        registry.config_from_hf_dict({**base, **d})


def test_qwen2_moe_without_experts_is_dense():
    """num_experts 0: every block dense, as transformers builds it."""
    cfg = tiny("qwen2_moe", num_experts=0, mlp_only_layers=())
    assert not any(cfg.sparse_layer(i) for i in range(cfg.n_layers))
    hf = hf_model(cfg)
    assert cfg.spec("x").params == sum(p.numel() for p in hf.parameters()) and cfg.spec("x").experts == 0


def test_transformers_config_reads_back():
    for family in MOE_FAMILIES:
        d = tiny(family).to_hf_dict()
        assert registry.config_from_hf_dict(transformers.AutoConfig.for_model(**d).to_dict()) == tiny(family)


@pytest.mark.parametrize("name,total,active,tol", [
    # Mistral AI, "Mixtral of experts" (2023-12-11): 46.7B total, 12.9B active per token
    ("mixtral-8x7b", 46.7e9, 12.9e9, 0.05e9),
    # Mistral AI, "Cheaper, Better, Faster, Stronger" (2024-04-17): 141B total, 39B active
    ("mixtral-8x22b", 141e9, 39e9, 0.5e9),
    # Qwen/Qwen3-30B-A3B model card: 30.5B in total, 3.3B activated (29.9B non-embedding)
    ("qwen3-30b-a3b", 30.5e9, 3.3e9, 0.06e9),
])
def test_zoo_moe_parameter_counts_are_the_published_ones(name, total, active, tol):
    """Published totals are rounded to the digits shown; the tolerance is half the last digit
    (Qwen3's active 3.35B rounds to 3.3 with its card's rounding of 3.35 down, hence 0.06)."""
    from models import zoo

    m = zoo.get(name)
    assert abs(m.params - total) <= tol and abs(m.active_params - active) <= tol, (m.params, m.active_params)
    if name == "qwen3-30b-a3b":
        assert abs(m.params - 2 * m.vocab * m.hidden - 29.9e9) <= 0.05e9  # non-embedding
    # and exactly the count of transformers' own model of that config (built on the meta device)
    cfg = registry.config_from_spec(m)
    with torch.device("meta"):
        hf = transformers.AutoModelForCausalLM.from_config(transformers.AutoConfig.for_model(**cfg.to_hf_dict()))
    assert m.params == sum(p.numel() for p in hf.parameters())


@pytest.mark.parametrize("family", MOE_FAMILIES)
def test_published_per_expert_checkpoints_load_stacked_as_transformers_stacks_them(tmp_path, family):
    """A checkpoint in the hub's per-expert layout (Mixtral: block_sparse_moe.experts.j.w1/w3/w2;
    Qwen: mlp.experts.j.gate_proj/up_proj/down_proj) loads here with transformers' stacking, and
    transformers' from_pretrained of the same folder gives our logits."""
    from safetensors.torch import save_file

    from models import hf

    cfg = tiny(family)
    w = perturbed(cfg, torch.float64)
    names = ("w1", "w3", "w2", ".block_sparse_moe.") if family == "mixtral" else \
        ("gate_proj", "up_proj", "down_proj", ".mlp.")
    legacy = {}
    for n, t in w.items():
        if n.endswith("mlp.experts.gate_up_proj"):
            head = n[: -len(".mlp.experts.gate_up_proj")] + names[3] + "experts."
            for j in range(t.size(0)):
                gate, up = t[j].chunk(2, dim=0)
                legacy[f"{head}{j}.{names[0]}.weight"], legacy[f"{head}{j}.{names[1]}.weight"] = gate, up
        elif n.endswith("mlp.experts.down_proj"):
            head = n[: -len(".mlp.experts.down_proj")] + names[3] + "experts."
            for j in range(t.size(0)):
                legacy[f"{head}{j}.{names[2]}.weight"] = t[j]
        else:
            legacy[n.replace(".mlp.gate.", names[3] + "gate.")] = t
    save_file({n: t.contiguous() for n, t in legacy.items()}, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(__import__("json").dumps(cfg.to_hf_dict()))
    cfg2, w2 = hf.load_checkpoint(tmp_path)
    assert cfg2 == cfg and all(torch.equal(w2[n], w[n]) for n in w)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        tmp_path, attn_implementation="eager", experts_implementation="eager", dtype=torch.float64)
    x = idx()
    with torch.no_grad():
        assert rel(CausalLM(cfg, w)(x)[0], model(x).logits) < 1e-12
