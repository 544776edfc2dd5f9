"""The papers' reported numbers (from docs ARCHITECTURES.md / SPEED.md), and which benchmark each task measures.

These are shown beside measured numbers, always marked "reported": they come from the papers' own scoring
scripts, splits and engines, which qbench does not reproduce exactly (see each entry's note).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Benchmark:
    name: str  # column label
    prefix: str  # lmms-eval task names (and their mini_* twins, *_lite subsets) start with this
    metric: str  # the lmms-eval metric shown as the benchmark's score
    note: str  # how the measured number is computed


# Display order of the accuracy columns.
BENCHMARKS: dict[str, Benchmark] = {b.name: b for b in (
    Benchmark("VQAv2", "vqav2", "exact_match", "VQA accuracy (EvalAI normalisation)"),
    Benchmark("GQA", "gqa", "exact_match", "exact match"),
    Benchmark("VizWiz", "vizwiz", "exact_match", "VQA accuracy"),
    Benchmark("TextVQA", "textvqa", "exact_match", "VQA accuracy"),
    Benchmark("VSR", "vsr", "exact_match", "exact match"),
    Benchmark("POPE", "pope", "pope_accuracy", "accuracy, mean over the splits run (adversarial, popular, random)"),
)}
MINI_PREFIX, LITE_SUFFIX = "mini_", "_lite"  # qbench's generated twins; lmms-eval's Lite subsets


def benchmark_of(task: str) -> tuple[Benchmark | None, str]:
    """The benchmark an lmms-eval task measures, and "mini" (generated twin), "lite" (subset) or "" (the real one)."""
    variant = "mini" if task.startswith(MINI_PREFIX) else "lite" if task.endswith(LITE_SUFFIX) else ""
    name = task.removeprefix(MINI_PREFIX)
    for benchmark in BENCHMARKS.values():
        if name.startswith(benchmark.prefix):
            return benchmark, variant
    return None, variant


@dataclass(frozen=True)
class ReportedAccuracy:
    system: str
    source: str
    scores: dict[str, float]  # benchmark name -> percent
    splits: str  # the splits and scoring behind the numbers


REPORTED_ACCURACY: dict[str, ReportedAccuracy] = {
    "cobra-3b": ReportedAccuracy(
        "Cobra-3.5B", "Cobra, arXiv 2403.14520",
        {"VQAv2": 77.8, "GQA": 62.3, "VizWiz": 49.7, "TextVQA": 58.2, "VSR": 58.4, "POPE": 88.4},
        "VQAv2 val, GQA test-dev, VizWiz val, TextVQA val with OCR tokens before the question; POPE scored by "
        "P(Yes) vs P(No)"),
    "cobra-ldp-3b": ReportedAccuracy(
        "Cobra-LDPv2", "Cobra, arXiv 2403.14520, ablation",
        {"VQAv2": 76.2, "GQA": 61.9, "VizWiz": 50.2, "TextVQA": 54.7, "VSR": 56.1, "POPE": 87.7},
        "as Cobra-3.5B"),
    "ml-mamba-2.7b": ReportedAccuracy(
        "ML-Mamba", "ML-Mamba, arXiv 2407.19832 (third-party copies of its table)",
        {"VQAv2": 75.26, "GQA": 60.68, "VizWiz": 45.17, "TextVQA": 52.2, "POPE": 88.3},
        "splits as in the paper's table (not restated by the copies)"),
    "llava-1.5-7b": ReportedAccuracy(
        "LLaVA-1.5-7B", "LLaVA-1.5, arXiv 2310.03744",
        {"VQAv2": 78.5, "GQA": 62.0, "VizWiz": 50.0, "TextVQA": 58.2, "POPE": 85.9},
        "VQAv2 test-dev; POPE with LLaVA's lenient yes/no parsing"),
}


@dataclass(frozen=True)
class ReportedSpeed:
    system: str
    model: str | None  # the qbench preset it corresponds to, if any
    mamba: bool
    visual_tokens: int | None
    tokens_per_s: float
    engine: str


# All: one A100 PCIe 80GB, batch 1, 256 new tokens, throughput = 256 / (image encoding to last token).
SPEED_SOURCE = "Cobra, arXiv 2403.14520 and ML-Mamba, arXiv 2407.19832: A100 PCIe 80GB, batch 1, 256 tokens"
REPORTED_SPEED: tuple[ReportedSpeed, ...] = (
    ReportedSpeed("Cobra-3.5B", "cobra-3b", True, 729, 166.47, "mamba_ssm generate, CUDA graph"),
    ReportedSpeed("Cobra-LDPv2", "cobra-ldp-3b", True, 196, 166.85, "mamba_ssm generate, CUDA graph"),
    ReportedSpeed("ML-Mamba", "ml-mamba-2.7b", True, 729, 171.0, "mamba_ssm generate (engine not stated)"),
    ReportedSpeed("LLaVA-Phi", None, False, None, 40.89, "transformers generate, eager"),
    ReportedSpeed("MobileVLM v2", None, False, None, 49.50, "transformers generate, eager"),
)
PAPER_NEW_TOKENS = 256
PAPER_BASELINE = "LLaVA-Phi"  # the Transformer the papers' speed ratios are taken against


def paper_speed_ratios() -> list[tuple[ReportedSpeed, float]]:
    """Each Mamba system's reported tokens/s over the Transformer baseline's: engine and architecture mixed."""
    baseline = next(s for s in REPORTED_SPEED if s.system == PAPER_BASELINE)
    return [(s, s.tokens_per_s / baseline.tokens_per_s) for s in REPORTED_SPEED if s.mamba]
