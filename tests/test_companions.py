"""The companion metrics against oracles written from their definitions and
against the peers' own formulas, ported here (never numbers from largeemb):

- F-scores: torch-fidelity's f_score formula on prdc's precision and recall.
- KID: float64 brute force of the full unbiased MMD² (cubic kernel) and of its
  Hoeffding standard error; torch-fidelity's ``mmd2`` with one subset of the
  whole set; torch-fidelity's seeded subset loop for ``kid_subsets``.
- Vendi: the ``vendi_score`` package's formula (n × n kernel matrix).
- Authenticity: dgm-eval's AuthPct (torch.cdist replaced by a float64 cdist).
- FD∞: FD of each nested subsample through scipy's sqrtm (the peers' FD),
  least-squares line in 1/N, its value at 0.
- P-precision / P-recall: the authors' ``compute_pprecision_precall``
  (kdst-team/Probablistic_precision_recall), ported with float64 distances.

Tolerances: KID and its SE agree to 1e-9 of the mean kernel value (sums in
another order); Vendi to 1e-9 relative (eigenvalues of K/n vs of Uᵀ U/n);
FD∞ to 1e-6 relative (sqrtm vs the symmetric eigenproblem, as for FD);
P-precision/recall to 1e-6 (log(d/R) from float32 distances away from 0 and
R, whose relative error is below 1e-6 there); F-scores, authenticity flags and
the subset estimator exactly.
"""

import numpy as np
import pytest
import scipy.linalg
from scipy.spatial.distance import cdist

