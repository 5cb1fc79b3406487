"""Sparse weight streaming, functionally: fixed random masks on the weight matrices, and their rule.

The tensors (``wsim/cluster/sparsity.py``'s rule, mapped onto any family through the ``models.decoder``
interface, no family's names written here):

    embedding  ``cfg.EMBEDDING_WEIGHT`` (the token table; GPT-2's position table stays dense)
    block      every 2-D tensor of ``cfg.block_shapes_at(i)``: the QKV (or q/k/v), attention-projection
               and MLP matrices (gate, up and down of a gated MLP; an MoE block's router and its
               stacked 3-D expert tensors too); biases and norm gains are 1-D
    head       ``cfg.head_weight_name``: the untied LM head, or, tied, the embedding's matrix itself
               (one matrix, one mask: ``sparsity.check_tied`` requires equal densities)

``tests/functional/test_sparse_equivalence.py`` checks, per family, that these tensors hold exactly
the entries the timing model counts (``sparsity.matrix_params``).

The mask of a tensor of n entries at density d keeps exactly k = round(d * n) entries (the nearest
integer, halves to even: Python's ``round``; a tiny tensor at a tiny density may keep none), drawn
uniformly without replacement: the first k of a random permutation of the flat indices. The
permutation's generator is seeded from (``mask_seed``, tensor name) by SHA-256, as the family inits
are, so a mask depends on nothing else (not the order, the dtype or the other tensors), and, for one
seed, the mask of a lower density is a subset of that of a higher one. Tensors at density 1 get no
mask at all (a dense run is the dense code path).

Semantics (``TrainingPayload``): MemoryX zeroes the masked master weights before the first step (and
the masked entries of any resumed AdamW state: it holds optimizer state for nonzeros only); the CS-2s
compute with what it streams, and mask their weight gradients before sending them up (the wafer
produces gradients for the nonzeros only, as the timing model's gradient bytes assume); so every
gradient MemoryX sums, clips and hands to ``torch.optim.AdamW`` is exactly zero at the masked
entries. Masking before the reduction equals masking after it bit for bit (a sum of exact zeros is
zero; the kept entries are summed as before). A masked entry then stays exactly 0: its AdamW moments
stay 0, decoupled decay multiplies 0, and the step adds 0 / (0 + eps) = 0. MemoryX asserts this
after every update.
"""

from __future__ import annotations

import hashlib

import torch
from torch import Tensor

from models.decoder import DecoderConfig
from wsim.errors import require
from wsim.cluster.sparsity import KINDS, Density


def sparse_tensors(cfg: DecoderConfig) -> dict[str, tuple[str, ...]]:
    """Per layer kind, the names of the tensors its density applies to (a tied matrix under both
    embedding and head)."""
    blocks = [cfg.block_prefix(i) + n for i in range(cfg.n_layers)
              for n, shape in cfg.block_shapes_at(i).items() if len(shape) >= 2]  # MoE: stacked experts
    return {"embedding": (cfg.EMBEDDING_WEIGHT,), "block": tuple(blocks), "head": (cfg.head_weight_name,)}


def tensor_densities(cfg: DecoderConfig, density: Density) -> dict[str, float]:
    """Each sparse-able tensor's density (a tied matrix: the embedding's, which equals the head's)."""
    out: dict[str, float] = {}
    for kind in KINDS:
        for name in sparse_tensors(cfg)[kind]:
            out.setdefault(name, density.of_kind(kind))
    return out


def nonzeros(numel: int, d: float) -> int:
    """Entries a mask of density ``d`` keeps in a tensor of ``numel``: round(d * numel), halves to even."""
    return round(d * numel)


def _generator(mask_seed: int, name: str) -> torch.Generator:
    digest = hashlib.sha256(f"mask/{mask_seed}/{name}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:7], "big"))


def draw_mask(name: str, shape, d: float, mask_seed: int) -> Tensor:
    """A bool tensor of ``shape``, True at the round(d * numel) kept entries (see the module doc)."""
    numel = torch.Size(shape).numel()
    keep = torch.randperm(numel, generator=_generator(mask_seed, name))[:nonzeros(numel, d)]
    mask = torch.zeros(numel, dtype=torch.bool)
    mask[keep] = True
    return mask.view(shape)


def check_mask_seed(mask_seed) -> None:
    require(isinstance(mask_seed, int) and not isinstance(mask_seed, bool),
            f"mask_seed must be an integer, got {mask_seed!r}")


def masks(cfg: DecoderConfig, density: Density, mask_seed: int = 0) -> dict[str, Tensor]:
    """The fixed masks of ``cfg``'s weight matrices at ``density``: name -> bool tensor (True: kept),
    for the tensors of density below 1 only."""
    check_mask_seed(mask_seed)
    shapes = cfg.param_shapes()
    return {n: draw_mask(n, shapes[n], d, mask_seed)
            for n, d in tensor_densities(cfg, density).items() if d < 1}


def nonzero_fraction(cfg: DecoderConfig, mask_of: dict[str, Tensor]) -> dict[str, float]:
    """Per layer kind, the kept fraction of its weight-matrix entries (1.0 where unmasked)."""
    shapes = cfg.param_shapes()
    out = {}
    for kind, names in sparse_tensors(cfg).items():
        total = sum(torch.Size(shapes[n]).numel() for n in names)
        kept = sum(int(mask_of[n].sum()) if n in mask_of else torch.Size(shapes[n]).numel() for n in names)
        out[kind] = kept / total if total else 1.0
    return out


def apply(t: Tensor, mask: Tensor) -> Tensor:
    """``t`` with the masked entries set to exactly +0 (a new tensor; a product with the mask would
    leave -0 and turn inf into nan)."""
    return t.masked_fill(~mask, 0.0)
