"""The GPU model's memos key on everything that changes the answer: a plan evaluated on a
``Consts`` that has already evaluated many other plans (every memo warm: ``step._stage``,
``step._layer``, a sparse block's delta, ``memory._fixed``, ``dataparallel._collectives``,
``moe.layer``) gives bit for bit what it gives on a fresh one. The plans differ in one input at a
time, each input that the dense or the mixture-of-experts path reads: layout, micro-batch,
interleave, recompute, sequence parallelism, ZeRO, stack, options (activation offloading's layer
count included), and ep, etp, the expert load (imbalance, capacity), the all-to-all overlap and the
dispatch (node limit, FP8, padding, flex dispatcher, router graphs)."""

import itertools

from models import zoo
from wsim.gpu.calibration import STACKS
from wsim.gpu.inputs import make_consts
from wsim.gpu.knobs import resolve
from wsim.gpu.moe import PLAIN, Dispatch, load
from wsim.gpu.regimes import classify_features, features, validated_regime
from wsim.gpu.step import evaluate

FIELDS = ("step_s", "compute_s", "recompute_s", "tp_comm_s", "cp_comm_s", "pp_comm_s",
          "dp_comm_s", "bubble_s", "optimizer_s", "launch_s", "ep_comm_s", "offload_s", "m")


def _answer(ev) -> tuple:
    return tuple(getattr(ev, n) for n in FIELDS) + (ev.knobs, ev.memory)


def _same_on_warm_and_fresh(model, kw, plans) -> int:
    """Each plan (and again in reverse order, so that each also follows its neighbours) on one
    shared Consts, then each on a fresh one."""
    plans = plans + plans[::-1]
    warm = make_consts(model, efficiency=None, **kw)
    got = [_answer(evaluate(warm, *p)) for p in plans]  # one Consts, every memo shared
    for p, g in zip(plans, got):
        assert g == _answer(evaluate(make_consts(model, efficiency=None, **kw), *p)), p
    return len(plans)


def _layouts(gpus, shapes, stacks, zeros):
    for (tp, cp, pp), st, rc, zero in itertools.product(
            shapes, stacks, ("none", "selective", "full"), zeros):
        yield tp, cp, pp, gpus // (tp * cp * pp), STACKS[st], rc, zero


def test_moe_memos_key_on_the_expert_layout_load_and_dispatch():
    kw = dict(seq=1024, batch=32, gpus=16, gpu="h100-80gb", attention="flash")
    plans = []
    for tp, cp, pp, dp, stack, rc, zero in _layouts(
            16, ((1, 1, 2), (2, 1, 2), (2, 2, 1), (1, 2, 4)), ("nemo", "megatron-core"), (0, 1)):
        sp = tp > 1
        for opts in ({}, {"tp_comm_overlap": sp, "cuda_graphs": True}):
            kn = resolve(stack, fp8=False, sp=sp, zero=zero, given=opts)
            for ep, etp in ((1, 1), (2, 1), (4, 1), (2, tp), (8, 1)):
                if (tp * cp * dp) % (ep * etp):
                    continue
                for imbalance, capacity, route in (
                        (1.0, None, PLAIN), (1.5, None, PLAIN), (1.5, 1.2, PLAIN),
                        (1.0, None, Dispatch(overlap=True)), (1.0, 1.2, Dispatch(static=True)),
                        (1.0, None, Dispatch(max_nodes=1)), (1.0, None, Dispatch(fp8=True)),
                        (1.0, None, Dispatch(flex=True)), (1.0, None, Dispatch(router_graphs=True))):
                    moe = (ep, etp, load(imbalance, capacity, route.static), route)
                    for b, v in ((1, 1), (2, 1), (1, 2 if pp > 1 else 1)):
                        plans.append((tp, pp, dp, b, v, rc, sp, zero, cp, stack, kn, moe))
    assert _same_on_warm_and_fresh(zoo.get("mixtral-8x7b"), kw, plans) > 1000


