"""Plot helpers shared by ``wsim sweep`` and ``experiments/``: Agg backend, one style, PNG out.

Every figure has a title, labelled axes with units, and a legend when it has more than one series.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never a window (also on a headless CI box)

import matplotlib.pyplot as plt  # noqa: E402

DPI = 110
# A colour per model size, stable across figures (tab10 order).
COLOURS = plt.get_cmap("tab10").colors

plt.rcParams.update({
    "figure.dpi": DPI, "savefig.dpi": DPI, "axes.grid": True, "grid.alpha": 0.3,
    "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 8, "xtick.labelsize": 9,
    "ytick.labelsize": 9, "svg.hashsalt": "wsim", "path.simplify": False,
})


def figure(rows: int = 1, cols: int = 1, *, width: float = 6.4, height: float = 4.4, **kw):
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols if cols > 1 else width,
                                                  height * rows if rows > 1 else height), **kw)
    return fig, axes


def save(fig, path: str | Path) -> str:
    """Save a PNG (deterministic: no timestamp metadata) and close the figure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, format="png", metadata={"Software": None})
    plt.close(fig)
    return str(path)


def short(model: str) -> str:
    """'cerebras-gpt-1.3b' -> '1.3B'; other names unchanged."""
    if model.startswith("cerebras-gpt-"):
        return model.removeprefix("cerebras-gpt-").upper()
    return model


def log2_axis(ax, top: int, axis: str = "x", bottom: int = 1) -> None:
    """A base-2 log axis labelled bottom ... top in plain numbers (1, 2, 4, ..., top)."""
    ticks = [2**k for k in range(0, max(1, top).bit_length()) if bottom <= 2**k <= top]
    if top not in ticks:
        if ticks and top / ticks[-1] < 1.6:  # too close to label both
            ticks.pop()
        ticks.append(top)
    getattr(ax, f"set_{axis}scale")("log", base=2)
    getattr(ax, f"set_{axis}ticks")(ticks)
    getattr(ax, f"set_{axis}ticklabels")([str(t) for t in ticks])
    getattr(ax, f"set_{axis}ticks")([], minor=True)


def tornado(ax, labels, low, high, base: float, *, xlabel: str, title: str,
            low_label: str = "x0.5", high_label: str = "x2"):
    """A tornado chart: for each input, a bar from ``base`` to its low-setting value (upper half of
    the row) and one to its high-setting value (lower half); widest swing on top."""
    order = sorted(range(len(labels)), key=lambda i: max(abs(low[i] - base), abs(high[i] - base)))
    h = 0.38
    for y, i in enumerate(order):
        for value, dy, colour, label in ((low[i], h / 2, "#4c72b0", low_label),
                                         (high[i], -h / 2, "#dd8452", high_label)):
            ax.barh(y + dy, value - base, left=base, height=h, color=colour,
                    label=label if y == 0 else None)
            if abs(value - base) > 1e-9 * max(1.0, abs(base)):
                ax.annotate(f"{value:.3g}", (value, y + dy), xytext=(3 if value > base else -3, 0),
                            textcoords="offset points", va="center",
                            ha="left" if value > base else "right", fontsize=7)
    ax.axvline(base, color="black", lw=1)
    ax.set_yticks(range(len(order)))
    ax.set_yticklabels([labels[i] for i in order])
    ax.set_ylim(-0.6, len(order) - 0.4)
    ax.margins(x=0.18)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.legend(loc="best")
    ax.grid(axis="y", visible=False)


def sweep_plot(rows: list[dict], path: str | Path, title: str = "wsim sweep") -> str:
    """Tokens/s against systems (CS-2 or GPUs): a colour per model, a line style per device."""
    fig, ax = figure()
    series: dict[tuple, list] = {}
    for r in rows:
        if r.get("status") != "ok":
            continue
        device = r.get("gpu") if r["kind"] == "gpu" else f"CS-2, {r['kind']}"
        n = r["gpus"] if r["kind"] == "gpu" else r["systems"]
        series.setdefault((r["model"], device), []).append((n, r["tokens_per_s"]))
    models = sorted({m for m, _ in series})
    devices = sorted({d for _, d in series}, key=lambda d: (not d.startswith("CS-2"), d))
    styles = ["-", "--", ":", "-."]
    top, bottom = 1, None
    for (model, device), pts in sorted(series.items()):
        pts.sort()
        top = max(top, pts[-1][0])
        bottom = pts[0][0] if bottom is None else min(bottom, pts[0][0])
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3,
                ls=styles[devices.index(device) % len(styles)],
                color=COLOURS[models.index(model) % len(COLOURS)], label=f"{short(model)} on {device}")
    log2_axis(ax, top, "x", bottom=bottom or 1)
    ax.set_yscale("log")
    ax.set_xlabel("systems (CS-2 or GPUs)")
    ax.set_ylabel("throughput (tokens/s)")
    ax.set_title(title)
    if series:
        ax.legend(fontsize=7)
    return save(fig, path)
