"""Tensors riding on the engine's events: MemoryX's master weights and AdamW, each CS-2's layers.

``TrainingPayload`` is the engine's payload hook (see ``wsim.engine.run.NullPayload``):
- ``stream_weights``: MemoryX sends a copy of the layer's current master weights (what SwarmX
  broadcasts is what every CS-2 computes with);
- ``compute``: CS-2 ``system`` runs the layer pass on its rows of the batch (forward: keeps the
  activations of the graph, no weights; backward: replays it with the weights streamed again and
  returns the weight gradients);
- ``reduce``: a SwarmX node sums its children's gradients in the tree's order;
- ``receive_gradient`` / ``update``: MemoryX accumulates and, when the engine says the layer's
  gradients are all in, steps that layer's ``torch.optim.AdamW``.
With ``masks`` (sparse weight streaming, ``wsim/functional/sparse.py``) MemoryX zeroes the masked
weights once, the CS-2s mask their weight gradients before sending them up, and MemoryX asserts
after every update that the masked entries are still exactly zero.
The order of all of this is the engine's event order: there is no second training loop.
"""

from __future__ import annotations

import weakref

import torch
import torch.nn.functional as F
from torch import Tensor

from models.decoder import DecoderConfig
from models.moe import balance_loss, collect_router_logits, router_statistics
from wsim.functional import sparse
from wsim.functional.reference import adamw_param_groups, step_batch
from wsim.functional.streamed import StreamedLayer
from wsim.cluster.memory import split


class _CopyingWeights:
    """Test-only (``TrainingPayload.copy_weights_fault``): layers that compute on copies of their
    weights, the leak that weak references to the streamed tensors cannot see."""

    def __init__(self, cfg: DecoderConfig):
        self.cfg = cfg

    def layer_forward(self, layer: str, inp, ws: dict[str, Tensor], **kwargs):
        return self.cfg.layer_forward(layer, inp, {n: w * 1.0 for n, w in ws.items()}, **kwargs)


class _KeepingWeights:
    """Test-only (``TrainingPayload.keep_weights_fault``): layers that keep ``w.detach()`` ("detach":
    the same storage, which the storage guard sees) or ``w.detach().clone()`` ("clone": new storage,
    which only the live-tensor measure sees) of every streamed weight in a list outside autograd."""

    def __init__(self, cfg, kept: list, how: str):
        self.cfg, self.kept, self.how = cfg, kept, how

    def layer_forward(self, layer: str, inp, ws: dict[str, Tensor], **kwargs):
        for w in ws.values():
            self.kept.append(w.detach() if self.how == "detach" else w.detach().clone())
        return self.cfg.layer_forward(layer, inp, ws, **kwargs)


def live_tensor_bytes() -> int:
    """Bytes of every tensor storage the garbage collector can reach now, each storage once (the
    test mode ``TrainingPayload.live_bytes``: a copy of weights kept anywhere shows here)."""
    import gc

    gc.collect()  # garbage from before (an earlier run's cycles) is not live
    seen, total = set(), 0
    for obj in gc.get_objects():
        if issubclass(type(obj), Tensor):  # type(): isinstance would touch deprecated torch objects
            try:
                s = obj.untyped_storage()
            except (RuntimeError, NotImplementedError):  # pragma: no cover - storage-less tensors
                continue
            if s.data_ptr() not in seen:
                seen.add(s.data_ptr())
                total += s.nbytes()
    return total


class _SystemState:
    """One CS-2's activations for one micro-batch: per layer, the graph and its input."""

    __slots__ = ("x", "grad", "layers", "router", "router_grads")

    def __init__(self):
        self.x: Tensor | None = None  # the activation flowing forward
        self.grad: Tensor | None = None  # the gradient flowing backward
        self.layers: dict[int, tuple] = {}  # layer -> (StreamedLayer, input leaf, output)
        # MoE with output_router_logits: per sparse block, its router statistics (models.moe), and
        # after the head the load-balancing loss's gradient with respect to its probability sums
        self.router: dict[int, tuple] = {}
        self.router_grads: dict[int, Tensor] = {}


