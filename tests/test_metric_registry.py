"""Metrics as modules (largeemb.metrics): what they declare, how their needs join, and
the order their numbers reach metrics.json. The numbers themselves are checked
against oracles in test_metrics.py and test_companions.py."""

from types import SimpleNamespace

import numpy as np
import pytest

import largeemb
from largeemb.config import COMPANIONS, EvaluateConfig
from largeemb.errors import InputError
from largeemb.metrics import Needs, Pass, needs_of, prdc


def shape(rows, dim, name="set"):
    return SimpleNamespace(rows=rows, dim=dim, name=name)


def test_needs_join_lists_in_order_without_repeats():
    run = Pass("a", print)
    joined = Needs(k=(1,), unit=("real",), passes=(run,)) | Needs(
        k=(4, 1), unit=("fake", "real"), passes=(run, Pass("b", len))
    )
    assert joined.k == (1, 4) and joined.unit == ("real", "fake")
    assert [p.name for p in joined.passes] == ["a", "b"]


def test_needs_refuse_two_different_things_one_pass_computes_once():
    shells = (np.zeros(3, np.int8), 1)
    assert (Needs(shells=shells) | Needs(shells=shells)).shells is shells
    assert (Needs() | Needs(realism=prdc.realism_radii)).realism is prdc.realism_radii
    with pytest.raises(ValueError, match="shells"):
        Needs(shells=shells) | Needs(shells=(np.zeros(3, np.int8), 1))
    with pytest.raises(ValueError, match="realism"):
        Needs(realism=prdc.realism_radii) | Needs(realism=np.sqrt)


def test_a_reference_keeps_what_any_metric_may_need_of_the_real_set():
    """Chosen or not: k = 1 (authenticity), k = 4 (P-precision/recall), k = 9 (PR-cover), the unit moment (Vendi)."""
    needs = needs_of(EvaluateConfig(companions=()), shape(5000, 32), None)
    assert needs.k == (1, 4, 9) and needs.unit == ("real",)
    assert needs.shells is None and needs.realism is None and needs.passes == ()


def test_an_evaluate_asks_only_for_the_chosen_metrics():
    real, fake = shape(5000, 32), shape(4000, 32)
    bare = needs_of(EvaluateConfig(companions=(), samples=False), real, fake)
    assert bare == Needs(splits=True)  # precision, recall, density, coverage: their standard errors' splits
    assert needs_of(EvaluateConfig(companions=()), real, fake).realism is prdc.realism_radii  # per-sample values
    every = needs_of(EvaluateConfig(companions=COMPANIONS, kid=True, kid_subsets=3, kid_subset_size=100), real, fake)
    assert every.k == (1, 4, 9) and every.unit == ("real", "fake") and every.prob_radii[0] == 4
    assert every.shells is not None and len(every.shells[0]) == fake.rows
    assert [p.name for p in every.passes] == ["kid", "kid_subsets", "cmmd", "mifid", "kad", "rke"]
    # Few rows: Vendi from the rows (no unit moment), no FD∞ shells for a real set with rows <= dim.
    small = needs_of(EvaluateConfig(companions=("vendi", "fd_infinity")), shape(20, 32), shape(4000, 32))
    assert small.unit == ("fake",) and small.shells is None


def test_a_metric_refuses_what_the_inputs_cannot_serve_before_any_work():
    with pytest.raises(InputError, match="KID subsets of 500 rows"):
        needs_of(EvaluateConfig(kid_subsets=2, kid_subset_size=500), shape(5000, 8, "r"), shape(300, 8, "f"))


def test_numbers_reach_metrics_json_in_registry_order():
    rng = np.random.default_rng(3)
    real, fake = rng.standard_normal((400, 6)), rng.standard_normal((350, 6)) + 0.1
    result = largeemb.evaluate(
        real, fake, k=(3, 2), plots=False, companions=COMPANIONS, kid=True, kid_subsets=2, kid_subset_size=100,
        block_rows=128,
    )
    out = result.to_dict()
    per_k = [
        "precision", "recall", "density", "coverage", "f1", "f8", "f1_8",
        "clipped_density", "clipped_coverage", "sym_precision", "sym_recall", "rarity_mean",
    ]
    assert list(out["metrics"]) == per_k + [
        "fd", "fd_infinity", "authenticity", "vendi_real", "vendi_fake", "p_precision", "p_recall",
        "kid", "kid_subsets_mean", "kid_subsets_std", "cmmd", "cover_precision", "cover_recall",
        "memorization", "mifid", "kad", "rke_real", "rke_fake",
    ]
    assert list(out["by_k"]) == ["3", "2"] and all(list(v) == per_k for v in out["by_k"].values())
    # Authenticity's and the memorisation share's are binomial over the fake rows: the real set held fixed.
    assert list(out["standard_errors"]) == ["3", "2", "kid"]
    assert list(out["standard_errors_given_real"]) == ["3", "2", "authenticity", "memorization"]
    assert list(out["details"]) == [
        "fd_infinity", "p_precision_recall", "kid_se", "kid_subsets", "cmmd",
        "clipped_density_coverage", "sym_precision_recall", "pr_cover", "memorization", "mifid", "kad", "rke",
        "screening",
    ]
    # The radii kept on the result are the config's k only (k = 1 and 4 were computed for the companions).
    assert result.real_radii.shape == (400, 2) and result.fake_radii.shape == (350, 2)
    assert result.fake_authentic is not None and len(result.fake_authentic) == 350
