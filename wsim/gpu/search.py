"""``search``: the fastest plan that fits, over every TP/CP/PP/DP/micro-batch/interleave/recompute/
sequence-parallel/ZeRO/stack combination the model, batch and GPU count allow.

Ranked by the cost model alone; the report then says which validated regime the winner falls in
(``wsim.gpu.regimes``) and flags a plan outside all of them. Exhaustive, pruned only with bounds
that cannot discard the optimum:
- memory: model states (weights + gradients + optimizer) of the fullest stage are a lower bound on
  any plan's memory for that layout and ZeRO stage; if it exceeds HBM, no micro-batch fits;
- compute: the bubble-free, communication-free time at the best GEMM efficiency (per layout), and
  then, per micro-batch size, the work every recompute/SP/ZeRO/interleave/stack choice still has to
  do bound the step time from below; a subtree whose bound is no better than the best plan found is
  skipped.
With ``dp == 1`` ZeRO stages are the same plan as ZeRO-0 (nothing to shard) and are evaluated once.
"""

from __future__ import annotations

import time

from models.spec import ModelSpec
from wsim.errors import ConfigError, positive
from wsim.gpu.calibration import STACKS
from wsim.gpu.inputs import make_consts, cp_runs, stacks_for
from wsim.gpu.knobs import check_names, resolve
from wsim.gpu.offload import offload_runs, offload_to_fit
from wsim.gpu.stages import edge_balanced
from wsim.gpu.memory import OPTIMIZER_BF16_BYTES, OPTIMIZER_BYTES, states_lower_bound
from wsim.gpu.moe import Dispatch, expert_states_lower_bound, load as moe_load
from wsim.gpu.plan import RECOMPUTE, Plan, divisors
from wsim.gpu.recompute import check_for_model, normalise
from wsim.gpu.recompute_search import searched_module_sets
from wsim.gpu.regimes import Features, classify, layout_may_validate, validated_regime, zero_class
from wsim.gpu.report import GpuReport, build_report
from wsim.gpu.specs import Efficiency
from wsim.gpu.step import compute_lower_bound_s, evaluate, plan_lower_bounds_s, step_lower_bound_s

GIB = 2**30
MAX_CP = 32  # Megatron-Core's published context-parallel runs go to 16 (Llama 3: 16)


def _choices(value, allowed, name):
    if value is None:
        return tuple(allowed)
    if value not in allowed:
        raise ConfigError(f"{name} {value!r} is not one of {', '.join(map(str, allowed))}")
    return (value,)


