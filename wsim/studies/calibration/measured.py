"""Published measurements of GPT and Llama training throughput on CS-2 and CS-3 systems, with sources.

Each row is what a paper printed, converted to samples per second by the stated rule; nothing here
is estimated. ``role`` says how the wafer model uses the row: ``development`` rows are fitted on,
``validation`` rows are only compared with.

Zhang, Parikh, Zhang, Prasanna, "Benchmarking the Performance of Large Language Models on the
Cerebras Wafer Scale Engine", IEEE HPEC 2024, arXiv 2409.00287: one CS-2, sequence 2048, GPT-3
shapes of their Table III (the Cerebras-GPT shapes; 20B: 44 layers, d_model 6144, 64 heads). Their
Table V gives projected hours per Pile epoch (211,043,181 samples) from the measured throughput of
their Fig. 5, so samples/s = 211,043,181 / (hours x 3600). Precision and software release are not
stated. The hours are printed to 3-4 significant figures: the conversion is good to about 0.3%.
"""

from __future__ import annotations

from dataclasses import dataclass

from models import zoo
from models.spec import ModelSpec
from wsim.errors import positive, require

PILE_SAMPLES = 211_043_181  # Zhang et al. 2024, Table V caption: samples in one Pile epoch
ZHANG_2024 = "Zhang et al. 2024 (HPEC, arXiv 2409.00287) Table V"
ROLES = ("development", "validation")

# Zhang et al. Table III: the 20B shape (not a Cerebras-GPT model); vocabulary and FFN as GPT-3.
GPT_20B = ModelSpec(name="gpt-20b-hpec", layers=44, hidden=6144, heads=64, vocab=50257, positions=2048,
                    tied_embeddings=True, dropout=False, source="Zhang et al. 2024 Table III")


@dataclass(frozen=True)
class MeasuredRun:
    """One published throughput: ``samples_per_s`` of ``model`` at ``batch`` x ``seq`` on ``systems``."""

    label: str
    model: ModelSpec
    systems: int
    batch: int
    seq: int
    samples_per_s: float
    role: str
    source: str
    printed: str  # the figure as the source printed it
    release: str = "not stated"  # the Cerebras software release, where the source names it
    cluster: str = "cs2"  # the preset of the system generation it ran on (wsim.cluster.generations)
    note: str = ""  # how a figure not printed by the source was derived
    # sequences per micro-batch ("lane") where the run's log states the compiler's choice; None: not stated
    logged_seqs_per_micro_batch: int | None = None

    @property
    def family(self) -> str:
        """The model family (``ModelSpec.family``: gpt2 for the GPT-2/GPT-3 shapes, gptj, llama)."""
        return self.model.family

    @property
    def generation(self) -> str:
        from wsim.cluster import generations

        return generations.PRESETS[self.cluster].generation

    def __post_init__(self) -> None:
        positive("measured.systems", self.systems, integer=True)
        positive("measured.batch", self.batch, integer=True)
        positive("measured.samples_per_s", self.samples_per_s)
        require(self.role in ROLES, f"measured.role must be one of {ROLES}, got {self.role!r}")


def _zhang(tag: str, model: ModelSpec, batch: int, hours: float, role: str) -> MeasuredRun:
    return MeasuredRun(f"{tag} b{batch}", model, 1, batch, 2048, PILE_SAMPLES / (hours * 3600), role,
                       ZHANG_2024, f"{hours:g} h per Pile epoch")


# (tag, model, hours at batch 128, hours at batch 256): Zhang et al. 2024 Table V.
TABLE_V = [
    ("256M", zoo.get("cerebras-gpt-256m"), 157, 157),
    ("590M", zoo.get("cerebras-gpt-590m"), 294, 290),
    ("2.7B", zoo.get("cerebras-gpt-2.7b"), 1258, 1252),
    ("6.7B", zoo.get("cerebras-gpt-6.7b"), 2586, 2581),
    ("13B", zoo.get("cerebras-gpt-13b"), 4943, 4939),
    ("20B", GPT_20B, 7613, 7594),
]

# Development set: batch 256, every model. Validation: batch 128 (same models, another batch).
ZHANG_ROWS = [_zhang(tag, m, 256, h256, "development") for tag, m, _, h256 in TABLE_V] + \
             [_zhang(tag, m, 128, h128, "validation") for tag, m, h128, _ in TABLE_V]


ALCF_GPT2 = ("ALCF ai-science-training-series, 07_ AITestbeds/Cerebras/gpt2.md (commit 548f22f1, "
             "log of 2024-03-14)")
