"""``wsim gpu``: a GPU cluster's training step by analytical cost model (``wsim.gpu``)."""

from __future__ import annotations

import argparse

from wsim.commands.common import add_json_arg, add_model_args, int_or_word, model_from_args
from wsim.errors import ConfigError
from wsim.gpu import ATTENTION, GPUS, PRECISION, RECOMPUTE, STACKS, estimate, search
from wsim.gpu.knobs import KNOBS
from wsim.gpu.plan import MOE_DISPATCHERS
from wsim.gpu.specs import ALIASES, FABRICS

GIB = 2**30


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "gpu", help="GPU cluster step time by cost model (Megatron, DeepSpeed, FSDP)",
        description="Step time, TFLOP/s and memory per GPU of a tensor/context/pipeline/data-parallel "
                    "plan; --search finds the fastest plan that fits and says which validated regime "
                    "of the cost model it falls in.")
    add_model_args(p)
    p.add_argument("--seq", type=int, default=2048, help="sequence length (default 2048)")
    p.add_argument("--batch", type=int, required=True, help="global batch, in sequences")
    p.add_argument("--gpus", type=int, required=True, help="number of GPUs")
    p.add_argument("--gpu", default="a100-80gb", choices=sorted(GPUS) + sorted(ALIASES))
    p.add_argument("--tp", type=int, help="tensor-parallel size (default 1; searched with --search)")
    p.add_argument("--pp", type=int, help="pipeline-parallel size (default 1; searched with --search)")
    p.add_argument("--cp", type=int, help="context-parallel size (default 1; searched with --search; > 1 needs --attention flash)")
    p.add_argument("--ep", type=int, help="expert-parallel size, a mixture of experts (default 1; "
                   "searched with --search)")
    p.add_argument("--etp", type=int, help="expert tensor-parallel size (default: tp, as Megatron; "
                   "--search tries 1 and tp)")
    p.add_argument("--moe-capacity-factor", type=_float, metavar="F",
                   help="expert capacity factor; tokens beyond it dropped (default: dropless)")
    p.add_argument("--moe-imbalance", type=_float, default=1.0, metavar="X",
                   help="busiest expert rank's tokens over the mean, measured (default 1: uniform)")
    p.add_argument("--moe-ep-overlap", action="store_true", default=False,
                   help="expert-parallel all-to-alls under another micro-batch's compute "
                        "(Megatron-Core --overlap-moe-expert-parallel-comm; DualPipe)")
    p.add_argument("--moe-pad-to-capacity", action="store_true", default=False,
                   help="pad every expert to its capacity (Megatron-Core "
                        "--moe-pad-expert-input-to-capacity; needs --moe-capacity-factor; no --search)")
    p.add_argument("--moe-max-nodes", type=int, metavar="M",
                   help="node-limited routing: a token's experts on at most M nodes, reached once "
                        "each over the network (DeepSeek-V3; no --search)")
    p.add_argument("--moe-fp8-dispatch", action="store_true", default=False,
                   help="dispatch in FP8, combine in BF16 (DeepSeek-V3; --precision fp8; no --search)")
    p.add_argument("--moe-dispatcher", choices=MOE_DISPATCHERS, default="alltoall",
                   help="token dispatcher: alltoall (Megatron-Core's default) or flex (DeepEP / "
                        "HybridEP); no --search")
    p.add_argument("--moe-router-graphs", action="store_true", default=False,
                   help="router and dispatcher preprocessing in CUDA graphs (Transformer Engine "
                        "--cuda-graph-scope moe_router moe_preprocess); no --search")
    p.add_argument("--mtp-layers", type=int, default=0, metavar="D",
                   help="multi-token-prediction modules on the last stage (Megatron-Core "
                        "--mtp-num-layers; DeepSeek-V3's D = 1; default 0; no --search)")
    p.add_argument("--last-stage-layers", type=int, metavar="N",
                   help="transformer layers on the last pipeline stage, the rest split evenly "
                        "(Megatron-Core --decoder-last-pipeline-num-layers; default: the even "
                        "split; no --search)")
    p.add_argument("--search", action="store_true", help="find the fastest plan that fits")
    p.add_argument("--micro-batch", default="auto", help="sequences per micro-batch, or auto")
    p.add_argument("--interleave", type=int, help="model chunks per stage (default: best that fits)")
    p.add_argument("--recompute", choices=RECOMPUTE,
                   help="activation recompute (default full; searched with --search)")
    p.add_argument("--recompute-modules", metavar="A,B",
                   help="the modules --recompute selective reruns (Megatron-Core "
                        "--recompute-modules): core_attn (default), mla_up_proj, layernorm, "
                        "moe_act, mlp; searched with --search unless given")
    p.add_argument("--sequence-parallel", action="store_true", default=None,
                   help="Megatron sequence parallelism (searched with --search unless given)")
    p.add_argument("--zero", type=int, choices=(0, 1, 2, 3),
                   help="ZeRO stage / FSDP (3) (default 0; searched with --search)")
    p.add_argument("--distributed-optimizer", action="store_true",
                   help="Megatron's distributed optimizer: --zero 1 on a Megatron stack")
    p.add_argument("--stack", choices=tuple(STACKS),
                   help="software stack (default: the fastest that runs the plan)")
    p.add_argument("--attention", choices=ATTENTION, default="eager",
                   help="eager (s x s scores stored) or flash (FlashAttention-2); default eager")
    p.add_argument("--precision", choices=PRECISION, default="bf16",
                   help="GEMM precision: bf16, or fp8 (Transformer Engine; H100/H200/B200)")
    p.add_argument("--dropout", type=_float, metavar="P",
                   help="dropout probability (0 = none); default: the model's own (zoo / config)")
    p.add_argument("--nic-gbit-s", type=_float, metavar="GBIT_S",
                   help="each GPU's own NIC, Gb/s per direction (default: the GPU preset's node)")
    p.add_argument("--nvlink-gbyte-s", type=_float, metavar="GBYTE_S",
                   help="NVLink per GPU, GB/s per direction (default: the GPU preset's)")
    for flag, text in (
            ("tp-comm-overlap", "tensor-parallel communication overlapped with the GEMMs "
                                "(Transformer Engine userbuffers; needs --sequence-parallel)"),
            ("grad-reduce-fp32", "fp32 gradient buffer and data-parallel reduction (off: bf16)"),
            ("fp8-param-gather", "weights kept in FP8 only and all-gathered in FP8 (--precision "
                                 "fp8 with --zero 1 or 3)"),
            ("cuda-graphs", "replay each block's kernels from a CUDA graph (no host launch floor)"),
            ("p2p-overlap", "pipeline sends under the next chunk's compute (interleaved schedule)"),
            ("recompute-early-stop", "full recompute stops before each block's MLP down "
                                     "projection (PyTorch 2.1+ non-reentrant checkpoint; stack fsdp)"),
            ("optimizer-bf16", "the distributed optimizer's master weights and Adam moments in "
                               "bf16 (6 bytes a parameter, not 12; --zero 1, stack megatron-core "
                               "or nemo; never chosen by --search)")):
        p.add_argument(f"--{flag}", action=argparse.BooleanOptionalAction, default=None,
                       help=f"{text}; default: the stack's")
    p.add_argument("--cpu-offload-layers", type=int, metavar="N",
                   help="offload the saved activations of the first N layers to host memory "
                        "(Megatron-Core cpu_offloading; pp 1, --recompute none; default 0; "
                        "--search offloads the fewest layers that fit where it can)")
    p.add_argument("--fabric", choices=FABRICS,
                   help="scale-out network: infiniband or roce (default: the GPU preset's, infiniband)")
    p.add_argument("--allow-oom", action="store_true",
                   help="report a plan that does not fit instead of failing")
    add_json_arg(p)
    p.set_defaults(func=run, human=human)