def test_moe_default_expert_layout_is_the_explicit_one():
    c = make_consts(zoo.get("mixtral-8x7b"), seq=1024, batch=32, gpus=16, gpu="h100-80gb",
                    efficiency=None, attention="flash")
    st = STACKS["nemo"]
    kn = resolve(st, fp8=False, sp=True, zero=1)
    a = evaluate(c, 2, 2, 4, 1, 1, "full", True, 1, 1, st, kn, None)
    b = evaluate(make_consts(c.model, seq=1024, batch=32, gpus=16, gpu="h100-80gb",
                             efficiency=None, attention="flash"),
                 2, 2, 4, 1, 1, "full", True, 1, 1, st, kn, (1, 2, 1.0, PLAIN))
    assert _answer(a) == _answer(b)
    # and another layout on the same Consts is not answered from the default's entries
    e = evaluate(c, 2, 2, 4, 1, 1, "full", True, 1, 1, st, kn, (8, 1, 1.0, PLAIN))
    assert e.ep_comm_s > 0.0 and e.step_s != a.step_s


def test_dense_memos_on_a_warm_consts():
    kw = dict(seq=2048, batch=64, gpus=16, gpu="a100-80gb", attention="flash")
    plans = []
    for tp, cp, pp, dp, stack, rc, zero in _layouts(
            16, ((1, 1, 2), (2, 1, 1), (2, 2, 2)), ("megatron", "megatron-core", "nemo", "deepspeed"),
            (0, 1, 2, 3)):
        if zero not in stack.zero_stages or (pp > 1 and (not stack.pipeline or zero >= 2)) \
                or (cp > 1 and not stack.context_parallel):
            continue
        for sp in ((False, True) if tp > 1 else (False,)):
            kns = [resolve(stack, fp8=False, sp=sp, zero=zero)]
            if pp == 1 and rc == "none" and "cpu_offload_layers" in stack.knobs:
                # activation offloading: the layer count is an input of the stage and the memory
                kns += [kns[0]._replace(cpu_offload_layers=n) for n in (3, 12)]
            for kn, (b, v) in itertools.product(
                    kns, ((1, 1), (4, 1), (1, 2 if pp > 1 and stack.interleave else 1))):
                plans.append((tp, pp, dp, b, v, rc, sp, zero, cp, stack, kn))
    assert _same_on_warm_and_fresh(zoo.get("gpt3-1.3b"), kw, plans) > 200


def test_edge_balanced_memos_on_a_warm_consts():
    """6 layers on 4 stages (the edge-balanced split, wsim.gpu.stages) beside 2 stages (even) and
    the stacks with and without uneven stages: the split is read from the layout and the stack,
    both in every memo's key."""
    from models.spec import ModelSpec
    model = ModelSpec(name="six", layers=6, hidden=512, heads=8, vocab=32000)
    kw = dict(seq=1024, batch=64, gpus=8, gpu="a100-80gb", attention="flash")
    plans = []
    for (tp, cp, pp), name, rc in itertools.product(
            ((1, 1, 4), (2, 1, 4), (1, 1, 2)), ("nemo", "megatron", "deepspeed", "megatron-core"),
            ("none", "full")):
        stack = STACKS[name]
        dp = 8 // (tp * cp * pp)
        kn = resolve(stack, fp8=False, sp=False, zero=1)
        for b, v in ((1, 1), (2, 1), (1, 2 if stack.interleave else 1)):
            plans.append((tp, pp, dp, b, v, rc, False, 1, cp, stack, kn))
    assert _same_on_warm_and_fresh(model, kw, plans) > 50


def test_validated_regime_is_what_classify_finds_for_both_kinds():
    """The search's regime lookup (by stack, ZeRO class, generation, attention, precision and kind)
    names the regime ``classify_features`` finds whenever that one is validated: for the
    published dense and MoE rows' plans, and for a mixture of experts' plan read as dense (which
    a dense regime must never validate)."""
    import dataclasses

    from wsim.gpu.validation import current, current_moe
    n = 0
    for p in current() + current_moe():
        row, r = p.row, p.report
        f = features(make_consts(row.model, seq=row.seq, batch=row.batch, gpus=row.gpus,
                                 gpu=row.gpu, efficiency=None, attention=r.attention,
                                 precision=r.precision), r.plan)
        for g in (f, dataclasses.replace(f, experts=not f.experts)):
            reg = classify_features(g)
            assert validated_regime(g) == (reg["name"] if reg["validated"] else None)
            if g.experts:
                assert reg.get("name") is None or reg["conditions"]["experts"]
            n += 1
    assert n > 250
