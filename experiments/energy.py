"""Time to train against energy: the Cerebras-GPT runs on CS-2, CS-3 and the GPU counts that match.

Each Cerebras-GPT model at its published batch, steps and CS-2 count (``wsim.studies.compare.
published_phases``): on CS-2 as published, on as many CS-3 (``--cluster cs3``), and on the smallest
count of A100-80GB, H100-80GB and B200 in wsim's grid whose fastest plan trains as fast as the CS-2
cluster (``wsim.studies.compare``). CS step times: the closed form (within 1% of the engine without
contention; the engine is the figure in sections 1 and 3). Energy = power x time (``wsim.cluster.power``:
systems, MemoryX/SwarmX/input servers and network; GPUs: DGX node power, ``wsim.gpu``, which leaves
out the InfiniBand switches and storage). Cost: energy at the default price table (``wsim.studies.cost``:
U.S. industrial electricity, EIA 2023); no hardware-hour price is published for CS systems, so none
is charged to anyone.
"""

from __future__ import annotations

from pathlib import Path

from experiments.common import CGPT, QUICK_CGPT, Timer, log, parser, progress, read_csv, write_csv
from models import zoo
from wsim.studies.compare import compare, cs2_time_to_train, published_phases
from wsim.studies.cost import PriceTable, cost

GPUS = ("a100-80gb", "h100-80gb", "b200-180gb")
COLUMNS = ["model", "params", "device", "count", "time_to_train_days", "energy_kwh", "energy_usd",
           "power_kw", "regime", "plan"]


def rows_for(name: str) -> list[dict]:
    model = zoo.get(name)
    phases = published_phases(name)
    prices = PriceTable()
    r = compare(model, phases=phases, gpu=GPUS, method="analytic", prices=prices).to_dict()
    c2 = r["cs2"]
    c3 = cs2_time_to_train(model, phases, cluster="cs3", method="analytic")
    c3["cost"] = cost(c3["energy_j"], "cs3", c3["system_hours"], prices)
    counts = "->".join(dict.fromkeys(str(p.systems) for p in phases))
    out = []
    for dev, c in (("CS-2", c2), ("CS-3", c3)):
        out.append({"model": name, "params": model.params, "device": dev, "count": counts,
                    "time_to_train_days": c["time_to_train_s"] / 86400,
                    "energy_kwh": c["cost"]["energy_kwh"], "energy_usd": c["cost"]["energy_usd"],
                    "power_kw": c["phases"][-1]["power_w"] / 1e3, "regime": "", "plan": "data parallel"})
    for g in r["gpu"]:
        if not g.get("matched"):
            continue
        p = g["plan"]
        plan = f"tp{p['tp']} pp{p['pp']} dp{p['dp']}" + (f" cp{p['cp']}" if p.get("cp", 1) > 1 else "")
        out.append({"model": name, "params": model.params, "device": g["gpu"], "count": str(g["gpus"]),
                    "time_to_train_days": g["time_to_train_s"] / 86400, "energy_kwh": g["cost"]["energy_kwh"],
                    "energy_usd": g["cost"]["energy_usd"], "power_kw": g["power_w"] / 1e3,
                    "regime": g["regime"], "plan": plan})
    return out


