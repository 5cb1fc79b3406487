"""Sparse weight streaming (timing): what a weight density changes in bytes, FLOPs and time.

A ``Density`` gives, per layer kind, the fraction of the layer's *weight matrices* that is nonzero
(a static, unstructured mask): the blocks' QKV, attention-projection and MLP matrices and the LM
head (``LayerSpec.matmuls`` with ``weight=True``), and the embedding's token table. Biases,
LayerNorm gains and the position table stay dense. (The functional mode can apply the same rule: a
fixed random mask of that density on exactly those tensors.) A tied embedding and LM head are one
matrix, so they take one density.

At density d < 1, per layer with W weight-matrix entries and P parameters in all:

- **streamed bytes** (each pass): (P - W) x b + d W x b + W x m/8 + d W x i/8, with b the element
  size, m = ``memoryx.sparse_mask_bits_per_weight`` (a bitmap, default 1) and
  i = ``memoryx.sparse_index_bits_per_nonzero`` (default 0): the sparse format's cost, an
  *assumption* (Cerebras has not published its format).
- **gradient bytes**: (P - W + d W) x gradient size: only the nonzeros have gradients, and MemoryX,
  which holds the mask, needs no index for them (an assumption on the protocol).
- **MemoryX**: the nonzeros' optimizer state, plus the mask: (P - W + d W) x bytes_per_param + the
  streamed format's overhead. The optimizer updates P - W + d W parameters.
- **wafer time**: the weight products' time x (1 - e (1 - d)), e = ``cs2.sparse_flop_efficiency``
  (a vendor claim, default 1: the whole FLOP saving is realised); attention's activation products
  and element-wise work are unchanged. Model FLOPs count the nonzero weights only.

At density 1 every quantity is the dense one, computed by the same expression as before.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from models.spec import LayerSpec, ModelSpec
from wsim.errors import ConfigError, require

KINDS = ("embedding", "block", "head")


@dataclass(frozen=True)
class Density:
    """Nonzero fraction of the weight matrices of each layer kind, each in (0, 1]."""

    embedding: float = 1.0
    block: float = 1.0
    head: float = 1.0

    def __post_init__(self) -> None:
        for kind in KINDS:
            value = getattr(self, kind)
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value <= 1
            require(ok, f"density of {kind} must be a number in (0, 1], got {value!r}")

    @classmethod
    def of(cls, value) -> "Density":
        """A ``Density`` from itself, one number (every kind) or a mapping ``{kind: density}``."""
        if isinstance(value, Density):
            return value
        if isinstance(value, dict):
            bad = set(value) - set(KINDS)
            require(not bad, f"density kinds must be among {', '.join(KINDS)}, got {sorted(map(str, bad))}")
            return cls(**value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            require(0 < value <= 1, f"density must be a number in (0, 1], got {value!r}")
            return cls(value, value, value)
        raise ConfigError(f"density must be a number in (0, 1] or a mapping of layer kind to one, "
                          f"got {value!r}")

    @classmethod
    def parse(cls, text: str) -> "Density":
        """``0.5`` (every kind) or ``block=0.5,head=0.25`` (the kinds named; the rest dense)."""
        text = text.strip()
        items = [text] if "=" not in text else text.split(",")
        pairs = {}
        for item in items:
            kind, _, number = item.rpartition("=")
            try:
                pairs[kind.strip()] = float(number)
            except ValueError:
                raise ConfigError(f"--density must be a number in (0, 1] or kind=number pairs "
                                  f"({', '.join(KINDS)}), got {text!r}") from None
        return cls.of(pairs[""] if "=" not in text else pairs)

    def of_kind(self, kind: str) -> float:
        return getattr(self, kind)

    @property
    def dense(self) -> bool:
        return all(getattr(self, k) == 1 for k in KINDS)

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def check_tied(density: Density, model: ModelSpec) -> None:
    require(not model.tied_embeddings or density.embedding == density.head,
            f"model {model.name} ties the embedding and the LM head (one matrix): their densities "
            f"must agree, got embedding {density.embedding} and head {density.head}")


def matrix_params(layer: LayerSpec, model: ModelSpec) -> int:
    """W: the entries of the layer's sparse-able weight matrices, as streamed."""
    if layer.kind == "embedding":
        w = model.vocab * model.hidden  # the token table; positions stay dense
    else:
        w = sum(op.weight_entries for op in layer.matmuls)  # an MoE block's every expert
    return min(w, layer.params)


def weight_matmul_flops(layer: LayerSpec) -> float:
    """Forward FLOPs per token of the layer's weight products (the part density scales)."""
    return sum(op.flops_per_token for op in layer.matmuls if op.weight)


@dataclass(frozen=True)
class LayerTraffic:
    """One layer's sparse-aware quantities (per pass, per backward, per update)."""

    density: float
    weight_bytes: float  # streamed each time the layer's weights stream
    grad_bytes: float  # sent up each backward
    update_params: float  # owned parameters the optimizer updates
    memoryx_bytes: float  # owned bytes held by MemoryX (weights, optimizer state, mask)


def layer_traffic(layer: LayerSpec, model: ModelSpec, d: float, *, bytes_per_element: int,
                  grad_bytes_per_param: int, bytes_per_param: float, mask_bits: float,
                  index_bits: float) -> LayerTraffic:
    if d == 1:
        return LayerTraffic(1.0, layer.params * bytes_per_element, layer.params * grad_bytes_per_param,
                            layer.owned_params, layer.owned_params * bytes_per_param)
    w = matrix_params(layer, model)
    zero = (1 - d) * w  # entries the mask removes
    fmt = w * mask_bits / 8 + d * w * index_bits / 8  # the sparse format's overhead, bytes
    kept = layer.params - zero
    # a tied head streams the embedding's matrix: the embedding owns its nonzeros and its mask
    tied = layer.owned_params < layer.params
    owned_zero, owned_fmt = (0.0, 0.0) if tied else (zero, fmt)
    owned = layer.owned_params - owned_zero
    return LayerTraffic(d, kept * bytes_per_element + fmt, kept * grad_bytes_per_param, owned,
                        owned * bytes_per_param + owned_fmt)


def densities(layers: list[LayerSpec], density: Density) -> list[float]:
    return [density.of_kind(l.kind) for l in layers]


def flops_per_token(layer: LayerSpec, d: float, phase: str) -> float:
    """FLOPs per token of one pass of ``layer`` at density d (fwd, recompute or bwd)."""
    dense = layer.bwd_flops_per_token if phase == "bwd" else layer.fwd_flops_per_token
    if d == 1:
        return dense
    saved = (1 - d) * weight_matmul_flops(layer)
    return dense - (2 * saved if phase == "bwd" else saved)