import largeemb
from conftest import mixture
from largeemb.config import COMPANIONS
from largeemb.metrics.fd_infinity import fd_infinity
from oracle import frechet, prdc

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def duplicated(rows, dim, seed):
    base = mixture(rows // 4, dim, seed)
    return np.repeat(base, 4, axis=0)[np.random.default_rng(seed).permutation(rows // 4 * 4)]


DATA = {
    "mixture, unequal sizes": lambda: (mixture(1300, 12, 1), mixture(1100, 12, 2, keep=6, shift=0.1)),
    "duplicates, shared rows": lambda: (
        duplicated(1200, 10, 3), np.vstack([duplicated(800, 10, 4), mixture(400, 10, 3)]),
    ),
    "lattice": lambda: (
        np.random.default_rng(5).integers(-2, 3, (1200, 6)).astype(np.float32),
        np.random.default_rng(6).integers(-2, 3, (1000, 6)).astype(np.float32),
    ),
}


@pytest.fixture(scope="module", params=list(DATA))
def case(request):
    real, fake = DATA[request.param]()
    result = largeemb.evaluate(
        real, fake, k=(3, 5), block_rows=512, plots=False, kid=True, kid_subsets=4, kid_subset_size=300,
        companions=COMPANIONS,
    )
    return real.astype(np.float64), fake.astype(np.float64), result


def torch_fidelity_mmd2(k_xx, k_xy, k_yy):
    """torch-fidelity's ``mmd2`` (unbiased estimator), ported."""
    m = k_xx.shape[0]
    kt_xx_sum = (k_xx.sum(axis=1) - np.diagonal(k_xx)).sum()
    kt_yy_sum = (k_yy.sum(axis=1) - np.diagonal(k_yy)).sum()
    return (kt_xx_sum + kt_yy_sum) / (m * (m - 1)) - 2 * k_xy.sum() / (m * m)


def poly(a, b):
    return (a @ b.T / a.shape[1] + 1) ** 3


def test_f_scores_follow_torch_fidelity_on_prdc(case):
    real, fake, result = case
    for k in (3, 5):
        peer = prdc(real, fake, k)
        p, r = peer["precision"], peer["recall"]
        for name, beta in (("f1", 1.0), ("f8", 8.0), ("f1_8", 1 / 8)):
            assert result.by_k[k][name] == pytest.approx((1 + beta**2) * p * r / max(1e-5, beta**2 * p + r), rel=1e-15)


def test_kid_is_the_full_u_statistic_with_its_standard_error(case):
    real, fake, result = case
    n, m = len(real), len(fake)
    k_rr, k_ff, k_rf = poly(real, real), poly(fake, fake), poly(real, fake)
    np.fill_diagonal(k_rr, 0)
    np.fill_diagonal(k_ff, 0)
    mmd2 = k_rr.sum() / (n * (n - 1)) + k_ff.sum() / (m * (m - 1)) - 2 * k_rf.sum() / (n * m)
    h_real = k_rr.sum(1) / (n - 1) - k_rf.sum(1) / m
    h_fake = k_ff.sum(1) / (m - 1) - k_rf.sum(0) / n
    se = 2 * np.sqrt(h_real.var(ddof=1) / n + h_fake.var(ddof=1) / m)
    scale = np.abs(k_rf).mean()
    assert abs(result.metrics["kid"] - mmd2) <= 1e-9 * scale
    assert abs(result.standard_errors()["kid"] - se) <= 1e-9 * scale


def test_kid_equals_torch_fidelity_with_one_subset_of_the_whole_set():
    real, fake = mixture(900, 8, 1), mixture(900, 8, 2, keep=5)
    result = largeemb.evaluate(real, fake, k=3, plots=False, samples=False, kid=True, block_rows=256)
    r, f = real.astype(np.float64), fake.astype(np.float64)
    peer = torch_fidelity_mmd2(poly(f, f), poly(f, r), poly(r, r))
    assert abs(result.metrics["kid"] - peer) <= 1e-9 * np.abs(poly(f, r)).mean()


def test_kid_subsets_follow_torch_fidelitys_seeded_draws(case):
    real, fake, result = case
    rng = np.random.RandomState(2020)  # torch-fidelity's rng_seed; input1 = the generated set
    mmds = []
    for _ in range(4):
        f1 = fake[rng.choice(len(fake), 300, replace=False)]
        f2 = real[rng.choice(len(real), 300, replace=False)]
        mmds.append(torch_fidelity_mmd2(poly(f1, f1), poly(f1, f2), poly(f2, f2)))
    assert result.metrics["kid_subsets_mean"] == pytest.approx(np.mean(mmds), rel=1e-9, abs=1e-12)
    assert result.metrics["kid_subsets_std"] == pytest.approx(np.std(mmds), rel=1e-9, abs=1e-12)


def vendi_reference(x):
    """The vendi_score package's formula: exp(entropy) of the eigenvalues of K/n, K the cosine kernel matrix."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x = x / np.where(norms > 0, norms, 1)
    w = scipy.linalg.eigvalsh(x @ x.T / len(x))
    w = w[w > 0]
    return np.exp(-(w * np.log(w)).sum())


def test_vendi_scores_equal_the_kernel_matrix_formula(case):
    real, fake, result = case
    assert result.metrics["vendi_real"] == pytest.approx(vendi_reference(real), rel=1e-9)
    assert result.metrics["vendi_fake"] == pytest.approx(vendi_reference(fake), rel=1e-9)


def test_vendi_under_cosine_comes_from_the_metric_rows_moments():
    """Under cosine the unit rows' second moment is derived from the pass's metric-row sums, not taken twice."""
    real, fake = mixture(1100, 12, 1) + 3.0, mixture(1000, 12, 2, keep=5) + 3.0
    result = largeemb.evaluate(real, fake, k=3, metric="cosine", plots=False, samples=False)
    assert result.real_moments.unit_s2 is None  # no second product in the moments pass
    assert result.metrics["vendi_real"] == pytest.approx(vendi_reference(real.astype(np.float64)), rel=1e-9)
    assert result.metrics["vendi_fake"] == pytest.approx(vendi_reference(fake.astype(np.float64)), rel=1e-9)


def dgm_eval_authpct(train, gen):
    """dgm-eval's AuthPct, ported (torch.cdist -> float64 cdist); returns the flags."""
    real_dists = cdist(train, train)
    np.fill_diagonal(real_dists, np.inf)
    gen_dists = cdist(train, gen)
    real_min = real_dists.min(axis=0)
    gen_min_values, gen_min_indices = gen_dists.min(axis=0), gen_dists.argmin(axis=0)
    return real_min[gen_min_indices] < gen_min_values


def test_authenticity_equals_dgm_eval(case):
    real, fake, result = case
    flags = dgm_eval_authpct(real, fake)
    np.testing.assert_array_equal(result.fake_authentic, flags)
    assert result.metrics["authenticity"] == flags.mean()


def test_fd_infinity_extrapolates_nested_seeded_subsamples(case):
    real, fake, result = case
    m = len(fake)
    sizes = np.unique(np.linspace(min(5000, max(m // 10, 2)), m, 15).astype(np.int64))  # dgm-eval's sizes
    order = np.random.default_rng([0, 0xFD1F]).permutation(m)  # the documented seeded order (seed 0)
    fds = [frechet(real, fake[order[:size]]) for size in sizes]
    slope, intercept = np.polyfit(1.0 / sizes, fds, 1)
    assert result.details["fd_infinity"]["subsample_rows"] == sizes.tolist()
    np.testing.assert_allclose(result.details["fd_infinity"]["fd"], fds, rtol=1e-6)
    assert result.details["fd_infinity"]["intercept"] == pytest.approx(intercept, rel=1e-6, abs=1e-9)
    assert result.metrics["fd_infinity"] == pytest.approx(max(intercept, 0.0), rel=1e-6, abs=1e-9)  # clipped at 0


def authors_pprecision_precall(real, fake, a=1.2, kth=4):
    """Park & Kim's reference code, ported (numpy branch; cdist for sklearn's pairwise_distances)."""

    def average_knn_distance(x):
        indices = np.argpartition(x, kth + 1, axis=-1)[..., : kth + 1]
        return np.mean(np.take_along_axis(x, indices, axis=-1).max(axis=-1))

    def psr(distance, k_nearest):
        f = 1 - distance / (a * k_nearest)
        f[distance >= a * k_nearest] = 0.0
        return np.prod(1.0 - f, axis=0)

    distance = cdist(real, fake)
    k_x, k_y = average_knn_distance(cdist(real, real)), average_knn_distance(cdist(fake, fake))
    return np.mean(1.0 - psr(distance, k_x)), np.mean(1.0 - psr(distance.T, k_y))


def test_p_precision_and_recall_equal_the_authors_code(case):
    real, fake, result = case
    p_precision, p_recall = authors_pprecision_precall(real, fake)
    assert result.metrics["p_precision"] == pytest.approx(p_precision, abs=1e-6)
    assert result.metrics["p_recall"] == pytest.approx(p_recall, abs=1e-6)


def test_companions_can_be_switched_off():
    real, fake = mixture(1100, 6, 1), mixture(1000, 6, 2)
    result = largeemb.evaluate(real, fake, k=3, plots=False, companions=())
    assert set(result.metrics) == {"precision", "recall", "density", "coverage", "fd"}
    assert result.fake_authentic is None
    with pytest.raises(largeemb.InputError, match="unknown companion"):
        largeemb.evaluate(real, fake, companions=("fid",))


COMPANION_KEYS = (
    "f1", "f8", "f1_8", "fd_infinity", "authenticity", "vendi_real", "vendi_fake", "p_precision", "p_recall", "kid",
)


@pytest.mark.parametrize("block_rows", [256, 700, 2048])
def test_companions_do_not_depend_on_block_size(block_rows, write_zarr):
    real, fake = duplicated(1600, 8, 7), mixture(1500, 8, 8, keep=6)
    base = largeemb.evaluate(
        real, fake, k=3, plots=False, kid=True, block_rows=4096, panel_rows=4096, companions=COMPANIONS
    )
    got = largeemb.evaluate(
        real, fake, k=3, plots=False, kid=True, block_rows=block_rows, panel_rows=128, companions=COMPANIONS
    )
    for key in COMPANION_KEYS[:-3]:
        assert got.metrics[key] == base.metrics[key], key
    # KID sums run over other tiles in another order, and P-precision/recall take
    # log(d/R) from float32 tiles whose rounding depends on the GEMM's shape:
    # equal to 1e-8, far below any difference that could matter.
    for key in COMPANION_KEYS[-3:]:
        assert got.metrics[key] == pytest.approx(base.metrics[key], rel=1e-8, abs=1e-12), key
    np.testing.assert_array_equal(got.fake_authentic, base.fake_authentic)


@pytest.mark.slow
def test_companions_are_the_same_on_two_worker_processes(write_zarr):
    real, fake = duplicated(1600, 8, 7), mixture(1500, 8, 8, keep=6)
    paths = write_zarr("real.zarr", real, chunks=(300, 8)), write_zarr("fake.zarr", fake, chunks=(300, 8))
    local = largeemb.evaluate(*paths, k=3, plots=False, kid=True, block_rows=512, companions=COMPANIONS)
    remote = largeemb.evaluate(
        *paths, k=3, plots=False, kid=True, block_rows=512, workers=2, threads_per_worker=1, companions=COMPANIONS
    )
    for key in COMPANION_KEYS:
        assert remote.metrics[key] == pytest.approx(local.metrics[key], rel=1e-12, abs=1e-15), key


def test_kid_routes_agree_with_the_brute_force(monkeypatch):
    """The tensor route (low dim) and the every-pair route give the brute force's KID and standard error."""
    from largeemb.passes import kid as kid_pass

    real, fake = mixture(1000, 10, 3), duplicated(900, 10, 4)
    r, f = real.astype(np.float64), fake.astype(np.float64)
    n, m = len(r), len(f)
    k_rr, k_ff, k_rf = poly(r, r), poly(f, f), poly(r, f)
    np.fill_diagonal(k_rr, 0)
    np.fill_diagonal(k_ff, 0)
    exact = k_rr.sum() / (n * (n - 1)) + k_ff.sum() / (m * (m - 1)) - 2 * k_rf.sum() / (n * m)
    results = {}
    for route, max_dim in (("tensor", 256), ("pairs", 0)):
        monkeypatch.setattr(kid_pass, "TENSOR_MAX_DIM", max_dim)
        results[route] = largeemb.evaluate(
            real, fake, k=3, plots=False, samples=False, companions=(), kid=True, block_rows=300
        )
    for result in results.values():
        assert abs(result.metrics["kid"] - exact) <= 1e-9 * np.abs(k_rf).mean()
    assert results["tensor"].standard_errors()["kid"] == pytest.approx(
        results["pairs"].standard_errors()["kid"], rel=1e-9
    )


@pytest.mark.slow
def test_fd_infinity_is_the_same_number_every_time():
    """Its FDs run two at a time: each must see BLAS at one thread throughout (a per-call limit
    that the other thread restored gave 2 different values in about one of three sets of 12 runs).
    The limit is the thread policy's, set around the whole call as the API sets it."""
    from largeemb.run.threads import one_blas_thread

    rng = np.random.default_rng(0)
    real, fake = rng.standard_normal((3000, 256)), rng.standard_normal((3000, 256)) + 0.1
    nested = [(n, fake[:n].mean(axis=0), np.cov(fake[:n], rowvar=False)) for n in range(300, 3001, 300)]
    with one_blas_thread():
        values = {fd_infinity(real.mean(axis=0), np.cov(real, rowvar=False), nested)[0] for _ in range(60)}
    assert len(values) == 1, values
