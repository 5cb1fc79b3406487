"""Validated regimes: where the cost model has been checked against published runs, and how well.

A regime is a family of published rows (``wsim.gpu.published``) run the same way: one software
stack, one class of data parallelism (DDP/ZeRO-1, ZeRO-2, ZeRO-3), one GPU generation, one
attention kind and precision; its recompute policies and sequence-parallel settings are those its
rows used. Its numeric ranges are the span of its rows: tensor, context and pipeline parallel
sizes, sequence length and tokens per GPU per micro-batch exactly as observed (these decide where
communication stops hiding), GPU count and model size within a factor of 2 (scale alone changes
little once the per-GPU work is inside the range). Its errors are those of the shipped parameter
set. A plan's ``status``:

- ``validated``: inside a regime whose worst error is within ``TOLERANCE``;
- ``checked``: inside a regime, but that regime's worst error is larger (the errors say how much);
- ``extrapolated``: outside every regime; the nearest one and why the plan is not in it are given.
"""

from __future__ import annotations

from dataclasses import dataclass

SCALE_SLACK = 2.0  # GPU count and model size: within a factor of 2 of the regime's rows
TOLERANCE = 0.15  # a regime whose worst error is within this counts as validated


def zero_class(zero: int) -> str:
    return {0: "ddp", 1: "ddp", 2: "zero2", 3: "zero3"}[zero]


@dataclass(frozen=True)
class Features:
    stack: str
    zero: str
    generation: str
    attention: str
    precision: str
    recompute: str
    sequence_parallel: bool
    tp: int
    cp: int
    pp: int
    seq: int
    tokens_per_micro_batch: float  # per GPU: micro_batch x seq / cp
    gpus: int
    params: float
    experts: bool = False  # a mixture of experts: validated only by mixture-of-experts rows


def features(c, plan) -> Features:
    return Features(plan.stack, zero_class(plan.zero), c.generation, c.attention, c.precision,
                    plan.recompute, plan.sequence_parallel, plan.tp, plan.cp, plan.pp, c.seq,
                    plan.micro_batch * c.seq / plan.cp, c.gpus, c.params, c.moe is not None)


@dataclass(frozen=True)
class Regime:
    name: str
    groups: tuple
    role: str  # development | validation | both
    rows: int
    mean_abs_error: float
    worst_error: float
    stack: str
    zero: str
    generation: str
    attention: str
    precision: str
    experts: bool
    recompute: tuple  # the policies its rows used
    sequence_parallel: tuple
    ranges: dict  # name -> (lo, hi)

    @property
    def status(self) -> str:
        return "validated" if abs(self.worst_error) <= TOLERANCE else "checked"

    def misses(self, f: Features) -> list[str]:
        out = []
        for name in ("stack", "zero", "generation", "attention", "precision", "experts"):
            if getattr(f, name) != getattr(self, name):
                out.append(f"{name} {getattr(f, name)} (regime: {getattr(self, name)})")
        for name in ("recompute", "sequence_parallel"):
            if getattr(f, name) not in getattr(self, name):
                allowed = ", ".join(map(str, getattr(self, name)))
                out.append(f"{name} {getattr(f, name)} (regime: {allowed})")
        for name in self.ranges:
            value = getattr(f, name)
            if not self.in_range(name, value):
                lo, hi = self.bounds(name)
                out.append(f"{name} {value:g} outside {lo:g}..{hi:g}")
        return out

    def bounds(self, name: str) -> tuple:
        """The range of ``name`` this regime holds (gpus and params widened by SCALE_SLACK)."""
        lo, hi = self.ranges[name]
        return (lo / SCALE_SLACK, hi * SCALE_SLACK) if name in ("gpus", "params") else (lo, hi)

    def in_range(self, name: str, value) -> bool:
        lo, hi = self.bounds(name)
        return lo <= value <= hi

    def contains(self, f: Features) -> bool:
        """``not self.misses(f)``, without spelling the misses out (the search asks it often)."""
        if (f.stack != self.stack or f.zero != self.zero or f.generation != self.generation
                or f.attention != self.attention or f.precision != self.precision
                or f.experts != self.experts or f.recompute not in self.recompute
                or f.sequence_parallel not in self.sequence_parallel):
            return False
        return all(self.in_range(name, getattr(f, name)) for name in self.ranges)

    def to_dict(self) -> dict:
        return {"name": self.name, "groups": list(self.groups), "role": self.role,
                "rows": self.rows, "mean_abs_error": self.mean_abs_error,
                "worst_error": self.worst_error,
                "status": self.status,
                "conditions": {"stack": self.stack, "zero": self.zero,
                               "generation": self.generation, "attention": self.attention,
                               "precision": self.precision, "experts": self.experts,
                               "recompute": list(self.recompute),
                               "sequence_parallel": list(self.sequence_parallel),
                               **{k: list(v) for k, v in self.ranges.items()}}}


_REGIMES: list | None = None