# GPT-2 small (Radford et al. 2019: 12 layers, d_model 768, 12 heads) with 2048 positions, as the
# run's modelzoo config sets max_position_embeddings 2048; data train_8M_msl2048.
# The run's config, modelzoo Release_2.0.3 gpt2/configs/params_gpt2_small.yaml, sets dropout_rate and
# attention_dropout_rate 0.1 (tests/cluster/test_modelzoo.py reads it and checks this spec).
GPT2_SMALL_2048 = ModelSpec(name="gpt2-small-msl2048", layers=12, hidden=768, heads=12, vocab=50257,
                            positions=2048, tied_embeddings=True, dropout=True,
                            source="GPT-2 small, Radford et al. 2019; ALCF run config")

ALCF_GUIDE = "ALCF user-guides, docs/ai-testbed/cerebras/example-programs.md"
ALCF_SERIES = "ALCF ai-science-training-series, 07_ AITestbeds/Cerebras/"

ALCF_ROWS = [
    # "Effective batch size is 112", "Gradient accumulation disabled", 1 CSX;
    # "Rate=494.25 samples/sec, GlobalRate=494.51 samples/sec" at step 3000.
    MeasuredRun("GPT-2 small b112 (ALCF)", GPT2_SMALL_2048, 1, 112, 2048, 494.51, "validation",
                ALCF_GPT2, "GlobalRate=494.51 samples/sec", release="R2.0.3"),
    # GPT-J 6B (the exact family spec: parallel residual, rotary on 64 of 256 head dims, untied head
    # with bias), sequence 2048 (modelzoo params_gptj_6B.yaml). One CS-2: "Processed 13200 sample(s)"
    # over 200 steps (batch 66), log of 2023-11-10 (modelzoo path R_1.9.2).
    MeasuredRun("GPT-J 6B b66 (ALCF)", zoo.get("gpt-j-6b"), 1, 66, 2048, 19.80, "validation",
                ALCF_SERIES + "gpt-j.md (commit 548f22f1)", "GlobalRate=19.80 samples/sec",
                release="R1.9.2", note="batch = samples processed / steps"),
    # Two CS-2, batch 120 (modelzoo R2.0.3 params_gptj_6B.yaml), log of 2023-11-29.
    MeasuredRun("GPT-J 6B b120 on 2 CS-2 (ALCF)", zoo.get("gpt-j-6b"), 2, 120, 2048, 43.67, "validation",
                ALCF_GUIDE + " (commit a8a674d)", "GlobalRate=43.67 samples/sec", release="R2.0.3"),
    # LLaMA-7B (v1; the shape of llama-2-7b: 32 x 4096, 32 heads, SwiGLU 11008, vocabulary 32,000),
    # sequence 2048 (modelzoo params_llama_7b.yaml), one CS-2: "Effective batch size is 99", "No
    # benefit from gradient accumulation expected", log of 2024-03-21.
    # The log's compiler search (sub-batch sizes 3, 33, 9, 11 tried): "No benefit from gradient
    # accumulation expected. Compile will proceed at original per-box batch size 99 with 9 lanes"
    # (commit 9fa2df7b): 11 sequences a lane.
    MeasuredRun("LLaMA-7B b99 (ALCF)", zoo.get("llama-2-7b"), 1, 99, 2048, 20.45, "validation",
                ALCF_GUIDE + " (commit ee72dfb)", "GlobalRate=20.45 samples/sec", release="R2.1.1",
                logged_seqs_per_micro_batch=11),
    # One CS-3, GPT-J 6B, batch 120 ("uses 1 CS3"), log of 2025-10-10.
    MeasuredRun("GPT-J 6B b120 on 1 CS-3 (ALCF)", zoo.get("gpt-j-6b"), 1, 120, 2048, 44.75, "validation",
                ALCF_GUIDE + " (commit 0a3c674)", "GlobalRate=44.75 samples/sec", release="R2.5/2.6",
                cluster="cs3"),
    # Llama-2-7B on one CS-3, log of 2025-10-13 (commit 0a3c6747, lines 155-211): "Processed 204800
    # training sample(s)" over 200 steps (batch 1024, the batch of modelzoo params_llama2_7b.yaml),
    # Rate 31.97-31.99 at steps 50-200, job image 2.5.1. The log does not print the sequence. 2048: the
    # run reads "/software/datasets/llama_data_32K/", the pre-tokenised data of the LLaMA-7B CS-2 run
    # above (commit 2fcc730c), whose config (params_llama_7b.yaml) has max_position_embeddings 2048;
    # HDF5 data carry their own sequence length (modelzoo GptHDF5DataProcessor). At 4096 (the shipped
    # config's max_position_embeddings) the run would reach 131k tokens/s, 3.1x the CS-2 run's tokens/s
    # with twice the attention work per token, beyond the generations' 2.1x peak ratio.
    MeasuredRun("Llama-2-7B b1024 on 1 CS-3 (ALCF)", zoo.get("llama-2-7b"), 1, 1024, 2048, 31.99,
                "validation", ALCF_GUIDE + " (commit 0a3c6747)", "GlobalRate=31.99 samples/sec",
                release="R2.5.1", cluster="cs3",
                note="sequence 2048 inferred from the data path (the log does not print it)"),
]