def _options(args: argparse.Namespace) -> dict:
    zero, stack = args.zero, args.stack
    if args.distributed_optimizer:
        if zero not in (None, 1):
            raise ConfigError(f"--distributed-optimizer is ZeRO-1; it contradicts --zero {zero}")
        if stack is not None and not stack.startswith("megatron"):
            raise ConfigError(f"--distributed-optimizer is Megatron's; it contradicts --stack {stack}")
        zero, stack = 1, stack or "megatron-core"
    nic = None if args.nic_gbit_s is None else args.nic_gbit_s * 1e9 / 8
    nvlink = None if args.nvlink_gbyte_s is None else args.nvlink_gbyte_s * 1e9
    for flag, value in (("--nic-gbit-s", args.nic_gbit_s), ("--nvlink-gbyte-s", args.nvlink_gbyte_s)):
        if value is not None and not 0 < value < float("inf"):
            raise ConfigError(f"{flag} must be a positive number, got {value!r}")
    knobs = {n: getattr(args, n) for n in KNOBS if getattr(args, n) is not None}
    return dict(zero=zero, stack=stack, attention=args.attention, precision=args.precision, **knobs,
                etp=args.etp, moe_capacity_factor=args.moe_capacity_factor,
                moe_imbalance=args.moe_imbalance, moe_ep_overlap=args.moe_ep_overlap,
                dropout=args.dropout, nic_bytes_per_s=nic, nvlink_bytes_per_s=nvlink,
                fabric=args.fabric)


