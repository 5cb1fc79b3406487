"""Numerical equivalence: weight-streamed training of a small GPT against standard training.

docs/design.md "Numerical equivalence": the reference is the same model as one ``nn.Module``, the whole
global batch on one device, ``torch.optim.AdamW`` (``wsim.functional.reference.reference_train``);
the weight-streamed run goes through the engine with N CS-2s, tensors riding its events
(``wsim.functional.train.train``). In float64 every parameter must end within 1e-9 of its tensor's
largest magnitude, and losses within 1e-10 relative.

Model: GPT-2 layers (``models.gpt``), 2 layers x 64 hidden, 4 heads, vocabulary 256, sequence 32;
batch 8 on 4 CS-2, 20 AdamW steps (Cerebras-GPT betas (0.9, 0.95), weight decay 0.1, Dey et al.
2023), float64. Data: a learnable toy language (each token's successor is a fixed random
permutation of it, with 10% of tokens replaced by noise), so the loss curve visibly falls.
"""

from __future__ import annotations

from pathlib import Path

from experiments.common import Timer, log, parser, read_csv, write_csv

SEED = 0
CFG = dict(n_layer=2, n_embd=64, n_head=4, vocab_size=256, n_positions=32)
SEQ, BATCH, SYSTEMS, STEPS, LR = 32, 8, 4, 20, 3e-3
OPT = dict(betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
LOSS_TOL, PARAM_TOL = 1e-10, 1e-9  # docs/design.md, float64


def tokens(rows: int, seq: int, vocab: int, seed: int):
    """Rows of seq+1 ids: a permutation chain with 10% noise (deterministic for ``seed``)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(vocab, generator=g)
    out = torch.empty(rows, seq + 1, dtype=torch.int64)
    out[:, 0] = torch.randint(0, vocab, (rows,), generator=g)
    for t in range(1, seq + 1):
        out[:, t] = perm[out[:, t - 1]]
    noise = torch.rand(rows, seq + 1, generator=g) < 0.1
    out[noise] = torch.randint(0, vocab, (int(noise.sum()),), generator=g)
    return out


def run(steps: int) -> tuple[list[dict], list[dict]]:
    import torch

    from models.gpt import GPTConfig, init_weights
    from wsim.functional.reference import reference_train
    from wsim.functional.train import train

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: more threads only contend on a shared box
    try:
        cfg = GPTConfig(**CFG)
        weights = init_weights(cfg, SEED, torch.float64)
        data = tokens(steps * BATCH, SEQ, cfg.vocab_size, SEED)
        streamed = train(cfg, weights, data, systems=SYSTEMS, steps=steps, batch=BATCH, lr=LR,
                         dtype="float64", **OPT)
        ref_losses, ref_weights = reference_train(cfg, weights, data, steps, BATCH, LR, OPT["betas"],
                                                  OPT["eps"], OPT["weight_decay"], torch.float64)
    finally:
        torch.set_num_threads(threads)
    losses = [{"step": k + 1, "loss_streamed": a, "loss_reference": b,
               "relative_difference": abs(a - b) / abs(b)}
              for k, (a, b) in enumerate(zip(streamed.losses, ref_losses))]
    params = []
    for name, ref in ref_weights.items():
        got = streamed.final_weights[name]
        scale = float(ref.abs().max())
        diff = float((got - ref).abs().max())
        params.append({"tensor": name, "numel": ref.numel(), "max_abs_difference": diff,
                       "max_abs_reference": scale, "relative_difference": diff / scale if scale else diff})
    return losses, params


def plot(losses: list[dict], params: list[dict], out: Path) -> str:
    from wsim.studies.plots import figure, save

    fig, (a1, a2) = figure(1, 2, width=6.0, height=4.4)
    steps = [r["step"] for r in losses]
    a1.plot(steps, [r["loss_reference"] for r in losses], "-", lw=3, alpha=0.5,
            label="standard training (one nn.Module, torch AdamW)")
    a1.plot(steps, [r["loss_streamed"] for r in losses], "o--", ms=3,
            label=f"weight streaming through the engine ({SYSTEMS} CS-2)")
    from matplotlib.ticker import MaxNLocator

    a1.xaxis.set_major_locator(MaxNLocator(integer=True))
    a1.set_xlabel("training step")
    a1.set_ylabel("training loss (cross-entropy, nats/token)")
    a1.set_title("Loss curves (float64): on top of each other")
    a1.legend(loc="upper right")
    floor = 1e-18
    vals = [max(floor, p["relative_difference"]) for p in params]
    a2.barh(range(len(params)), vals, color="tab:purple")
    a2.axvline(PARAM_TOL, color="red", ls="--", lw=1, label=f"tolerance {PARAM_TOL:g} (docs/design.md)")
    a2.set_xscale("log")
    a2.set_yticks(range(len(params)))
    a2.set_yticklabels([p["tensor"].removeprefix("transformer.") for p in params], fontsize=6)
    a2.invert_yaxis()
    a2.set_xlabel("max |streamed - reference| / max |reference| (per tensor)")
    a2.set_title(f"Final parameters after {len(losses)} steps")
    a2.legend(loc="lower right")
    return save(fig, out / "equivalence.png")


def main(argv=None) -> list[str]:
    args = parser("equivalence", __doc__).parse_args(argv)
    out = Path(args.out)
    with Timer("equivalence"):
        losses, params = run(4 if args.quick else STEPS)
        paths = [write_csv(out / "equivalence_losses.csv", losses, digits=None),
                 write_csv(out / "equivalence_params.csv", params, digits=None),
                 plot(losses, params, out)]
    log("wrote " + ", ".join(paths))
    return paths


def reading(out: Path) -> str:
    losses = read_csv(Path(out) / "equivalence_losses.csv")
    params = read_csv(Path(out) / "equivalence_params.csv")
    worst = max(params, key=lambda p: p["relative_difference"])
    worst_loss = max(r["relative_difference"] for r in losses)
    ok = worst["relative_difference"] <= PARAM_TOL and worst_loss <= LOSS_TOL
    return "\n".join([
        "## 6. Numerical equivalence", "", "![equivalence](equivalence.png)", "",
        "Data: [equivalence_losses.csv](equivalence_losses.csv), "
        "[equivalence_params.csv](equivalence_params.csv). A 2-layer, 64-wide GPT (vocabulary 256, "
        f"sequence {SEQ}), batch {BATCH} on {SYSTEMS} simulated CS-2, {len(losses)} AdamW steps in "
        "float64, trained by weight streaming through the engine and by standard PyTorch.", "",
        f"Reading: the loss falls from {losses[0]['loss_reference']:.4f} to "
        f"{losses[-1]['loss_reference']:.4f} on both; the largest loss difference is "
        f"{worst_loss:.2g} relative and the largest parameter difference is "
        f"{worst['relative_difference']:.2g} of its tensor's largest magnitude (`{worst['tensor']}`), "
        f"{'within' if ok else 'OUTSIDE'} docs/design.md's float64 tolerances ({LOSS_TOL:g} for losses, "
        f"{PARAM_TOL:g} for parameters): streaming weights layer by layer, summing gradients in "
        "SwarmX and updating in MemoryX is the same computation as standard training, up to "
        "floating-point summation order.", ""])


if __name__ == "__main__":
    main()
