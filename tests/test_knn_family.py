"""The k-NN family against the authors' own code, ported here to NumPy with
float64 brute-force distances, and against float64 brute forces written from
the definitions (never numbers from largeemb):

- clipped density / coverage: nicolassalvy/ClippedDensityCoverage,
  ClippedDensityCoverage/metrics/Clipped_Density_Coverage.py at
  9920dae001b04a63485ef1ff3ab002203ce5f939 (``ClippedDensity``, ``ClippedCoverage``,
  ``_f_coverage``, ``_g``; sklearn's NearestNeighbors replaced by sorted float64 distances);
- symmetric precision / recall: mahyarkoy/emergent_asymmetry_pr,
  manifmetric/manifmetric.py at 5c35d92578572c64e8ae6b4e591a0f17c0887b02
  (``sym_precision``, ``sym_recall`` and the four shares they take);
- PR-cover: FasilCheema/GenerativeMetrics, Code/GenerativeMetrics.py at
  06777c5042c9888edafd4910bc927ae96fade6bf (``PRCover``, ``PR_Cover_Indicator``;
  k = 3, C = 3 as in Code/Experiments.py);
- rarity: hichoe95/Rarity-Score, src/rarity_score.py at
  ec2ebd84619f4485ceecf2f02bfac071270c55bf (``MANIFOLD.rarity``).

Everything is compared exactly (memberships are exact, so are the counts and
shares made of them), except clipped coverage's calibration: largeemb bisects
on m with k terms per m where the authors sum all m + 1 terms for every m, so
the two may disagree on an f(m) within a few float64 roundoffs of y (never on
these sets); the test asserts equality.
"""

import numpy as np
import pytest

import largeemb
from conftest import mixture
from largeemb.metrics.clipped import calibrated
from oracle import pairwise

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

FAMILY = ("clipped_density_coverage", "sym_precision_recall", "pr_cover", "rarity")
PER_K = ("clipped_density", "clipped_coverage", "sym_precision", "sym_recall", "rarity_mean")
FREE = ("cover_precision", "cover_recall")
K = (3, 5)