def search(model: ModelSpec, *, seq: int = 2048, batch: int, gpus: int, gpu="a100-80gb",
           tp: int | None = None, pp: int | None = None, cp: int | None = None,
           recompute: str | None = None, sequence_parallel: bool | None = None,
           zero: int | None = None, stack: str | None = None, attention: str = "eager",
           precision: str = "bf16", dropout: float | None = None,
           nic_bytes_per_s: float | None = None, nvlink_bytes_per_s: float | None = None,
             fabric: str | None = None,
           efficiency: Efficiency | None = None, ep: int | None = None, etp: int | None = None,
           moe_capacity_factor: float | None = None, moe_imbalance: float = 1.0,
           moe_ep_overlap: bool = False,
           **knobs) -> GpuReport:
    """The fastest plan that fits. Arguments left ``None`` are searched; given ones are fixed.
    The options of ``wsim.gpu.knobs`` left None are searched too: each stack's defaults, and
    every option the stack has turned on where the plan can use it. A mixture of experts also
    searches ``ep`` (the divisors of its expert count that divide tp x cp x dp / etp) and ``etp``
    (1 or tp: Megatron's default and the MoE README's advice for fine-grained experts); a dense
    model has one expert layout (ep 1) and is searched exactly as before."""
    check_names(knobs)
    for name, size in (("tp", tp), ("pp", pp), ("cp", cp), ("ep", ep)):  # given sizes: their own
        if size is not None:  # check, not "no layout is possible" (a 0) or a ZeroDivisionError (ep 0)
            positive(name, size, integer=True)
    c = make_consts(model, seq=seq, batch=batch, gpus=gpus, gpu=gpu, efficiency=efficiency,
                    attention=attention, precision=precision, dropout=dropout,
                    nic_bytes_per_s=nic_bytes_per_s, nvlink_bytes_per_s=nvlink_bytes_per_s, fabric=fabric)
    model = c.model
    expert_layouts = _expert_layouts(model, ep, etp, moe_capacity_factor, moe_imbalance,
                                     moe_ep_overlap)
    recomputes = _choices(recompute, RECOMPUTE, "recompute")
    if knobs.get("recompute_modules") is not None and "selective" in recomputes:
        # the modules are given, not searched (wsim.gpu.recompute); Megatron-Core's model checks
        check_for_model(normalise(knobs["recompute_modules"]), bool(model.kv_lora_rank),
                        bool(model.experts))
    # a selective recompute's modules, where the stack has Megatron-Core's --recompute-modules and
    # none are given: the default (core_attn) and the chain of
    # wsim.gpu.recompute_search.searched_module_sets; a stack without the option, or given
    # modules, one set
    experts = bool(model.experts)
    searched_sets = () if knobs.get("recompute_modules") is not None else searched_module_sets(
        c, not experts or len(model.moe_layers) < model.layers)
    # optimizer bytes a parameter, for the memory bounds: bf16 state only where asked for
    ob_min = OPTIMIZER_BF16_BYTES if knobs.get("optimizer_bf16") else OPTIMIZER_BYTES
    sps = _choices(sequence_parallel, (False, True), "sequence_parallel")
    zeros = _choices(zero, (0, 1, 2, 3), "zero")
    stacks = stacks_for(c, stack, zero=zero, cp=cp)
    if zero is not None and pp is not None:  # a given ZeRO stage no stack runs with the given pp: the
        _plan_check(stacks, pp=pp, zero=zero)  # plan's own refusal, not "no plan fits"
    if any(v is not None for v in knobs.values()):
        stacks = [st for st in stacks if _knob_variants(st, c.fp8, True, 1, knobs, {})] or stacks
    variants: dict = {}
    regime_of: dict = {}

    def regime(st, z, rc, sp, t, x, p, b):
        """The validated regime's name of such a plan, or None (memoised: pure; every other field
        of its Features, a mixture of experts' ``experts`` included, is fixed for the search, and
        none depends on ep, etp or the expert load)."""
        rkey = (st.name, z, rc, sp, t, x, p, b)
        name = regime_of.get(rkey, False)
        if name is False:
            name = regime_of[rkey] = validated_regime(Features(
                st.name, zero_class(z), c.generation, c.attention, c.precision, rc, sp, t, x, p,
                seq, b * seq / x, gpus, c.params, c.moe is not None))
        return name

    def some_regime(sts, z, t, x, p, b):
        """A validated regime some plan of these stacks, ZeRO stage, layout and micro-batch falls
        in (any recompute, any sequence parallelism), or None."""
        for st in sts:
            for rc in recomputes:
                for sp in (sps if t > 1 else (False,)):
                    name = regime(st, z, rc, sp, t, x, p, b)
                    if name is not None:
                        return name
        return None

    validatable: dict = {}

    def may_validate(t, x, p) -> bool:
        hit = validatable.get((t, x, p))
        if hit is None:
            hit = validatable[(t, x, p)] = layout_may_validate(c, stacks, t, x, p)
        return hit

    any_cp = any(cp_runs(c, st) for st in stacks)
    t0 = time.perf_counter()
    stats = {"evaluations": 0, "pruned_memory": 0, "pruned_compute": 0, "parallel_layouts": 0}
    best = None  # (step_s, plan, evaluation)
    valid = None  # the same, for the fastest plan inside a validated regime
    smallest = None  # (bytes, plan) of the least memory seen, to explain a failure
    cap = c.capacity_bytes
    kv = c.kv
    tps = [t for t in divisors(gpus) if model.heads % t == 0 and kv % t == 0 and model.ffn % t == 0]
    if tp is not None:
        tps = [t for t in tps if t == tp]
    layouts = []
    for t in tps:
        if cp is not None:
            cps = [cp] if (gpus // t) % cp == 0 and (cp == 1 or seq % (2 * cp) == 0) else []
        elif any_cp:
            cps = [x for x in divisors(gpus // t) if x == 1 or (x <= MAX_CP and seq % (2 * x) == 0)]
        else:
            cps = [1]
        for x in cps:
            rest = gpus // (t * x)
            # (a mixture of experts runs on Megatron-Core stacks, which split layers unevenly: any pp
            # up to the layer count; a dense model pp | layers, or the edge-balanced split of the
            # stacks with uneven stages, wsim.gpu.stages)
            pps = [p for p in divisors(rest) if batch % (rest // p) == 0
                   and (model.layers % p == 0 or (c.moe is not None and p <= model.layers)
                        or (c.moe is None and edge_balanced(model.layers, p)
                            and any(st.uneven_stages for st in stacks)))]
            if pp is not None:
                pps = [p for p in pps if p == pp]
            for p in pps:
                layouts.append((compute_lower_bound_s(c, t, p, rest // p, x), t, x, p))
    # branch and bound: the layouts with the smallest lower bound first, so that a fast plan is found
    # early and the rest are cut by their bound (exact: a layout is skipped only when no plan of it
    # can beat the best found; the brute-force test in tests/gpu/test_gpu_search.py checks it)
    layouts.sort()
    stats["parallel_layouts"] = len(layouts)
    for i, (bound, t, x, p) in enumerate(layouts):
        d = gpus // (t * x * p)
        if best is not None and bound >= best[0]:
            # no plan of this layout can be the best; it may still hold the fastest validated plan
            # (the report's validated alternative) unless that one is already faster than its bound
            if valid is not None and bound >= valid[0]:
                stats["pruned_compute"] += len(layouts) - i  # sorted: every later bound is larger
                break
            if not may_validate(t, x, p):
                stats["pruned_compute"] += 1
                continue
        L = -(-model.layers // p)  # the fullest stage (uneven stages: a mixture of experts)
        local = batch // d
        by_zero: dict = {}
        for st in stacks:
            if (p > 1 and not st.pipeline) or (x > 1 and not cp_runs(c, st)) \
                    or (model.layers % p and not st.uneven_stages):
                continue
            zs = [z for z in zeros if z in st.zero_stages
                  and (z < 2 or p == 1 or (z == 2 and st.zero2_pipeline))
                  and (z < 2 or c.moe is None)]  # experts: ZeRO-2/3 not modelled
            if d * x == 1:
                zs = zs[:1]  # nothing to shard: every ZeRO stage is the same plan
            for z in zs:
                by_zero.setdefault(z, []).append(st)
        for z, sts in by_zero.items():
            lb = states_lower_bound(c, t, p, d, z, x, optimizer_bytes=ob_min)
            if lb > cap:
                stats["pruned_memory"] += 1
                if smallest is None or lb < smallest[0]:
                    smallest = (lb, (t, x, p, d, z))
                continue
            tries = list(_with_experts(sts, expert_layouts, t, x * d, sps))
            for b in divisors(local):
                m = local // b
                if best is not None and _cut(step_lower_bound_s(c, t, p, d, b, x), best, valid,
                                             lambda: some_regime(sts, z, t, x, p, b)):
                    stats["pruned_compute"] += 1
                    continue
                for st, (e, et, sparse) in tries:
                    if sparse is not None:
                        elb = lb + expert_states_lower_bound(c, t, p, d, z, x, e, et, ob_min)
                        if elb > cap:
                            stats["pruned_memory"] += 1
                            if smallest is None or elb < smallest[0]:
                                smallest = (elb, (t, x, p, d, z))
                            continue
                        if best is not None and _cut(step_lower_bound_s(c, t, p, d, b, x, sparse), best,
                                                     valid, lambda: some_regime((st,), z, t, x, p, b)):
                            stats["pruned_compute"] += 1
                            continue
                    vs = [v for v in divisors(L) if v == 1 or m % p == 0] \
                        if (p > 1 and st.interleave) else [1]
                    sp_choices = (sps if t > 1 else (False,)) if sparse is None or t == 1 \
                        else tuple(x_ for x_ in sps if x_)  # experts with tp > 1 need SP
                    sets = searched_sets if "recompute_modules" in st.knobs else ()
                    for sp in sp_choices:
                      for kn0 in _knob_variants(st, c.fp8, sp, z, knobs, variants):
                        # (recompute, its options): selective once per module set searched
                        choices = [(rc, kn0._replace(recompute_modules=ms))
                                   for rc in recomputes
                                   for ms in (sets if rc == "selective" and sets
                                              else (kn0.recompute_modules,))]
                        # every recompute choice of a plan bounded by its cost without the
                        # pipeline sends: if none can be the best plan or the best validated plan
                        # (nor, so, change which later ones are tried), skip them (exact); the
                        # bound falls with the interleave (the bubble), so the largest bounds all
                        # (computed when first asked: a selective recompute has up to 6 module
                        # sets, and most plans are cut by the first choice's bound or by memory)
                        use_bounds = best is not None
                        bound_of: dict = {}

                        def bounds(j):
                            hit = bound_of.get(j)
                            if hit is None:
                                rc_j, kn_j = choices[j]
                                hit = bound_of[j] = plan_lower_bounds_s(
                                    c, t, p, d, b, vs, rc_j, sp, z, x, st, kn_j, sparse)
                            return hit

                        def cut(i):
                            return use_bounds and best is not None and all(
                                _cut(bounds(j)[i], best, valid,
                                     lambda: regime(st, z, rc, sp, t, x, p, b))
                                for j, (rc, _) in enumerate(choices))
                        if len(vs) > 1 and cut(-1):
                            stats["pruned_compute"] += len(vs)
                            continue
                        for i, v in enumerate(vs):
                          if cut(i):
                              stats["pruned_compute"] += 1
                              continue
                          # each recompute choice on its own bound: recomputing more is not
                          # always slower in the model (tests/gpu/test_gpu_search.py), so a fitting
                          # cheaper choice does not rule out a later one
                          union_fits = None  # does the selective set of every module fit?
                          for j, (rc, kn) in enumerate(choices):
                                if rc == "selective" and len(sets) > 1:
                                    # each module frees memory, so no set fits where the union
                                    # of them all does not (exact; tests/gpu/test_gpu_search.py)
                                    if union_fits is None:
                                        top = evaluate(c, t, p, d, b, v, rc, sp, z, x, st,
                                                       kn._replace(recompute_modules=sets[-1]),
                                                       sparse)
                                        stats["evaluations"] += 1
                                        union_fits = top.memory.total_bytes <= cap
                                    if not union_fits:
                                        stats["pruned_memory"] += 1
                                        continue
                                if use_bounds and _cut(
                                        bounds(j)[i], best, valid,
                                        lambda: regime(st, z, rc, sp, t, x, p, b)):
                                    stats["pruned_compute"] += 1
                                    continue
                                if kn.cpu_offload_layers and not offload_runs(p, rc, L, kn):
                                    continue  # a given offload runs only with pp 1, no recompute
                                ev = evaluate(c, t, p, d, b, v, rc, sp, z, x, st, kn, sparse)
                                stats["evaluations"] += 1
                                mem = ev.memory.total_bytes
                                if mem > cap:
                                    # no recompute and too full: offload the fewest layers that
                                    # make it fit, where the stack can (a choice of the search;
                                    # the offload only adds time, so every bound above holds)
                                    okn = offload_to_fit(c, st, kn, knobs, p, rc, L, b, x, t, sp,
                                                         mem - cap, sparse)
                                    if okn is not None:
                                        ev = evaluate(c, t, p, d, b, v, rc, sp, z, x, st, okn,
                                                      sparse)
                                        stats["evaluations"] += 1
                                        mem = ev.memory.total_bytes
                                if mem > cap:
                                    if smallest is None or mem < smallest[0]:
                                        smallest = (mem, (t, x, p, d, z))
                                    continue
                                key = (t, p, d, b, v, rc, sp, z, x, st.name, ev.knobs, e, et)
                                if best is None or ev.step_s < best[0]:
                                    best = (ev.step_s, key, ev)
                                if valid is None or ev.step_s < valid[0]:
                                    name = regime(st, z, rc, sp, t, x, p, b)
                                    if name is not None:
                                        valid = (ev.step_s, key, ev, name)
    stats["wall_s"] = time.perf_counter() - t0
    if best is None:
        raise ConfigError(_nothing_fits(model, c, stats, smallest, gpus, batch))
    stats["evaluations_per_s"] = stats["evaluations"] / stats["wall_s"] if stats["wall_s"] else 0.0
    moe_extra = dict(moe_capacity_factor=moe_capacity_factor, moe_imbalance=moe_imbalance,
                     moe_ep_overlap=moe_ep_overlap)
    plan = _plan(best[1], moe_extra)
    if valid is not None and valid[1] != best[1]:
        stats["validated_alternative"] = {
            "plan": _plan(valid[1], moe_extra).to_dict(), "regime": valid[3], "step_time_s": valid[0],
            "model_tflops_per_gpu": c.model_flops / valid[0] / gpus / 1e12,
            "memory_per_gpu_bytes": valid[2].memory.total_bytes,
            "slower_than_best": valid[0] / best[0] - 1}
    chosen = ["tp", "pp", "dp", "micro_batch", "interleave"] + (
        [n for n, val in (("ep", ep), ("etp", etp)) if val is None] if c.moe is not None else []) + [
        n for n, val in (("cp", cp), ("recompute", recompute), ("sequence_parallel", sequence_parallel),
                         ("zero", zero), ("stack", stack)) if val is None] + (
        ["recompute_modules"] if plan.recompute == "selective" and searched_sets
        and "recompute_modules" in STACKS[plan.stack].knobs else [])
    return build_report(c, plan, best[2], chosen=chosen, search=stats, regime=classify(c, plan))


def _cut(bound: float, best, valid, regime) -> bool:
    """A plan whose step time is at least ``bound`` can be neither the best plan nor (when its
    ``regime()`` is validated) the best validated one."""
    if bound < best[0]:
        return False
    if valid is not None and bound >= valid[0]:
        return True
    return regime() is None


def _plan(key, moe_extra: dict) -> Plan:
    t, p, d, b, v, rc, sp, z, x, stn, kn, e, et = key
    return Plan(tp=t, pp=p, dp=d, micro_batch=b, interleave=v, recompute=rc, sequence_parallel=sp,
                zero=z, cp=x, stack=stn, **kn._asdict(), ep=e, etp=et,
                **(moe_extra if et is not None else {}))


def _expert_layouts(model, ep, etp, capacity, imbalance, ep_overlap):
    """None for a dense model (after checking that no expert option was given), else the given
    or searchable (ep, etp) and the load (``wsim.gpu.moe.load``)."""
    if not model.experts:
        if ep not in (None, 1) or etp is not None or capacity is not None or ep_overlap \
                or imbalance != 1.0:
            Plan(ep=1 if ep is None else ep, etp=etp, moe_capacity_factor=capacity,
                 moe_imbalance=imbalance, moe_ep_overlap=ep_overlap,
                 stack="megatron-core")  # the values' own checks first
            raise ConfigError(f"model {model.name!r} has no experts: ep {ep}, etp {etp}, "
                              "moe_capacity_factor, moe_imbalance and moe_ep_overlap need a "
                              "mixture-of-experts model; drop them")
        return None
    Plan(ep=1 if ep is None else ep, etp=etp, moe_capacity_factor=capacity, moe_imbalance=imbalance,
         moe_ep_overlap=ep_overlap, stack="megatron-core")  # type and range checks of the given values
    eps = [ep] if ep is not None else divisors(model.experts)
    if ep is not None and model.experts % ep:
        raise ConfigError(f"ep {ep} does not divide the model's {model.experts} experts; allowed "
                          f"ep: {', '.join(map(str, divisors(model.experts)))}")
    return eps, etp, (moe_load(imbalance, capacity), Dispatch(ep_overlap)), model.expert_ffn


def _with_experts(stacks, layouts, tp: int, cp_dp: int, sps):
    """(stack, (ep, etp, evaluate's moe tuple)) to try: for a dense model every stack once with
    (1, None, None); for a mixture of experts the stacks with expert parallelism and every
    (ep, etp) that folds into tp x cp x dp (and divides the experts' FFN)."""
    if layouts is None:
        for st in stacks:
            yield st, (1, None, None)
        return
    eps, etp, ld, ffn = layouts
    ets = [etp] if etp is not None else sorted(x for x in {1, tp} if ffn % x == 0)
    for st in stacks:
        if not st.expert_parallel:
            continue
        for et in ets:
            for e in eps:
                if (tp * cp_dp) % (e * et) == 0:
                    yield st, (e, et, (e, et) + ld)


def _plan_check(stacks, **fields) -> None:
    """Raise the first stack's refusal of a Plan with ``fields`` unless some stack accepts it."""
    errors = []
    for st in stacks:
        try:
            Plan(stack=st.name, **fields)
            return
        except ConfigError as exc:
            errors.append(exc)
    if errors:
        raise errors[0]


def _knob_variants(st, fp8: bool, sp: bool, zero: int, given: dict, cache: dict) -> tuple:
    """The option sets to try: the stack's defaults (with what was given), and every option the
    stack has turned on where the plan can use it (each is never slower in the cost model; the
    search still evaluates both, so that a stack's defaults stay visible). () if the given options
    cannot run on this stack."""
    key = (st.name, sp, zero)
    hit = cache.get(key)
    if hit is not None:
        return hit
    try:
        base = resolve(st, fp8=fp8, sp=sp, zero=zero, given=given)
    except ConfigError:
        cache[key] = ()
        return ()
    usable = {"grad_reduce_fp32": False, "tp_comm_overlap": sp, "cuda_graphs": True,
              "fp8_param_gather": fp8 and zero in (1, 3), "p2p_overlap": True,
              "cpu_offload_layers": 0, "recompute_modules": None,  # (module sets: not searched)
              # the PyTorch version a run uses, not a tuning choice: the stack's default
              "recompute_early_stop": None,
              "optimizer_bf16": None,  # a numerics choice: only when asked
              # the training objective and the layout (wsim.gpu.mtp): fixed plans only
              "mtp_layers": None, "last_stage_layers": None}
    on = dict(given)
    for n in st.knobs:
        if given.get(n) is None:
            on[n] = usable[n]
    try:
        best = resolve(st, fp8=fp8, sp=sp, zero=zero, given=on)
    except ConfigError:
        best = base
    out = (base,) if best == base else (base, best)
    cache[key] = out
    return out


def _nothing_fits(model, c, stats, smallest, gpus, batch) -> str:
    if stats["parallel_layouts"] == 0:
        return (f"search: no tp x cp x pp x dp = {gpus} layout is possible for {model.name}: tp must "
                f"divide {model.heads} heads, pp the {model.layers} layers, and dp = gpus/(tp x cp x "
                f"pp) the batch {batch}; change --gpus or --batch")
    need = f"{smallest[0] / GIB:.1f} GiB" if smallest else "more"
    where = ""
    if smallest:
        t, x, p, d, z = smallest[1]
        where = f" (least: tp {t} x cp {x} x pp {p} x dp {d}, zero {z})"
    return (f"search: no plan of {model.name} fits in {c.capacity_bytes / GIB:.0f} GiB per "
            f"{c.gpu.name} on {gpus} GPUs with batch {batch}: the smallest needs {need} per GPU{where}; "
            "use more GPUs, a GPU with more memory, a smaller batch, --attention flash, or allow "
            "ZeRO/recompute")

