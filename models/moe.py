"""Mixture-of-experts blocks, shared by the MoE families (Mixtral ``models/mixtral.py``, Qwen2-MoE
``models/qwen2_moe.py``, Qwen3-MoE ``models/qwen3_moe.py``), as transformers 5 computes them.

A sparse block replaces a Llama block's MLP (Shazeer et al. 2017, arXiv 1701.06538; Fedus et al. 2022,
"Switch Transformers", arXiv 2101.03961; Jiang et al. 2024, "Mixtral of Experts", arXiv 2401.04088,
sec. 2.1): a router ``mlp.gate`` (E x h) scores each token against the E experts; the softmax over
them (in float32, whatever the dtype) picks the top k, whose probabilities weigh the experts' SwiGLU
outputs, renormalised to sum to one (Mixtral always; Qwen with ``norm_topk_prob``). Qwen2-MoE adds a
shared expert every token passes through, scaled by sigmoid(shared_expert_gate x). The experts'
matrices are stored as transformers 5 stores them, stacked: ``mlp.experts.gate_up_proj`` (E, 2f, h),
gate rows first, and ``mlp.experts.down_proj`` (E, h, f). Qwen's ``decoder_sparse_step`` and
``mlp_only_layers`` keep some blocks dense (a plain SwiGLU of ``intermediate_size``).

``experts`` mirrors transformers' *eager* experts implementation operation for operation (the order
experts add into each token's output included), so float64 runs match its float64 model; its default
kernel (``grouped_mm``) takes no float64 on CPU. Routing is per token: a CS-2 routes only its own rows
(data parallelism), and each expert sees the tokens of that system that chose it. No token is dropped
(transformers has no capacity factor). The load-balancing loss (Switch Transformers eq. 4-6,
transformers' ``load_balancing_loss_func``) is added to the loss only with ``output_router_logits``:
``router_statistics`` per sparse block, ``balance_loss`` over them (the weight-streamed executor
computes it per CS-2 and micro-batch, on its own tokens, from the blocks' statistics).
"""

from __future__ import annotations

import contextlib
from contextvars import ContextVar

import torch
import torch.nn.functional as F
from torch import Tensor

from models.decoder import Shapes, activation, boolean, gated_mlp, linear_shapes, positive_int

_ROUTER_LOGITS: ContextVar[list | None] = ContextVar("router_logits", default=None)


@contextlib.contextmanager
def collect_router_logits():
    """Within the block, every router appends its logits (tokens, E) to the yielded list (what
    transformers' ``output_router_logits`` returns), for ``load_balancing_loss``."""
    found: list[Tensor] = []
    token = _ROUTER_LOGITS.set(found)
    try:
        yield found
    finally:
        _ROUTER_LOGITS.reset(token)
        outer = _ROUTER_LOGITS.get()
        if outer is not None:  # a collector around this one sees them too
            outer.extend(found)


def route(x: Tensor, gate: Tensor, top_k: int, normalise: bool) -> tuple[Tensor, Tensor, Tensor]:
    """transformers' ``TopKRouter``: logits (N, E) in the dtype, the softmax in float32, the top k
    (weights (N, k) float32, renormalised when ``normalise``; indices (N, k))."""
    logits = F.linear(x, gate)  # (N, E)
    collector = _ROUTER_LOGITS.get()
    if collector is not None:
        collector.append(logits)
    probs = F.softmax(logits, dtype=torch.float, dim=-1)  # (N, E) float32
    top_w, top_i = torch.topk(probs, top_k, dim=-1)  # (N, k)
    if normalise:
        top_w /= top_w.sum(dim=-1, keepdim=True)
    return logits, top_w, top_i


def experts(x: Tensor, gate_up: Tensor, down: Tensor, top_i: Tensor, top_w: Tensor, act: str) -> Tensor:
    """Each expert's SwiGLU on the tokens that chose it, weighted and added into their rows, experts
    in ascending order (transformers' eager ``Experts.forward``): x (N, h), gate_up (E, 2f, h),
    down (E, h, f). An expert's matrices are views of the stacked weights, never copies."""
    n_experts = gate_up.size(0)
    out = torch.zeros_like(x)  # (N, h)
    with torch.no_grad():
        mask = F.one_hot(top_i, num_classes=n_experts + 1).permute(2, 1, 0)  # (E+1, k, N)
        hit = torch.greater(mask.sum(dim=(-1, -2)), 0).nonzero()
    for e in hit[:, 0].tolist():
        if e == n_experts:
            continue
        pos, tok = torch.where(mask[e])  # the rank of the choice, the token
        g, u = F.linear(x[tok], gate_up[e]).chunk(2, dim=-1)  # (n_e, f) each
        h = F.linear(activation(g, act) * u, down[e])  # (n_e, h)
        h = h * top_w[tok, pos, None]
        out.index_add_(0, tok, h.to(out.dtype))
    return out