def duplicated(rows, dim, seed):
    """Rows of a mixture, each 1 to 4 times (k-NN radii of 0 at k = 3 for some rows, not for others)."""
    rng = np.random.default_rng(seed)
    base = mixture(rows // 2, dim, seed)
    copies = np.repeat(base, rng.integers(1, 5, len(base)), axis=0)[:rows]
    return copies[rng.permutation(len(copies))]


DATA = {
    "gaussian": lambda: (
        np.random.default_rng(1).standard_normal((900, 10)).astype(np.float32),
        (np.random.default_rng(2).standard_normal((800, 10)) * 1.2 + 0.3).astype(np.float32),
    ),
    "mixture": lambda: (mixture(1000, 12, 1), mixture(900, 12, 2, keep=5, shift=0.1)),
    "copies": lambda: (duplicated(1000, 8, 3), np.vstack([duplicated(600, 8, 4), mixture(300, 8, 3)])),
    "lattice": lambda: (
        np.random.default_rng(5).integers(-2, 3, (900, 5)).astype(np.float32),
        np.random.default_rng(6).integers(-2, 3, (800, 5)).astype(np.float32),
    ),
}
#: Sets with no two distances tied at a radius: the authors' k-NN lists and "every row inside" agree there.
UNTIED = ("gaussian", "mixture")


@pytest.fixture(scope="module", params=list(DATA))
def case(request):
    real, fake = DATA[request.param]()
    result = largeemb.evaluate(real, fake, k=K, block_rows=400, plots=False, companions=FAMILY)
    return request.param, real.astype(np.float64), fake.astype(np.float64), result


# --- the authors' code, ported ---------------------------------------------------------------------------------


def knn(a, b, n, same):
    """sklearn's ``kneighbors`` of a's rows among b's (n of them, the row itself first when ``same``)."""
    d = pairwise(a, b)
    order = np.argsort(d, axis=1, kind="stable")[:, :n]
    return np.take_along_axis(d, order, axis=1), order


def authors_clipped_density(real, fake, K):
    distances_real, indices_real = knn(real, real, K + 1, True)
    distances_real_K = distances_real[:, -1]
    indices_real = indices_real[:, 1:]
    distances_real_K = np.clip(distances_real_K, 0, np.median(distances_real_K))
    mask = distances_real[:, 1:] <= distances_real_K[:, np.newaxis]
    ind_real = indices_real[mask]
    d = pairwise(real, fake)
    ind_synthetic = np.concatenate([np.flatnonzero(d[i] <= distances_real_K[i]) for i in range(len(real))])
    appearance_count = np.bincount(ind_synthetic, minlength=len(fake))
    fidelity_ratio = np.mean(np.clip(appearance_count / K, 0, 1))
    real_appearance_count = np.bincount(ind_real, minlength=len(real))
    fidelity_ratio /= np.mean(np.clip(real_appearance_count / K, 0, 1))
    return min(fidelity_ratio, 1.0)


def authors_f_coverage(K, N, M):
    results = np.zeros(M - K + 1)
    gamma_ln_all = np.concatenate(([0], np.cumsum(np.log(np.arange(1, M + N + 1)))))
    log_denominator = gamma_ln_all[K - 1] + gamma_ln_all[N - K - 1] - gamma_ln_all[N - 1]

    def log_binomial(n, k):
        return gamma_ln_all[n] - gamma_ln_all[k] - gamma_ln_all[n - k]

    for idx, M_i in enumerate(range(K, M + 1)):
        j_values = np.arange(M_i + 1)
        with np.errstate(divide="ignore"):
            log_min = np.log(np.minimum(j_values, K))
        log_beta_numerators = (
            gamma_ln_all[K + j_values - 1] + gamma_ln_all[N + M_i - K - j_values - 1] - gamma_ln_all[N + M_i - 1]
        )
        log_terms = log_min + log_binomial(M_i, j_values) + log_beta_numerators - log_denominator
        results[idx] = np.exp(np.logaddexp.reduce(log_terms)) / K
    return np.concatenate([np.zeros(K), results])


def authors_g(y, f_rank_values):
    return np.searchsorted(f_rank_values, y) / len(f_rank_values)


def authors_clipped_coverage(real, fake, K):
    distances_real_K = knn(real, real, K + 1, True)[0][:, -1]
    distances_to_synthetic = knn(real, fake, K, False)[0]
    mask = distances_to_synthetic < distances_real_K[:, np.newaxis]
    return authors_g(np.mean(np.mean(mask, axis=1)), authors_f_coverage(K, len(real), len(fake)))


def authors_sym(real, fake, k):
    """ManifoldMetric's sym_precision and sym_recall: squared distances, radius dist2[:, k] (self at 0), ``<``."""
    def dist2(a, b):
        return pairwise(a, b) ** 2

    ref_r2 = np.sort(dist2(real, real), axis=1)[:, k]
    gen_r2 = np.sort(dist2(fake, fake), axis=1)[:, k]
    d2 = dist2(fake, real)  # (gen, ref)
    precision = np.mean((d2 < ref_r2[None, :]).any(axis=1))
    recall = np.mean((d2 < gen_r2[:, None]).any(axis=0))
    coverage = np.mean((d2 < ref_r2[None, :]).any(axis=0))
    comp_precision = np.mean((d2 < gen_r2[:, None]).any(axis=1))
    return min(precision, comp_precision), min(recall, coverage)


def authors_pr_cover(P, Q, k=3, C=3):
    """PRCover(P, Q, k, C): (cover_precision over P, cover_recall over Q), P the real set as the authors call it."""
    dist_P = knn(P, P, C * k + 1, True)[0][:, 1:]
    dist_Q = knn(Q, Q, C * k + 1, True)[0][:, 1:]
    d = pairwise(P, Q)

    def indicator(curr, k_nn_set):
        kk = len(k_nn_set)
        return int(np.sum(curr <= k_nn_set[kk - 1]) >= kk / C)

    p_sum = sum(indicator(d[i], dist_P[i]) for i in range(len(P)))
    r_sum = sum(indicator(d[:, j], dist_Q[j]) for j in range(len(Q)))
    return p_sum / len(P), r_sum / len(Q)


def authors_rarity(real, fake, k):
    """MANIFOLD.rarity: scores (0 outside every ball) and the rows outside."""
    r = np.sort(pairwise(real, real), axis=1)[:, k]
    dist_radi = r[:, None] - pairwise(real, fake)
    out_ball_ids = np.where((dist_radi > 0).any(axis=0) == False)[0]  # noqa: E712 (the authors' test)
    valid = dist_radi > 0
    scores = np.zeros(len(fake))
    for i in range(len(fake)):
        if i not in out_ball_ids:
            scores[i] = r[valid[:, i]].min()
    return scores, out_ball_ids


# --- float64 brute forces from the definitions ----------------------------------------------------------------


def brute(real, fake, k):
    d_rr, d_ff, d_fr = pairwise(real, real), pairwise(fake, fake), pairwise(fake, real)
    np.fill_diagonal(d_rr, np.inf)
    np.fill_diagonal(d_ff, np.inf)
    r_real, r_fake = np.sort(d_rr, axis=1)[:, k - 1], np.sort(d_ff, axis=1)[:, k - 1]
    clipped = np.minimum(r_real, np.median(r_real))
    fake_in = (d_fr <= clipped[None, :]).sum(axis=1)
    real_in = (d_rr <= clipped[:, None]).sum(axis=0)  # other rows' balls: the diagonal is inf
    density = np.mean(np.minimum(fake_in / k, 1)) / np.mean(np.minimum(real_in / k, 1))
    y = np.mean(np.minimum((d_fr < r_real[None, :]).sum(axis=0), k) / k)
    in_real, in_fake = d_fr < r_real[None, :], d_fr < r_fake[:, None]
    held = np.where(in_real, r_real[None, :], np.inf).min(axis=1)
    return {
        "clipped_density": min(density, 1.0),
        "clipped_coverage_y": y,
        "sym_precision": min(in_real.any(axis=1).mean(), in_fake.any(axis=1).mean()),
        "sym_recall": min(in_fake.any(axis=0).mean(), in_real.any(axis=0).mean()),
        "rarity": np.where(np.isfinite(held), held, np.nan),
    }


def brute_cover(real, fake):
    d_rr, d_ff, d_fr = pairwise(real, real), pairwise(fake, fake), pairwise(fake, real)
    np.fill_diagonal(d_rr, np.inf)
    np.fill_diagonal(d_ff, np.inf)
    r_real, r_fake = np.sort(d_rr, axis=1)[:, 8], np.sort(d_ff, axis=1)[:, 8]
    return (
        np.mean((d_fr <= r_fake[:, None]).sum(axis=1) >= 3),
        np.mean((d_fr <= r_real[None, :]).sum(axis=0) >= 3),
    )


# --- tests ------------------------------------------------------------------------------------------------------


def test_clipped_density_equals_the_brute_force_and_the_authors_code_where_nothing_ties(case):
    name, real, fake, result = case
    for k in K:
        got = result.by_k[k]["clipped_density"]
        assert got == pytest.approx(brute(real, fake, k)["clipped_density"], rel=1e-12)
        if name in UNTIED:
            assert got == pytest.approx(authors_clipped_density(real, fake, k), rel=1e-12)


def test_clipped_density_counts_every_real_row_in_a_clipped_ball_where_the_authors_lists_stop_at_k():
    """Copies: a ball of radius 0 holds all its row's copies, the authors' k-NN list only k of them."""
    real, fake = (rows[:500] for rows in DATA["copies"]())
    real = np.vstack([real, np.repeat(real[:1], 12, axis=0)])  # 13 copies: more than k + 1
    result = largeemb.evaluate(real, fake, k=3, plots=False, companions=FAMILY)
    real, fake = real.astype(np.float64), fake.astype(np.float64)
    assert result.by_k[3]["clipped_density"] == pytest.approx(brute(real, fake, 3)["clipped_density"], rel=1e-12)
    assert brute(real, fake, 3)["clipped_density"] != authors_clipped_density(real, fake, 3)


def test_clipped_coverage_equals_the_authors_code(case):
    _, real, fake, result = case
    for k in K:
        assert result.by_k[k]["clipped_coverage"] == authors_clipped_coverage(real, fake, k)
        y = brute(real, fake, k)["clipped_coverage_y"]
        assert result.details["clipped_density_coverage"][str(k)]["coverage_uncalibrated"] == pytest.approx(y, 1e-12)


@pytest.mark.parametrize("k, n, m", [(1, 50, 40), (3, 200, 150), (5, 300, 420), (10, 120, 90)])
def test_the_coverage_calibration_bisects_to_the_authors_searchsorted(k, n, m):
    f = authors_f_coverage(k, n, m)
    # Either side of the ends of f, not on them: there the two sums may round apart (module docstring).
    edges = [f[k] - 1e-9, f[k] + 1e-9, f[-1] - 1e-9, f[-1] + 1e-9]
    ys = np.concatenate([[0.0, 1.0], edges, np.random.default_rng(k).uniform(0, f[-1] * 1.1, 200)])
    for y in ys:
        assert calibrated(float(y), k, n, m) == authors_g(y, f), y


def test_symmetric_precision_and_recall_equal_the_authors_code(case):
    _, real, fake, result = case
    for k in K:
        sym_precision, sym_recall = authors_sym(real, fake, k)
        oracle = brute(real, fake, k)
        assert result.by_k[k]["sym_precision"] == sym_precision == oracle["sym_precision"]
        assert result.by_k[k]["sym_recall"] == sym_recall == oracle["sym_recall"]


def test_pr_cover_equals_the_authors_code_with_precision_over_fake_rows(case):
    _, real, fake, result = case
    # The authors' PRCover(P=real, Q=fake): what it calls precision runs over the real rows.
    over_real, over_fake = authors_pr_cover(real, fake)
    assert result.metrics["cover_precision"] == over_fake == brute_cover(real, fake)[0]
    assert result.metrics["cover_recall"] == over_real == brute_cover(real, fake)[1]


def test_rarity_equals_the_authors_code(case):
    _, real, fake, result = case
    for k in K:
        scores, outside = authors_rarity(real, fake, k)
        oracle = brute(real, fake, k)["rarity"]
        inside = np.setdiff1d(np.arange(len(fake)), outside)
        if k == K[0]:
            np.testing.assert_array_equal(result.fake_rarity, oracle)
            np.testing.assert_array_equal(result.fake_rarity[inside], scores[inside])
            assert np.isnan(result.fake_rarity[outside]).all()
        assert result.by_k[k]["rarity_mean"] == pytest.approx(np.mean(scores[inside]), rel=1e-12, nan_ok=True)


def test_the_family_keeps_its_conventions_under_inclusive():
    """--inclusive turns the run's own memberships to '<='; each family metric keeps its authors' convention."""
    real, fake = DATA["lattice"]()
    strict = largeemb.evaluate(real, fake, k=3, plots=False, companions=FAMILY)
    inclusive = largeemb.evaluate(real, fake, k=3, plots=False, companions=FAMILY, inclusive=True)
    assert inclusive.by_k[3]["precision"] != strict.by_k[3]["precision"]
    for key in PER_K:
        assert inclusive.by_k[3][key] == strict.by_k[3][key], key
    for key in FREE:
        assert inclusive.metrics[key] == strict.metrics[key], key


def test_samples_zarr_holds_the_rarity_scores(tmp_path):
    real, fake = DATA["mixture"]()
    out = str(tmp_path / "out")
    result = largeemb.evaluate_to(real, fake, out, k=3, plots=False, companions=FAMILY)
    from largeemb.io.samples import read_samples

    np.testing.assert_array_equal(read_samples(out)["fake/rarity"], result.fake_rarity)


def test_the_family_from_a_reference_equals_the_plain_run(tmp_path, write_zarr):
    """A reference keeps the k = 9 radii (PR-cover) whatever it was built for; clipped density reads the real rows."""
    real, fake = DATA["copies"]()
    path = write_zarr("real.zarr", real, chunks=(300, 8))
    ref = largeemb.build_reference(path, str(tmp_path / "ref"), k=(3,), block_rows=300)
    plain = largeemb.evaluate(path, fake, k=3, plots=False, companions=FAMILY)
    cached = largeemb.evaluate(ref.path, fake, k=3, plots=False, companions=FAMILY)
    assert family(cached) == family(plain)
    assert not [w for w in cached.warnings if "not computed" in w]
    np.testing.assert_array_equal(cached.fake_rarity, plain.fake_rarity)


def family(result):
    return {**{(k, key): result.by_k[k][key] for k in result.by_k for key in PER_K}, **{
        key: result.metrics[key] for key in FREE
    }}


@pytest.mark.parametrize(
    "block_rows, panel_rows", [pytest.param(128, 64, marks=pytest.mark.slow), (333, 100), (1000, 700)]
)
def test_the_family_does_not_depend_on_block_or_panel_size(block_rows, panel_rows):
    real, fake = DATA["copies"]()
    base = largeemb.evaluate(real, fake, k=K, plots=False, companions=FAMILY, block_rows=4096, panel_rows=4096)
    got = largeemb.evaluate(
        real, fake, k=K, plots=False, companions=FAMILY, block_rows=block_rows, panel_rows=panel_rows
    )
    assert family(got) == family(base)
    np.testing.assert_array_equal(got.fake_rarity, base.fake_rarity)


def test_the_family_is_the_same_with_bf16_screened_tiles():
    """Without per-sample values the cross pass (and the real × real one) screen tiles in bf16 first."""
    real, fake = DATA["copies"]()
    options = dict(k=K, plots=False, companions=FAMILY, samples=False, block_rows=400)
    screened = largeemb.evaluate(real, fake, precision="bf16-emulated", **options)
    assert family(screened) == family(largeemb.evaluate(real, fake, precision="float32", **options))


@pytest.mark.slow
def test_the_family_is_the_same_on_two_worker_processes(write_zarr):
    real, fake = DATA["copies"]()
    paths = write_zarr("real.zarr", real, chunks=(300, 8)), write_zarr("fake.zarr", fake, chunks=(300, 8))
    local = largeemb.evaluate(*paths, k=K, plots=False, block_rows=256, companions=FAMILY)
    remote = largeemb.evaluate(
        *paths, k=K, plots=False, block_rows=256, workers=2, threads_per_worker=1, companions=FAMILY
    )
    assert family(remote) == family(local)
    np.testing.assert_array_equal(remote.fake_rarity, local.fake_rarity)


def test_the_family_counts_nothing_in_block_pairs_whose_tiles_are_all_pruned():
    """Two far clusters, one block each: the fake × real and real × real block pairs across them have
    no pair within any ball's reach, so every tile is pruned away; their counts are zeros."""
    rng = np.random.default_rng(9)
    real = np.vstack([rng.standard_normal((300, 6)), rng.standard_normal((300, 6)) + 100]).astype(np.float32)
    fake = np.vstack([rng.standard_normal((300, 6)) + 100, rng.standard_normal((300, 6))]).astype(np.float32)
    result = largeemb.evaluate(real, fake, k=K, plots=False, companions=FAMILY, block_rows=300, samples=False)
    real, fake = real.astype(np.float64), fake.astype(np.float64)
    for k in K:
        oracle = brute(real, fake, k)
        assert result.by_k[k]["clipped_density"] == pytest.approx(oracle["clipped_density"], rel=1e-12)
        assert result.by_k[k]["sym_precision"] == oracle["sym_precision"]
        assert result.by_k[k]["sym_recall"] == oracle["sym_recall"]
        assert result.by_k[k]["rarity_mean"] == pytest.approx(np.nanmean(oracle["rarity"]), rel=1e-12)
    assert (result.metrics["cover_precision"], result.metrics["cover_recall"]) == brute_cover(real, fake)