def regimes() -> list[Regime]:
    """The validated regimes, from the published rows and the shipped parameters (computed once;
    the rows are predicted without a regime, ``wsim.gpu.fixed_plan``, so building needs no guard)."""
    global _REGIMES
    if _REGIMES is None:
        _REGIMES = _build()
    return _REGIMES


def _build() -> list[Regime]:
    from wsim.gpu.inputs import make_consts
    from wsim.gpu.validation import current, current_moe

    families: dict = {}
    for p in current() + current_moe():
        r = p.report
        c = make_consts(p.row.model, seq=p.row.seq, batch=p.row.batch, gpus=p.row.gpus,
                        gpu=p.row.gpu, efficiency=None, attention=r.attention,
                        precision=r.precision)
        f = features(c, r.plan)
        key = (f.stack, f.zero, f.generation, f.attention, f.precision) + (("moe",) if f.experts else ())
        families.setdefault(key, []).append((p, f))
    out = []
    for key, members in families.items():
        preds = [p for p, _ in members]
        fs = [f for _, f in members]
        groups = tuple(sorted({p.row.group for p in preds}))
        roles = {p.row.role for p in preds}
        ranges = {name: (min(getattr(f, name) for f in fs), max(getattr(f, name) for f in fs))
                  for name in ("tp", "cp", "pp", "seq", "tokens_per_micro_batch", "gpus", "params")}
        errors = [p.error for p in preds]
        name = "/".join(key) + " (" + ", ".join(groups) + ")"
        out.append(Regime(name=name, groups=groups,
                          role=roles.pop() if len(roles) == 1 else "both", rows=len(preds),
                          mean_abs_error=sum(abs(e) for e in errors) / len(errors),
                          worst_error=max(errors, key=abs), stack=key[0], zero=key[1],
                          generation=key[2], attention=key[3], precision=key[4],
                          experts=len(key) > 5,
                          recompute=tuple(sorted({f.recompute for f in fs})),
                          sequence_parallel=tuple(sorted({f.sequence_parallel for f in fs})),
                          ranges=ranges))
    return out


_BY_EXPERTS: dict = {}


def _of_kind(experts: bool) -> list:
    if not _BY_EXPERTS:
        for reg in regimes():
            _BY_EXPERTS.setdefault(reg.experts, []).append(reg)
    return _BY_EXPERTS.get(experts) or regimes()


def classify_features(f: Features) -> dict:
    """``validated`` (bool), ``status`` and the regime's name, rows, errors and conditions; or,
    outside every regime, the nearest one and the conditions the plan misses."""
    best = None
    # a dense plan is compared with the dense regimes only, a mixture of experts with the MoE ones
    # (the other kind always misses on "experts"; skipping them keeps classify as fast as before)
    for reg in _of_kind(f.experts):
        miss = reg.misses(f)
        if not miss:
            return {"validated": reg.status == "validated", **reg.to_dict()}
        if best is None or len(miss) < len(best[1]):
            best = (reg, miss)
    out = {"validated": False, "status": "extrapolated", "name": None}
    if best is not None:
        out["nearest"] = best[0].name
        out["outside_because"] = best[1]
    return out


_BY_KIND: dict | None = None


def validated_regime(f: Features) -> str | None:
    """The name of the regime ``classify_features(f)`` finds if it is validated, else None (only
    the regimes of f's stack, ZeRO class, generation, attention, precision and kind, dense or
    mixture of experts, can hold it)."""
    global _BY_KIND
    if _BY_KIND is None:
        by: dict = {}
        for reg in regimes():
            by.setdefault((reg.stack, reg.zero, reg.generation, reg.attention, reg.precision,
                           reg.experts), []).append(reg)
        _BY_KIND = by
    for reg in _BY_KIND.get((f.stack, f.zero, f.generation, f.attention, f.precision,
                             f.experts), ()):
        if reg.contains(f):
            return reg.name if reg.status == "validated" else None
    return None


def layout_may_validate(c, stacks, tp: int, cp: int, pp: int) -> bool:
    """Whether some plan of this layout (tp x cp x pp, on these stacks) could fall inside a
    validated regime: one of the stacks' validated regimes of c's kind (generation, attention,
    precision, dense or MoE) whose tp, cp, pp, seq, gpus and params ranges hold it. An
    over-approximation (the plan's ZeRO, recompute, sequence parallelism and micro-batch are not
    known yet): the search skips a layout only when this is False, so no validated plan is lost."""
    names = {st.name for st in stacks}
    experts = c.moe is not None
    for reg in regimes():
        if (reg.status != "validated" or reg.stack not in names or reg.experts != experts
                or reg.generation != c.generation or reg.attention != c.attention
                or reg.precision != c.precision):
            continue
        if all(reg.in_range(name, value) for name, value in (
                ("tp", tp), ("cp", cp), ("pp", pp), ("seq", c.seq), ("gpus", c.gpus), ("params", c.params))):
            return True
    return False


def classify(c, plan) -> dict:
    """Which validated regime ``plan`` (run under ``c``) falls in; ``validated`` False if none."""
    return classify_features(features(c, plan))