def plot(rows: list[dict], out: Path) -> str:
    from wsim.studies.plots import COLOURS, figure, save, short

    fig, ax = figure(1, 1, width=7.5, height=5.5)
    markers = {"CS-2": "o", "CS-3": "s", "a100-80gb": "^", "h100-80gb": "v", "b200-180gb": "D"}
    models = list(dict.fromkeys(r["model"] for r in rows))
    for i, m in enumerate(models):
        sel = [r for r in rows if r["model"] == m]
        ax.plot([r["time_to_train_days"] for r in sel], [r["energy_kwh"] for r in sel], ":",
                color=COLOURS[i % len(COLOURS)], lw=0.8)
        for r in sel:
            ax.plot([r["time_to_train_days"]], [r["energy_kwh"]], markers[r["device"]],
                    color=COLOURS[i % len(COLOURS)], mfc="none" if r["device"].startswith("CS") else None)
        ax.annotate(short(m), (sel[0]["time_to_train_days"], sel[0]["energy_kwh"]), xytext=(4, 4),
                    textcoords="offset points", fontsize=7)
    for dev, mk in markers.items():
        ax.plot([], [], mk, color="black", mfc="none" if dev.startswith("CS") else None, ls="none", label=dev)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("time to train (days)")
    ax.set_ylabel("energy to train (kWh)")
    ax.set_title("Cerebras-GPT runs: CS-2 as published, as many CS-3, GPUs that match the CS-2 time")
    ax.legend(loc="upper left", fontsize=8)
    return save(fig, out / "energy.png")


def main(argv=None) -> list[str]:
    args = parser("energy", __doc__).parse_args(argv)
    out = Path(args.out)
    with Timer("energy"):
        rows = [r for m in progress(QUICK_CGPT if args.quick else CGPT, "energy") for r in rows_for(m)]
        paths = [write_csv(out / "energy.csv", rows, COLUMNS), plot(rows, out)]
    log("wrote " + ", ".join(paths))
    return paths


def reading(out: Path) -> str:
    rows = read_csv(Path(out) / "energy.csv")
    lines = ["## 10. Energy and cost to train", "", "![time to train against energy](energy.png)", "",
             "Data: [energy.csv](energy.csv). Closed-form CS step times; each Cerebras-GPT run on CS-2 as "
             "published, on as many CS-3, and on the smallest A100/H100/B200 count in the grid that is "
             "as fast as the CS-2 run. Energy = power x time (CS: systems, servers and network; GPUs: DGX "
             "node power without switches or storage). Electricity at $0.0806/kWh (EIA 2023, U.S. "
             "industrial), IT load only (PUE 1); no hardware price is charged (none is published for CS "
             "systems; `wsim compare --prices` takes your own).", "",
             "| model | device | count | days | energy (MWh) | electricity ($) | power (kW) | GPU regime |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['device']} | {r['count']} | {r['time_to_train_days']:.3g} | "
                     f"{r['energy_kwh'] / 1e3:.3g} | {r['energy_usd']:,.0f} | {r['power_kw']:.4g} | "
                     f"{r['regime'] or ''} |")
    big = [r for r in rows if r["model"] == rows[-1]["model"]]
    cs2 = next(r for r in big if r["device"] == "CS-2")
    cs3 = next(r for r in big if r["device"] == "CS-3")
    gpus = [r for r in big if not r["device"].startswith("CS")]
    lines += ["", f"Reading ({big[0]['model']}): the CS-2 run takes {cs2['time_to_train_days']:.3g} days and "
              f"{cs2['energy_kwh'] / 1e3:.3g} MWh; the same systems count of CS-3 takes "
              f"{cs3['time_to_train_days']:.3g} days and {cs3['energy_kwh'] / 1e3:.3g} MWh (the CS-3 cluster "
              f"draws {cs3['power_kw']:.4g} kW against {cs2['power_kw']:.4g} kW and trains "
              f"{cs2['time_to_train_days'] / cs3['time_to_train_days']:.2f}x faster). "
              + "; ".join(f"{r['count']} x {r['device']} match it in {r['time_to_train_days']:.3g} days with "
                          f"{r['energy_kwh'] / 1e3:.3g} MWh ({r['energy_kwh'] / cs2['energy_kwh']:.2f}x the CS-2 "
                          f"energy, plan {r['regime']})" for r in gpus)
              + f". Power: the CS-2 cluster draws {cs2['power_kw']:.4g} kW in its last phase, the matching "
                "GPU clusters " + ", ".join(f"{r['power_kw']:.4g} kW ({r['device']})" for r in gpus)
              + "; the GPU side leaves out its switches and storage, and every GPU plan here is the "
                "search's fastest, whose regime says how far the GPU model was validated there.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
