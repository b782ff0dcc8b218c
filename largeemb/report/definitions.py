"""What each metric of ``metrics.json`` means, in one line, and which way is better.

One home for the names that reports, history tables and gates show or accept.
"""

from __future__ import annotations

#: Computed once per k (``metrics.json["by_k"]``); the rest once per run.
PER_K = (
    "precision", "recall", "density", "coverage", "f1", "f8", "f1_8",
    "clipped_density", "clipped_coverage", "sym_precision", "sym_recall", "rarity_mean",
)
#: The four k-NN metrics, all "higher is better": what history, compare and regressions follow.
CORE = ("precision", "recall", "density", "coverage")

DEFINITIONS = {
    "precision": "share of fake rows inside some real row's k-NN ball (realism)",
    "recall": "share of real rows inside some fake row's k-NN ball (diversity)",
    "density": "real balls holding a fake row, on average, over k (about 1 when the sets are alike; can exceed 1)",
    "coverage": "share of real rows whose own k-NN ball holds a fake row",
    "f1": "F1 of precision and recall",
    "f8": "F8 of precision and recall (weighs recall: coverage of modes)",
    "f1_8": "F1/8 of precision and recall (weighs precision: realism)",
    "fd": "Fréchet distance of Gaussian fits to the two sets (0 when alike; lower is better)",
    "fd_infinity": "FD extrapolated to an infinitely large fake set (Chong & Forsyth 2020; lower is better)",
    "authenticity": (
        "share of fake rows farther from their nearest real row than that row is from its own neighbour (low: copies)"
    ),
    "vendi_real": "effective number of distinct real rows (Vendi score, cosine kernel)",
    "vendi_fake": "effective number of distinct fake rows (Vendi score, cosine kernel)",
    "p_precision": "probabilistic precision: fake rows weighted by how deep they lie in real balls (Park & Kim 2023)",
    "p_recall": "probabilistic recall: real rows weighted by how deep they lie in fake balls (Park & Kim 2023)",
    "kid": "kernel inception distance, unbiased MMD² over every pair (0 when alike; lower is better)",
    "kid_subsets_mean": "KID as torch-fidelity averages it over seeded subsets (lower is better)",
    "kid_subsets_std": "spread of KID over those subsets",
    "clipped_density": "density with real radii clipped at their median and counts at k, over the real rows' own "
    "(Salvy et al. 2026; at most 1)",
    "clipped_coverage": "share of each real row's k nearest fake rows inside its ball, calibrated to a share of "
    "real-like fake rows (Salvy et al. 2026)",
    "sym_precision": "the lower of precision and the share of fake balls holding a real row "
    "(Khayatkhoei & AbdAlmageed 2023)",
    "sym_recall": "the lower of recall and coverage (Khayatkhoei & AbdAlmageed 2023)",
    "cover_precision": "share of fake rows whose 9-NN ball holds at least 3 real rows (PR-cover, Cheema & Urner 2023)",
    "cover_recall": "share of real rows whose 9-NN ball holds at least 3 fake rows (PR-cover, Cheema & Urner 2023)",
    "rarity_mean": "mean over fake rows in some real ball of the smallest such ball's radius "
    "(rarity score, Han et al. 2023; higher: rarer)",
    "memorization": (
        "share of fake rows nearer their nearest real row than 1/3 of that row's own neighbour distance (copies)"
    ),
    "mifid": "FD divided by a memorisation penalty (mean min cosine distance real→fake, when below 0.1; Bai et al.)",
    "kad": "kernel audio distance: unbiased Gaussian-kernel MMD² × 100, bandwidth the fake set's median distance",
    "rke_real": "RKE mode count of the real set: n² / Σ k² over every pair (Gaussian kernel; Jalali et al. 2023)",
    "rke_fake": "RKE mode count of the fake set: n² / Σ k² over every pair (Gaussian kernel; Jalali et al. 2023)",
}

#: Metrics where a lower value is the better one.
LOWER_IS_BETTER = ("fd", "fd_infinity", "kid", "kid_subsets_mean", "memorization", "mifid", "kad")