def _given(size: int | None) -> int:
    """A parallel size as given (0 and negatives are refused by the plan, not read as 1), else 1."""
    return 1 if size is None else size


def run(args: argparse.Namespace) -> dict:
    model = model_from_args(args, seq=args.seq)
    opts = _options(args)
    # nothing asked for is dropped: the modules mean something under selective recompute only
    # (Megatron-Core reads --recompute-modules with --recompute-granularity selective)
    rc = args.recompute if args.search else (args.recompute or "full")
    if args.recompute_modules is not None and rc not in (None, "selective"):
        raise ConfigError(f"--recompute-modules applies to --recompute selective only; the plan "
                          f"recomputes {rc!r} (add --recompute selective or drop --recompute-modules)")
    if args.recompute_early_stop and rc not in (None, "full"):
        raise ConfigError(f"--recompute-early-stop applies to --recompute full only; the plan "
                          f"recomputes {rc!r} (add --recompute full or drop --recompute-early-stop)")
    if args.search:
        if args.micro_batch != "auto" or args.interleave is not None:
            raise ConfigError("--search chooses --micro-batch and --interleave itself; drop them")
        for flag, given in (("--moe-pad-to-capacity", args.moe_pad_to_capacity),
                            ("--moe-max-nodes", args.moe_max_nodes is not None),
                            ("--moe-fp8-dispatch", args.moe_fp8_dispatch),
                            ("--moe-dispatcher", args.moe_dispatcher != "alltoall"),
                            ("--moe-router-graphs", args.moe_router_graphs),
                            ("--mtp-layers", args.mtp_layers != 0),
                            ("--last-stage-layers", args.last_stage_layers is not None)):
            if given:
                raise ConfigError(f"{flag} is modelled for a given plan only; drop --search or {flag}")
        report = search(model, seq=args.seq, batch=args.batch, gpus=args.gpus, gpu=args.gpu,
                        tp=args.tp, pp=args.pp, cp=args.cp, ep=args.ep, recompute=args.recompute,
                        sequence_parallel=args.sequence_parallel, **opts)
    else:
        opts["zero"] = opts["zero"] or 0
        report = estimate(model, seq=args.seq, batch=args.batch, gpus=args.gpus, gpu=args.gpu,
                          tp=_given(args.tp), pp=_given(args.pp), cp=_given(args.cp), ep=_given(args.ep),
                          micro_batch=int_or_word(args.micro_batch, "--micro-batch", ("auto",)),
                          interleave=args.interleave,
                          recompute=args.recompute or "full",
                          sequence_parallel=bool(args.sequence_parallel),
                          allow_oom=args.allow_oom, moe_pad_to_capacity=args.moe_pad_to_capacity,
                          moe_max_nodes=args.moe_max_nodes, moe_fp8_dispatch=args.moe_fp8_dispatch,
                          moe_dispatcher=args.moe_dispatcher,
                          moe_router_graphs=args.moe_router_graphs, mtp_layers=args.mtp_layers,
                          last_stage_layers=args.last_stage_layers, **opts)
    return report.to_dict()


def _regime_lines(reg: dict) -> list[str]:
    if not reg:
        return []
    if reg.get("status") == "extrapolated":
        lines = ["regime: OUTSIDE every validated regime (an extrapolation of the cost model)"]
        if reg.get("nearest"):
            lines.append(f"  nearest: {reg['nearest']}; outside because: "
                         + "; ".join(reg.get("outside_because", [])))
        return lines
    word = "validated" if reg.get("validated") else "CHECKED, NOT WITHIN 15%"
    return [f"regime: {word}: {reg['name']}, {reg['rows']} published rows, mean error "
            f"{100 * reg['mean_abs_error']:.1f}%, worst {100 * reg['worst_error']:+.1f}%"]


def _experts(p: dict) -> str:
    """The expert layout of a mixture of experts (etp x ep x edp over the same GPUs)."""
    if p.get("etp") is None:
        return ""
    edp = p["tp"] * p["cp"] * p["dp"] // (p["ep"] * p["etp"])
    cap = p.get("moe_capacity_factor")
    return (f"; experts etp {p['etp']} x ep {p['ep']} x edp {edp}"
            + (f", capacity factor {cap:g}" if cap is not None else ", dropless")
            + (f", imbalance {p['moe_imbalance']:g}" if p.get("moe_imbalance", 1.0) != 1.0 else "")
            + (", all-to-all overlapped" if p.get("moe_ep_overlap") else "")
            + (", padded to capacity" if p.get("moe_pad_to_capacity") else "")
            + (f", at most {p['moe_max_nodes']} nodes a token" if p.get("moe_max_nodes") else "")
            + (", FP8 dispatch" if p.get("moe_fp8_dispatch") else "")
            + (", flex dispatcher" if p.get("moe_dispatcher") == "flex" else "")
            + (", router in CUDA graphs" if p.get("moe_router_graphs") else ""))


