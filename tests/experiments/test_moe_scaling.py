"""The MoE study's shape (experiments/moe_scaling.py): what the mechanisms must give, whatever the numbers."""

from experiments import moe_scaling


def test_conventional_batching_loses_throughput_as_sparsity_grows_and_bta_recovers_part():
    rows = moe_scaling.run([1, 4, 16], moe_scaling.QUICK_CLUSTERS)
    for family in moe_scaling.FAMILIES:
        conv = [r for r in rows if r["family"] == family and r["batching"] == "conventional"]
        bta = [r for r in rows if r["family"] == family and r["batching"] == "BTA"]
        tps = [r["tokens_per_s"] for r in sorted(conv, key=lambda r: r["sparsity"])]
        assert tps == sorted(tps, reverse=True) and tps[-1] < 0.5 * tps[0]  # every expert streamed
        # the active parameters stay (3.3B-class, the router h x E aside); the total grows with E
        active = [r["active_params"] for r in conv]
        assert max(active) < 1.01 * min(active)
        assert conv[-1]["params"] > 4 * conv[0]["params"]
        for c, b in zip(sorted(conv, key=lambda r: r["sparsity"]), sorted(bta, key=lambda r: r["sparsity"])):
            assert b["micro_batches"] < c["micro_batches"] and b["tokens_per_s"] > c["tokens_per_s"]
            assert b["tokens_per_expert_product"] > c["tokens_per_expert_product"]
        assert conv[-1]["bound"] == "weight-stream"