def router_statistics(logits: Tensor, n_experts: int, top_k: int) -> tuple[Tensor, Tensor, int]:
    """One sparse block's share of the load-balancing loss: (the sum over its tokens of the router
    probabilities (E,) float32, with their graph; the top-k choices per expert (E,) float32; tokens)."""
    weights = F.softmax(logits, dim=-1)  # in the dtype, as transformers' load_balancing_loss_func
    _, chosen = torch.topk(weights, top_k, dim=-1)
    counts = torch.histc(chosen.reshape(-1).to(torch.float32), bins=n_experts, min=0, max=n_experts)
    return weights.float().sum(dim=0), counts, weights.shape[0]


def balance_loss(stats: list[tuple[Tensor, Tensor, int]], n_experts: int) -> Tensor:
    """Switch Transformers' auxiliary loss E * sum_e f_e P_e over all MoE layers' tokens (f_e: the
    share of top-k choices that went to expert e, P_e: its mean router probability), in float32,
    summed layer by layer as transformers' ``load_balancing_loss_func`` does (no attention mask)."""
    tokens = torch.zeros(n_experts, dtype=torch.float32)
    probs = torch.zeros(n_experts, dtype=torch.float32)
    rows = 0.0
    for prob_sum, counts, n in stats:
        tokens = tokens + counts
        probs = probs + prob_sum
        rows = rows + n
    return torch.sum((tokens / rows) * (probs / rows).unsqueeze(0)) * n_experts


def load_balancing_loss(router_logits: list[Tensor], n_experts: int, top_k: int) -> Tensor:
    """The load-balancing loss of every sparse block's router logits (``balance_loss``)."""
    return balance_loss([router_statistics(g, n_experts, top_k) for g in router_logits], n_experts)