# Llama on one CS-3 after ALCF's own log (docs/sources.md, "CS-3 Llama logs"): homework logs of ALCF's
# Nov 2025 training series, each running ALCF's params_llama2_7b.yaml (the row above's config and data
# folder) with only the batch changed, and ALCF's Llama-3-8B tutorial. All validation (never fitted on);
# the Llama-2 rows at sequence 2048 for the reason given above (docs/wafer-model.md, "The sequence").
LEE = ("huiju-lee/ALCF-ai-science-training-series, 05-AITestbed/05-homework-Huiju-Lee.md "
       "(commit 105d1044)")
NGUYEN = "tnguyen2211/ai-science-training-series, Homework/Session5/README.md (commit 67cb9be1)"
XIE = "clarexie98/advanced-ai-science-training-series, 05-AITestbed/Homework5_README.md (commit b48ce25c)"
SEQ_NOTE = "sequence 2048 inferred from the data folder (the log does not print it)"
LLAMA2_SWEEP = [
    # (batch, GlobalRate at step 200, source, printed, release); 200 steps each, "Preparing to execute
    # using 1 CSX". Lee's batch-128 compile: "Compile estimated performance: 34.1 samples/sec".
    (32, 28.51, LEE, "GlobalRate=28.51 samples/sec (batch_size: 32)", "R2.6.0"),
    (64, 31.35, LEE, "GlobalRate=31.35 samples/sec (batch_size: 64)", "R2.6.0"),
    (128, 32.44, LEE, "GlobalRate=32.44 samples/sec (batch_size: 128)", "R2.6.0"),
    (512, 33.28, NGUYEN, "GlobalRate=33.28 samples/sec (batch 512)", "R2.6.0"),
    (1024, 33.06, NGUYEN, "GlobalRate=33.06 samples/sec (batch 1024)", "R2.6.0"),
    # Xie's table only (no raw log); her 512 and 1024 (33.27, 33.04) agree with Nguyen's within 0.1%
    (256, 32.86, XIE, "Global Rate 32.86 samples/sec (table, batch 256)", "R2.6.0"),
    (2048, 34.09, XIE, "Global Rate 34.09 samples/sec (table, batch 2048)", "R2.6.0"),
]
WHO = {LEE: "Lee", NGUYEN: "Nguyen", XIE: "Xie"}
CS3_LLAMA_ROWS = [
    MeasuredRun(f"Llama-2-7B b{b} on 1 CS-3 (ALCF, {WHO[src]})", zoo.get("llama-2-7b"), 1, b, 2048, rate,
                "validation", src, printed, release=rel, cluster="cs3", note=SEQ_NOTE)
    for b, rate, src, printed, rel in LLAMA2_SWEEP
] + [
    # ALCF's tutorial: params_llama3_8b_msl_2k.yaml (sequence 2048 by its name), job image 2.5.1, 1 CSX,
    # "GlobalRate=19.37 samples/sec" at step 5 (lines 74-78). The batch is not printed: 4,800 samples
    # in the 247.8 s from "Beginning appliance run" to step 5 at GlobalRate 19.37, i.e. 960 a step.
    MeasuredRun("Llama-3-8B b960 on 1 CS-3 (ALCF)", zoo.get("llama-3-8b"), 1, 960, 2048, 19.37, "validation",
                "argonne-lcf/ALCF_Hands_on_HPC_Workshop, aiTestbeds/Cerebras/PyTorch/llama3-8b.md "
                "(commit d52173bd)", "GlobalRate=19.37 samples/sec", release="R2.5.1", cluster="cs3",
                note="batch 960 inferred from the log's timestamps x GlobalRate"),
]


def rows(role: str | None = None) -> list[MeasuredRun]:
    """Every measured row (or those of one ``role``)."""
    return [r for r in ZHANG_ROWS + ALCF_ROWS + CS3_LLAMA_ROWS if role is None or r.role == role]