class TrainingPayload:
    # test-only fault switch: every layer computes on copies of its weights (``w * 1.0``), which the
    # autograd graph then keeps until the backward; the weight-holding guard must report them
    copy_weights_fault = False
    # test-only: every layer keeps w.detach() ("detach") or w.detach().clone() ("clone") of its
    # streamed weights in a list outside autograd (``_KeepingWeights``)
    keep_weights_fault: str | None = None
    # test mode: a list here receives live_tensor_bytes() after every step (costs a walk of every
    # object the garbage collector tracks, so it is off in normal runs)
    live_bytes: list | None = None
    # test-only fault switches of sparse training (``masks``): the CS-2s forget to mask the gradient
    # of one tensor (the first masked one), or compute with the weights re-masked by other masks of
    # the same density (a wrong bitmap on the wafer; the masters keep their zeros, so only the
    # equivalence sees it)
    unmasked_gradient_fault = False
    wrong_mask_fault = False
    check_mask_invariant = True  # MemoryX's assertion; tests turn it off to see the equivalence fail

    def __init__(self, cfg: DecoderConfig, weights: dict[str, Tensor], data: Tensor, batch: int,
                 systems: int, micro_batch_seqs: list[int], lr: float, betas, eps: float,
                 weight_decay: float, dtype: torch.dtype, grad_clip: float | None = None,
                 first_step: int = 0, optimizer_state: dict | None = None,
                 masks: dict[str, Tensor] | None = None):
        self.cfg, self.data, self.batch, self.systems = cfg, data, batch, systems
        self.dtype = dtype
        self.first_step = first_step
        self.grad_clip = grad_clip
        self.names = cfg.layer_names()
        self.masks = dict(masks or {})  # name -> bool (True: kept); MemoryX and the CS-2s hold them
        self.master = {}
        for n, w in weights.items():
            t = w.detach().to(dtype).clone()
            self.master[n] = (sparse.apply(t, self.masks[n]) if n in self.masks else t).requires_grad_(True)
        self.stream_masks = self.masks
        if self.wrong_mask_fault and self.masks:  # each mask shifted by one entry: same density
            self.stream_masks = {n: m.flatten().roll(1).view_as(m) for n, m in self.masks.items()}
        self.unmasked = next(iter(self.masks)) if self.unmasked_gradient_fault and self.masks else None
        self.streamed = [cfg.layer_param_names(l) for l in self.names]
        owned_seen: set[str] = set()
        self.owned: list[list[str]] = []
        for names in self.streamed:
            self.owned.append([n for n in names if n not in owned_seen])
            owned_seen.update(names)
        self.optimizers = [
            torch.optim.AdamW(adamw_param_groups({n: self.master[n] for n in owned}, weight_decay),
                              lr=lr, betas=tuple(betas), eps=eps, foreach=False) if owned else None
            for owned in self.owned
        ]
        if optimizer_state is not None:
            for opt, state in zip(self.optimizers, optimizer_state["layers"]):
                if opt is not None:
                    opt.load_state_dict(state)
            self._mask_optimizer_state()
        self.acc: dict[str, Tensor] = {}
        self.per_system = batch // systems
        self.mb_rows = split(self.per_system, len(micro_batch_seqs)) if micro_batch_seqs else [self.per_system]
        self.tokens = batch * (data.size(1) - 1)  # the loss is a mean over every target of the step
        self.aux_loss = bool(getattr(cfg, "output_router_logits", False))  # MoE router loss (models.moe)
        self.states: dict[tuple[int, int], _SystemState] = {}
        self.losses: dict[int, Tensor] = {}
        self.clipped_steps: set[int] = set()
        # instrumentation: weights a CS-2 used in forward must be gone before its backward, neither
        # their storage alive (weak references to the storages: a tensor, a view or a detach() of a
        # streamed weight keeps its storage) nor kept by the graph in another form (saved-tensor hooks)
        self.fwd_weight_refs: dict[tuple[int, int, int], list] = {}
        self.weights_held_between_passes = 0  # weight storages (or copies) held, summed over passes
        self.weight_bytes_held_between_passes = 0  # their bytes, and those of the copies the graphs saved
        self._kept: list = []  # keep_weights_fault's list
        self.log: list[tuple] = []  # (event, step, micro-batch, layer, system) in engine order
        self.updates_done: dict[int, int] = {}
        self.on_step_end = None  # callback(step, loss) once every layer of a step is updated

    # ---- MemoryX --------------------------------------------------------------------------------
    def _mask_optimizer_state(self) -> None:
        """A resumed AdamW state holds nothing at masked entries (MemoryX keeps the nonzeros' state)."""
        for opt in self.optimizers:
            if opt is None:
                continue
            for group in opt.param_groups:
                for name, param in zip(group["names"], group["params"]):
                    if name in self.masks:
                        for key in ("exp_avg", "exp_avg_sq"):
                            if key in opt.state.get(param, {}):
                                opt.state[param][key].masked_fill_(~self.masks[name], 0.0)

    def stream_weights(self, p) -> dict[str, Tensor]:
        self.log.append(("stream", p.step, p.micro_batch, p.layer, p.phase))
        ws = {n: self.master[n].detach().clone() for n in self.streamed[p.layer]}
        if self.stream_masks is not self.masks:  # the wrong-mask fault
            ws = {n: sparse.apply(w, self.stream_masks[n]) if n in self.stream_masks else w
                  for n, w in ws.items()}
        return ws

    def receive_gradient(self, p, grads: dict[str, Tensor]) -> None:
        for n, g in grads.items():
            prev = self.acc.get(n)
            self.acc[n] = g if prev is None else prev + g

    def update(self, step: int, layer: int) -> None:
        self.log.append(("update", step, -1, layer, -1))
        self._apply(step, layer)
        self.updates_done[step] = self.updates_done.get(step, 0) + 1
        if self.updates_done[step] == len(self.names):
            if self.live_bytes is not None:
                self.live_bytes.append(live_tensor_bytes())
            if self.on_step_end is not None:
                self.on_step_end(step, self.losses[step].item())

    def _apply(self, step: int, layer: int) -> None:
        if self.grad_clip is not None and step not in self.clipped_steps:
            # the engine defers every update until all gradients are in (global_update)
            self.clipped_steps.add(step)
            params = list(self.master.values())
            for n, p in self.master.items():
                p.grad = self.acc.get(n)
            torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
            for n, p in self.master.items():
                if p.grad is not None:
                    self.acc[n] = p.grad
        opt = self.optimizers[layer]
        if opt is None:
            return
        for n in self.owned[layer]:
            self.master[n].grad = self.acc.pop(n)
        opt.step()
        for n in self.owned[layer]:
            self.master[n].grad = None
            if n in self.masks and self.check_mask_invariant:
                moved = int(torch.count_nonzero(self.master[n].detach().masked_select(~self.masks[n])))
                if moved:
                    raise RuntimeError(f"sparse training: {moved} masked entries of {n} moved off zero "
                                       f"at step {self.first_step + step} (an unmasked gradient or AdamW state)")

    # ---- SwarmX ---------------------------------------------------------------------------------
    @staticmethod
    def reduce(parts: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        total = dict(parts[0])
        for part in parts[1:]:
            for n, g in part.items():
                total[n] = total[n] + g
        return total

    # ---- CS-2 -----------------------------------------------------------------------------------
    def _rows(self, step: int, system: int, mb: int) -> tuple[Tensor, Tensor]:
        x, y = step_batch(self.data, step + self.first_step, self.batch)  # resumed runs go on
        start = system * self.per_system + sum(self.mb_rows[:mb])
        rows = slice(start, start + self.mb_rows[mb])
        return x[rows].long(), y[rows].long()

    def compute(self, system: int, p, weights):
        key = (system, p.micro_batch)
        self.log.append((p.phase, p.step, p.micro_batch, p.layer, system))
        if p.phase == "fwd":
            self._forward(system, p, weights, key)
            return None
        if p.phase == "bwd":
            return self._backward(system, p, weights, key)
        raise RuntimeError(f"functional mode has no {p.phase!r} pass")  # pragma: no cover

    def _forward(self, system: int, p, weights, key) -> None:
        st = self.states.setdefault(key, _SystemState())
        name = self.names[p.layer]
        layer = StreamedLayer()
        cfg = self.cfg
        if self.copy_weights_fault:
            cfg = _CopyingWeights(cfg)
        if self.keep_weights_fault:
            cfg = _KeepingWeights(cfg, self._kept, self.keep_weights_fault)
        if name == "embedding":
            idx, _ = self._rows(p.step, system, p.micro_batch)
            inp = None
            out = layer.forward(lambda ws: cfg.layer_forward(name, idx, ws), weights, self.dtype)
        else:
            inp = st.x.detach().requires_grad_(True)
            if name == "head":
                _, targets = self._rows(p.step, system, p.micro_batch)

                def fn(ws):
                    logits = cfg.layer_forward(name, inp, ws)  # (b, T, V)
                    # this CS-2's share of the step's mean loss
                    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1),
                                           reduction="sum") / self.tokens

                out = layer.forward(fn, weights, self.dtype)
                prev = self.losses.get(p.step)
                self.losses[p.step] = out.detach() if prev is None else prev + out.detach()
                self._router_loss(st, p, out)
            else:
                with collect_router_logits() as logits:
                    out = layer.forward(lambda ws: cfg.layer_forward(name, inp, ws), weights, self.dtype)
                if logits and self.aux_loss:  # this CS-2's own tokens, as data parallelism has it
                    st.router[p.layer] = router_statistics(logits[0], self.cfg.n_experts, self.cfg.experts_per_token)
        st.layers[p.layer] = (layer, inp, out)
        st.x = out
        self.fwd_weight_refs[(system, p.micro_batch, p.layer)] = [
            (weakref.ref(s), s.nbytes()) for s in (w.untyped_storage() for w in weights.values())]

    def _router_loss(self, st: _SystemState, p, head_out: Tensor) -> None:
        """At the head: this CS-2's (and micro-batch's) load-balancing loss over its sparse blocks'
        tokens, times router_aux_loss_coef, weighted by its share of the step's tokens (so one
        CS-2 with one micro-batch adds exactly transformers' term). Its gradient with respect to each
        block's probability sum is taken here and joins that block's backward."""
        if not st.router:
            return
        layers = sorted(st.router)
        leaves = [st.router[l][0].detach().requires_grad_(True) for l in layers]
        stats = [(leaf, st.router[l][1], st.router[l][2]) for leaf, l in zip(leaves, layers)]
        share = st.router[layers[0]][2] / self.tokens  # this micro-batch's tokens over the step's
        term = (self.cfg.router_aux_loss_coef * balance_loss(stats, self.cfg.n_experts)).to(self.dtype) * share
        term.backward()
        st.router_grads = {l: leaf.grad for l, leaf in zip(layers, leaves)}
        self.losses[p.step] = self.losses[p.step] + term.detach()

    def _backward(self, system: int, p, weights, key) -> dict[str, Tensor]:
        st = self.states[key]
        refs = self.fwd_weight_refs.pop((system, p.micro_batch, p.layer), [])
        for ref, nbytes in refs:
            if ref() is not None:
                self.weights_held_between_passes += 1
                self.weight_bytes_held_between_passes += nbytes
        layer, inp, out = st.layers.pop(p.layer)
        self.weights_held_between_passes += layer.held_tensors
        self.weight_bytes_held_between_passes += layer.held_bytes
        grad_out = None if self.names[p.layer] == "head" else st.grad
        if p.layer in st.router:  # the router loss's gradient enters the block with the activations'
            out, grad_out = (out, st.router.pop(p.layer)[0]), (grad_out, st.router_grads.pop(p.layer))
        grads = layer.backward(out, grad_out, [inp], weights)
        # the wafer has gradients for the nonzeros only: masked entries leave it as exact zeros
        grads = {n: sparse.apply(g, self.masks[n]) if n in self.masks and n != self.unmasked else g
                 for n, g in grads.items()}
        st.grad = inp.grad if inp is not None else None
        if not st.layers:
            del self.states[key]
        return grads

    # ---- results --------------------------------------------------------------------------------
    def step_losses(self) -> list[float]:
        return [self.losses[k].item() for k in sorted(self.losses)]

    def weights(self) -> dict[str, Tensor]:
        return {n: w.detach().clone() for n, w in self.master.items()}

    def optimizer_state(self) -> dict:
        return {"layers": [opt.state_dict() if opt is not None else None for opt in self.optimizers]}