def _bottleneck(r: dict) -> str:
    """The largest term of the step time breakdown."""
    key, value = max(r["breakdown"].items(), key=lambda kv: kv[1])
    return f"bottleneck: {key[:-2]} ({100 * value / r['step_time_s']:.0f}% of the step)"


def human(r: dict) -> str:
    p = r["plan"]
    chosen = f" (chosen: {', '.join(p['chosen'])})" if p["chosen"] else ""
    net = r["network"]
    lines = [
        f"{r['model']} on {r['gpus']} x {r['gpu']}, batch {r['batch']} x {r['seq']}, "
        f"{r['attention']} attention, {r['precision']}, dropout {'on' if r['dropout'] else 'off'}",
        f"network: NIC {8 * net['nic_bytes_per_s'] / 1e9:.0f} Gb/s per GPU, NVLink "
        f"{net['nvlink_bytes_per_s'] / 1e9:.0f} GB/s per direction, {net['gpus_per_node']} GPUs per "
        f"NVLink domain, {net.get('fabric', 'infiniband')}",
        f"plan: tp {p['tp']} x cp {p['cp']} x pp {p['pp']} x dp {p['dp']}{_experts(p)}, micro-batch "
        f"{p['micro_batch']}, interleave {p['interleave']}, recompute {p['recompute']}, "
        f"sequence-parallel {'on' if p['sequence_parallel'] else 'off'}, zero {p['zero']}, "
        f"stack {p['stack']}{chosen}",
        "options: " + ", ".join(f"{n.replace('_', '-')} " + (
            str(p.get(n) or 0) if n == "cpu_offload_layers"
            else ",".join(p.get(n) or ()) if n == "recompute_modules"
            else ('on' if p.get(n) else 'off'))
                                for n in KNOBS),
        *_regime_lines(r.get("regime", {})),
        f"step time       {r['step_time_s']:10.3f} s   ({r['tokens_per_s']:,.0f} tokens/s)",
        f"model TFLOP/s   {r['model_tflops_per_gpu']:10.1f} per GPU  (MFU {100 * r['mfu']:.1f}%)",
        f"hardware TFLOP/s{r['hardware_tflops_per_gpu']:10.1f} per GPU  (HFU {100 * r['hfu']:.1f}%)",
        f"bubble fraction {r['bubble_fraction']:10.3f}   ({r['micro_batches']} micro-batches)",
        f"memory per GPU  {r['memory_per_gpu_bytes'] / GIB:10.1f} GiB of "
        f"{r['memory_capacity_bytes'] / GIB:.0f}  ({'fits' if r['fits'] else 'DOES NOT FIT'})",
        f"power           {r['power_w'] / 1e3:10.1f} kW  ({r['energy_per_step_j'] / 3.6e6:.3f} kWh per step)",
        "step time breakdown:",
    ]
    for key, value in r["breakdown"].items():
        share = value / r["step_time_s"] if r["step_time_s"] else 0.0
        lines.append(f"  {key[:-2]:<12} {value:10.3f} s  {100 * share:5.1f}%")
    lines.append(_bottleneck(r))
    lines.append("memory breakdown (fullest stage {}):".format(r["memory"]["stage"]))
    for key in ("weights_bytes", "gradients_bytes", "optimizer_bytes", "activations_bytes",
                "reserved_bytes"):
        lines.append(f"  {key[:-6]:<12} {r['memory'][key] / GIB:10.2f} GiB")
    if "search" in r:
        s = r["search"]
        lines.append(f"search: {s['evaluations']} plans evaluated in {s['wall_s']:.2f} s "
                     f"({s['evaluations_per_s']:,.0f}/s), {s['pruned_memory']} subtrees pruned by "
                     f"memory, {s['pruned_compute']} by compute bound")
        alt = s.get("validated_alternative")
        if alt:
            a = alt["plan"]
            lines.append(f"fastest plan inside a validated regime: tp {a['tp']} x cp {a['cp']} x pp "
                         f"{a['pp']} x dp {a['dp']}{_experts(a)}, micro-batch {a['micro_batch']}, interleave "
                         f"{a['interleave']}, recompute {a['recompute']}, zero {a['zero']}, stack "
                         f"{a['stack']}: {alt['step_time_s']:.3f} s ({alt['model_tflops_per_gpu']:.1f} "
                         f"model TFLOP/s per GPU, {100 * alt['slower_than_best']:.1f}% slower), "
                         f"regime {alt['regime']}")
    return "\n".join(lines)
