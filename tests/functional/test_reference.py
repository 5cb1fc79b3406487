"""The reference trainer equals a hand-written loop on transformers' GPT2LMHeadModel with
torch.optim.AdamW (docs/design.md, "Numerical equivalence": float64, 1e-10)."""

import pytest
import torch
import torch.nn.functional as F
import transformers

from models.gpt import GPT, GPTConfig, init_weights
from wsim.functional.reference import adamw_param_groups, reference_train, step_batch


CFG = GPTConfig(n_layer=2, n_embd=32, n_head=4, vocab_size=101, n_positions=64)
OPT = dict(lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)


def data(rows=12, seq=16, seed=0):
    return torch.randint(0, CFG.vocab_size, (rows, seq + 1), generator=torch.Generator().manual_seed(seed))


def hf_loop(cfg, w, tokens, steps, batch, dtype, grad_clip=None):
    """The textbook loop: one HF model, AdamW with decay on >= 2-D tensors only."""
    hf_cfg = transformers.GPT2Config(**cfg.to_hf_dict(), attn_implementation="eager")
    model = transformers.GPT2LMHeadModel(hf_cfg).to(dtype)
    model.load_state_dict(w, strict=False)  # tied: lm_head.weight *is* wte
    params = dict(model.named_parameters())
    groups = [{"params": [p for p in params.values() if p.dim() >= 2], "weight_decay": OPT["weight_decay"]},
              {"params": [p for p in params.values() if p.dim() < 2], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=OPT["lr"], betas=OPT["betas"], eps=OPT["eps"])
    losses = []
    for k in range(steps):
        rows = tokens[k * batch:(k + 1) * batch]
        logits = model(rows[:, :-1]).logits
        loss = F.cross_entropy(logits.reshape(-1, cfg.vocab_size), rows[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        opt.step()
        losses.append(loss.item())
    return losses, {n: p.detach() for n, p in params.items()}


def assert_close(ours, ref, tol, w_tol=None):
    losses, w = ours
    ref_losses, ref_w = ref
    assert len(losses) == len(ref_losses)
    for a, b in zip(losses, ref_losses):
        assert abs(a - b) <= tol * abs(b)
    assert list(w) == list(ref_w)
    w_tol = tol if w_tol is None else w_tol
    for n, t in w.items():  # docs/design.md: within tol of the tensor's largest magnitude
        assert (t - ref_w[n]).abs().max() <= w_tol * ref_w[n].abs().max(), n


@pytest.mark.parametrize("tied", [True, False])
def test_matches_hf_adamw_loop_float64(tied):
    cfg = GPTConfig(**{**CFG.__dict__, "tie_word_embeddings": tied})
    w0 = init_weights(cfg, seed=1, dtype=torch.float64)
    snapshot = {n: t.clone() for n, t in w0.items()}
    tokens = data()
    ours = reference_train(cfg, w0, tokens, steps=3, batch=4, dtype=torch.float64, **OPT)
    assert_close(ours, hf_loop(cfg, w0, tokens, 3, 4, torch.float64), 1e-10)
    assert all(torch.equal(w0[n], t) for n, t in snapshot.items())  # inputs untouched
    moved = (ours[1]["transformer.wte.weight"] - w0["transformer.wte.weight"]).abs().max()
    assert moved > 1e-3


def test_matches_hf_with_grad_clip_and_float32():
    w0 = init_weights(CFG, seed=2)
    tokens = data(seed=1)
    ours = reference_train(CFG, w0, tokens, steps=3, batch=4, dtype=torch.float64, grad_clip=0.5, **OPT)
    w64 = {n: t.double() for n, t in w0.items()}
    assert_close(ours, hf_loop(CFG, w64, tokens, 3, 4, torch.float64, grad_clip=0.5), 1e-10)
    ours32 = reference_train(CFG, w0, tokens, steps=3, batch=4, dtype=torch.float32, **OPT)
    assert all(t.dtype == torch.float32 for t in ours32[1].values())
    # float32: the key part of c_attn.bias has an exactly-zero true gradient (softmax ignores a
    # per-query constant), so its gradient is rounding noise that Adam rescales to O(lr) steps:
    # weights agree to reduction-order noise amplified by Adam, not to 1e-7.
    assert_close(ours32, hf_loop(CFG, w0, tokens, 3, 4, torch.float32), 1e-5, w_tol=2e-3)


def test_weight_decay_groups_exclude_biases_and_layernorm():
    for tied in (True, False):
        cfg = GPTConfig(**{**CFG.__dict__, "tie_word_embeddings": tied})
        groups = adamw_param_groups(GPT(cfg).named_parameters(), 0.1)
        decay, no_decay = groups
        assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
        expected = ["transformer.wte.weight", "transformer.wpe.weight"] + [
            f"transformer.h.{i}.{m}.weight" for i in range(2)
            for m in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
        ] + ([] if tied else ["lm_head.weight"])
        assert decay["names"] == expected
        assert all(n.endswith(".bias") or ".ln_" in n for n in no_decay["names"])
        assert len(no_decay["names"]) == 2 * 8 + 2  # per block 4 biases + 2 LN x 2, plus ln_f
    # a plain dict works too, and an empty group is dropped
    only_biases = adamw_param_groups({"a.bias": torch.zeros(3)}, 0.1)
    assert [g["weight_decay"] for g in only_biases] == [0.0]


def test_data_contract_and_errors():
    tokens = data(rows=6, seq=4)
    x, y = step_batch(tokens, 1, 2)
    assert torch.equal(x, tokens[2:4, :-1]) and torch.equal(y, tokens[2:4, 1:])
    w0 = init_weights(CFG, seed=0)
    with pytest.raises(ValueError, match="rows"):
        reference_train(CFG, w0, tokens, steps=4, batch=2, dtype=torch.float32, **OPT)
    with pytest.raises(ValueError, match="token ids"):
        reference_train(CFG, w0, tokens + 200, steps=1, batch=2, dtype=torch.float32, **OPT)
    with pytest.raises(ValueError, match="batch"):
        reference_train(CFG, w0, tokens, steps=1, batch=0, dtype=torch.float32, **OPT)