class MoEConfig:
    """What the MoE families add to ``models.llama.LlamaConfig`` (mixed in before it). A family maps
    its config fields onto ``n_experts``, ``experts_per_token``, ``expert_ffn``, ``normalise_top_k``,
    ``shared_expert_ffn`` and ``sparse_layer(i)``; the rest (shapes, the MoE MLP, its spec) is here."""

    ROUTER_FIRST = True  # the router before the experts in named_parameters (Qwen3 registers it after)

    n_experts: int
    experts_per_token: int
    expert_ffn: int
    normalise_top_k: bool
    shared_expert_ffn: int = 0  # Qwen2-MoE's shared expert (0: none)
    output_router_logits: bool
    router_aux_loss_coef: float

    def sparse_layer(self, i: int) -> bool:
        return self.n_experts > 0

    def check_moe(self, cls: str, experts_field: str) -> None:
        positive_int(cls, "num_experts_per_tok", self.experts_per_token)
        boolean(cls, "output_router_logits", self.output_router_logits)
        c = self.router_aux_loss_coef
        if isinstance(c, bool) or not isinstance(c, (int, float)) or not 0 <= c < float("inf"):
            raise ValueError(f"{cls}.router_aux_loss_coef must be a number >= 0, got {c!r}")
        if self.n_experts and self.experts_per_token > self.n_experts:  # torch.topk fails too
            raise ValueError(f"{cls}.num_experts_per_tok ({self.experts_per_token}) exceeds "
                             f"{experts_field} ({self.n_experts})")

    def sparse_shapes(self) -> Shapes:
        h, f, e = self.hidden_size, self.expert_ffn, self.n_experts
        router = {"mlp.gate.weight": (e, h)}
        stacked = {"mlp.experts.gate_up_proj": (e, 2 * f, h), "mlp.experts.down_proj": (e, h, f)}
        shapes = {**router, **stacked} if self.ROUTER_FIRST else {**stacked, **router}
        if self.shared_expert_ffn:
            fs = self.shared_expert_ffn
            shapes.update({**linear_shapes("mlp.shared_expert.gate_proj", fs, h, False),
                           **linear_shapes("mlp.shared_expert.up_proj", fs, h, False),
                           **linear_shapes("mlp.shared_expert.down_proj", h, fs, False),
                           "mlp.shared_expert_gate.weight": (1, h)})
        return shapes

    def block_shapes_at(self, i: int) -> Shapes:
        mlp = self.sparse_shapes() if self.sparse_layer(i) else self.mlp_shapes()
        return {**self.attention_shapes(), **mlp, **self.norm_shapes("input_layernorm"),
                **self.norm_shapes("post_attention_layernorm")}

    def block_shapes(self) -> Shapes:
        """A sparse block's tensors (block 0's when it is one; ``block_shapes_at`` for any)."""
        return self.block_shapes_at(0)

    def mlp(self, x: Tensor, w: dict, p: str) -> Tensor:
        """The block's MLP: the experts (and the shared expert) in a sparse block, else SwiGLU."""
        if not self.sparse_layer(int(p.rstrip(".").rsplit(".", 1)[1])):
            return gated_mlp(x, w, p + "mlp.", self.hidden_act)
        m = p + "mlp."
        B, T, C = x.shape
        h = x.reshape(-1, C)  # (N, C): every token of this system's rows
        shared = gated_mlp(h, w, m + "shared_expert.", self.hidden_act) if self.shared_expert_ffn else None
        _, top_w, top_i = route(h, w[m + "gate.weight"], self.experts_per_token, self.normalise_top_k)
        if self.CAST_ROUTER_WEIGHTS:  # Qwen: the float32 weights cast to the dtype; Mixtral: promoted
            top_w = top_w.to(h.dtype)
        out = experts(h, w[m + "experts.gate_up_proj"], w[m + "experts.down_proj"], top_i, top_w, self.hidden_act)
        if shared is not None:
            out = out + torch.sigmoid(F.linear(h, w[m + "shared_expert_gate.weight"])) * shared
        return out.reshape(B, T, C)

    CAST_ROUTER_WEIGHTS = True

    # published checkpoints hold one tensor per expert (transformers 5 stacks them on load, in
    # conversion_mapping.py): Mixtral's block_sparse_moe.experts.{j}.w1 (gate), w3 (up), w2 (down);
    # Qwen's mlp.experts.{j}.gate_proj, up_proj, down_proj
    PER_EXPERT_NAMES = {"w1": "gate", "w3": "up", "w2": "down", "gate_proj": "gate", "up_proj": "up",
                        "down_proj": "down"}

    def normalise_checkpoint(self, raw: dict[str, Tensor]) -> dict[str, Tensor]:
        """Also stacks a published checkpoint's per-expert matrices as transformers 5 does:
        gate_up_proj[j] = [gate_j; up_j], down_proj[j] = down_j."""
        raw = {n.replace(".block_sparse_moe.", ".mlp."): t for n, t in raw.items()}
        loose: dict[tuple[str, str], dict[int, Tensor]] = {}
        out = {}
        for name, t in raw.items():
            head, sep, tail = name.partition(".mlp.experts.")
            parts = tail.split(".")
            if sep and len(parts) == 3 and parts[0].isdigit() and parts[1] in self.PER_EXPERT_NAMES:
                loose.setdefault((head, self.PER_EXPERT_NAMES[parts[1]]), {})[int(parts[0])] = t
            else:
                out[name] = t
        for head in sorted({h for h, _ in loose}):
            gate, up, down = (loose.get((head, k), {}) for k in ("gate", "up", "down"))
            if not (set(gate) == set(up) == set(down) == set(range(len(gate)))):
                raise ValueError(f"checkpoint: the per-expert tensors of {head} are incomplete")
            out[head + ".mlp.experts.gate_up_proj"] = torch.stack(
                [torch.cat([gate[j], up[j]], dim=0) for j in range(len(gate))])
            out[head + ".mlp.experts.down_proj"] = torch.stack([down[j] for j in range(len(down))])
        return super().normalise_checkpoint(out)

    def run_layers(self, idx: Tensor, w: dict[str, Tensor]) -> tuple[Tensor, Tensor | None]:
        """With ``output_router_logits``: router_aux_loss_coef x the load-balancing loss as the
        auxiliary term (transformers' MoE ``ForCausalLM`` adds it to the loss)."""
        with collect_router_logits() as router_logits:
            x, _ = super().run_layers(idx, w)
        if not self.output_router_logits:
            return x, None
        return x, self.router_aux_loss_coef * load_balancing_loss(router_logits, self.n_experts,
                                                                  self.experts_per_token)

    def moe_spec_fields(self) -> dict:
        if not self.n_experts:  # Qwen with num_experts 0: a dense model
            return {}
        return dict(experts=self.n_experts, experts_per_token=self.experts_per_token,
                    expert_ffn=self.expert_ffn, shared_expert_ffn=self.shared_expert_ffn,
                    moe_layers=tuple(i for i in range(self.num_hidden_layers) if self.sparse_layer(i)))

    def moe_hf_fields(self) -> dict:
        return dict(num_experts_per_tok=self.experts_per_token, output_router_logits=self.output_router_logits,
                    router_aux_loss_coef=self.router_aux_loss_coef)
