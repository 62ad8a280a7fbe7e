"""InfoNCE, SupCon and KCL against brute-force loops, their reductions, edge cases and sampling."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from longtail.errors import LongtailError
from longtail.losses import CONTRASTIVE_LOSSES, InfoNCELoss, KCLLoss, SupConLoss
from longtail.losses.masks import (
    DrawLayout,
    build_contrast_set,
    kcl_positive_mask,
    sample_k_positives,
)
from longtail.strategies.hybrid import two_view_layout
from losses.reference import kcl_loop, supcon_loop

TAUS = [0.07, 0.1, 0.5, 1.0]
DTYPES = [torch.float32, torch.float64]
CONTRASTS = ["batch", "gathered", "queue"]
DIM = 8
# class patterns: long-tailed with singletons, one class, no positives at all, two views of 5 images
LABEL_PATTERNS = [
    [0] * 6 + [1] * 3 + [2] * 2 + [3, 4],
    [7] * 5,
    list(range(6)),
    [0, 0, 1, 2, 2, 3, 4, 4, 4, 1] * 2,
]


def tol(dtype: torch.dtype) -> dict[str, float]:
    return {"rel": 1e-10, "abs": 1e-10} if dtype == torch.float64 else {"rel": 2e-5, "abs": 2e-5}


def features_for(n: int, dtype: torch.dtype, seed: int) -> torch.Tensor:
    # raw, unnormalised projections: the losses normalise
    return 3.0 * torch.randn(n, DIM, generator=torch.Generator().manual_seed(seed)).to(dtype)


def refs_for(kind: str, features: torch.Tensor, labels: torch.Tensor, seed: int) -> dict[str, Any]:
    """No refs, a simulated all-gather (this rank at offset 4), or a queue without the anchors."""
    g = torch.Generator().manual_seed(seed + 1)
    if kind == "batch":
        return {}
    other = torch.randn(9, DIM, generator=g).to(features.dtype)
    other_labels = torch.randint(0, 5, (9,), generator=g)
    if kind == "gathered":
        return {
            "ref_features": torch.cat([other[:4], features, other[4:]]),
            "ref_labels": torch.cat([other_labels[:4], labels, other_labels[4:]]),
            "self_offset": 4,
        }
    return {"ref_features": other, "ref_labels": other_labels, "self_offset": None}


@pytest.mark.parametrize("contrast", CONTRASTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tau", TAUS)
def test_supcon_matches_loop(tau: float, dtype: torch.dtype, contrast: str) -> None:
    for seed, pattern in enumerate(LABEL_PATTERNS):
        labels = torch.tensor(pattern)
        features = features_for(len(pattern), dtype, seed)
        refs = refs_for(contrast, features, labels, seed)
        got = SupConLoss(temperature=tau)(features, labels, **refs)
        assert got.dtype == dtype
        assert float(got) == pytest.approx(supcon_loop(features, labels, tau, **refs), **tol(dtype))


@pytest.mark.parametrize("contrast", CONTRASTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tau", TAUS)
def test_infonce_matches_loop(tau: float, dtype: torch.dtype, contrast: str) -> None:
    # instance ids for (images, views): 6 x 2, one image x 2, 4 x 3, and 5 x 1 (no positive at all)
    for seed, (images, views) in enumerate([(6, 2), (1, 2), (4, 3), (5, 1)]):
        ids = torch.arange(images).repeat(views)
        features = features_for(len(ids), dtype, seed)
        refs = refs_for(contrast, features, ids, seed)
        got = InfoNCELoss(temperature=tau)(features, ids, **refs)
        assert float(got) == pytest.approx(supcon_loop(features, ids, tau, **refs), **tol(dtype))


@pytest.mark.parametrize("contrast", CONTRASTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tau", TAUS)
def test_kcl_matches_loop_on_its_drawn_positives(
    tau: float, dtype: torch.dtype, contrast: str
) -> None:
    pattern = LABEL_PATTERNS[3]  # 5 images x 2 views, classes of 1, 2 and 3 images
    labels, ids = torch.tensor(pattern), torch.arange(10).repeat(2)
    features = features_for(len(pattern), dtype, 0)
    refs = refs_for(contrast, features, labels, 0)
    ref_ids = {"batch": None, "gathered": torch.cat([ids[:4] + 50, ids, ids[:5] + 60])}
    ref_ids["queue"] = torch.cat([ids[:3], torch.full((6,), -1)])  # 3 of the anchors' own keys
    for k in [1, 2, 100]:
        for instance_ids in [None, ids]:
            extra = {"instance_ids": instance_ids}
            if instance_ids is not None and contrast != "batch":
                extra["ref_instance_ids"] = ref_ids[contrast]
            contrast_set = build_contrast_set(
                features,
                labels,
                refs.get("ref_features"),
                refs.get("ref_labels"),
                refs.get("self_offset"),
            )
            ids_pair = (instance_ids, extra.get("ref_instance_ids", instance_ids))
            mask = kcl_positive_mask(contrast_set, k, torch.Generator().manual_seed(k), *ids_pair)
            loss = KCLLoss(k=k, temperature=tau, generator=torch.Generator().manual_seed(k))
            got = loss(features, labels, **refs, **extra)
            expected = kcl_loop(
                features, mask, tau, refs.get("ref_features"), refs.get("self_offset")
            )
            assert float(got) == pytest.approx(expected, **tol(dtype))


@pytest.mark.parametrize("tau", TAUS)
def test_reductions_supcon_infonce_and_kcl(tau: float) -> None:
    ids = torch.arange(8).repeat(2)
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 3, 3]).repeat(2)
    features = features_for(16, torch.float64, 3)
    infonce = InfoNCELoss(temperature=tau)(features, ids)
    assert float(SupConLoss(temperature=tau)(features, ids)) == pytest.approx(
        float(infonce), rel=1e-12
    )
    supcon = SupConLoss(temperature=tau)(features, labels)
    for k in [4, 5, 100]:  # class 0: 3 images x 2 views, so 4 candidates beyond self and own view
        kcl = KCLLoss(k=k, temperature=tau, generator=torch.Generator().manual_seed(0))
        assert float(kcl(features, labels, instance_ids=ids)) == pytest.approx(
            float(supcon), rel=1e-12
        )
    fewer = KCLLoss(k=3, temperature=tau, generator=torch.Generator().manual_seed(0))
    assert float(fewer(features, labels, instance_ids=ids)) != pytest.approx(
        float(supcon), rel=1e-6
    )


@pytest.mark.parametrize("n", [1, 4, 16])
@pytest.mark.parametrize("tau", [0.1, 0.5])
def test_identical_embeddings_give_log_2n_minus_1(n: int, tau: float) -> None:
    features = torch.ones(2 * n, DIM)
    got = InfoNCELoss(temperature=tau)(features, torch.arange(n).repeat(2))
    assert float(got) == pytest.approx(math.log(2 * n - 1), abs=1e-5)


def test_no_positives_gives_zero_and_backward_works() -> None:
    features = torch.randn(6, DIM, requires_grad=True)
    for loss in [SupConLoss(), InfoNCELoss(), KCLLoss(k=2)]:
        value = loss(features, torch.arange(6))
        value.backward()
        assert float(value.detach()) == 0.0 and features.grad is not None
        assert torch.equal(features.grad, torch.zeros_like(features))
        features.grad = None


def batch_losses() -> list[tuple[str, torch.nn.Module, dict[str, torch.Tensor]]]:
    return [
        ("infonce", InfoNCELoss(), {}),
        ("supcon", SupConLoss(), {}),
        ("kcl", KCLLoss(k=100), {"instance_ids": torch.arange(6).repeat(2)}),
    ]


@settings(deadline=None, max_examples=15)
@given(seed=st.integers(0, 10_000), classes=st.integers(1, 6))
def test_batch_permutation_invariance(seed: int, classes: int) -> None:
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(12, DIM, generator=g, dtype=torch.float64)
    labels = torch.randint(0, classes, (6,), generator=g).repeat(2)
    perm = torch.randperm(12, generator=g)
    for name, loss, extra in batch_losses():
        target = torch.arange(6).repeat(2) if name == "infonce" else labels
        permuted = {key: value[perm] for key, value in extra.items()}
        before = loss(features, target, **extra)
        after = loss(features[perm], target[perm], **permuted)
        assert float(after) == pytest.approx(float(before), rel=1e-12)


def test_gradcheck_float64() -> None:
    features = torch.randn(8, 4, dtype=torch.float64, requires_grad=True)
    labels, ids = torch.tensor([0, 0, 0, 1, 0, 0, 0, 1]), torch.arange(4).repeat(2)
    refs = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    ref_labels = torch.tensor([0, 1, 1, 0, 2])
    assert torch.autograd.gradcheck(lambda f: InfoNCELoss(0.5)(f, ids), (features,))
    assert torch.autograd.gradcheck(
        lambda f, r: SupConLoss(0.1)(f, labels, ref_features=r, ref_labels=ref_labels),
        (features, refs),
    )

    def kcl(f: torch.Tensor) -> torch.Tensor:
        # a fresh generator per call: every evaluation draws the same positives
        return KCLLoss(k=1, temperature=0.07, generator=torch.Generator().manual_seed(3))(
            f, labels, instance_ids=ids
        )

    assert torch.autograd.gradcheck(kcl, (features,))


def kcl_mask(
    labels: torch.Tensor, k: int, seed: int, ids: torch.Tensor | None = None
) -> torch.Tensor:
    features = torch.zeros(len(labels), DIM)
    contrast = build_contrast_set(features, labels, None, None, None)
    return kcl_positive_mask(contrast, k, torch.Generator().manual_seed(seed), ids, ids)


@pytest.mark.parametrize("k", [1, 2, 4, 50])
def test_kcl_draws_min_k_candidates_plus_own_views(k: int) -> None:
    labels = torch.tensor([0] * 7 + [1] * 3 + [2]).repeat(2)
    ids = torch.arange(11).repeat(2)
    same = labels[:, None] == labels[None, :]
    own = (ids[:, None] == ids[None, :]) & ~torch.eye(22, dtype=torch.bool)
    for seed in range(5):
        mask = kcl_mask(labels, k, seed, ids)
        candidates = (same & ~own).sum(1) - 1  # minus the anchor itself
        assert torch.equal((mask & ~own).sum(1), candidates.clamp(max=k))
        assert not (mask & ~same).any() and not mask.diagonal().any()
        assert (mask | ~own).all()  # the other view is always kept
        plain = kcl_mask(labels, k, seed)
        assert torch.equal(plain.sum(1), (same.sum(1) - 1).clamp(max=k))


def test_kcl_draw_is_uniform_over_candidates() -> None:
    labels = torch.zeros(11, dtype=torch.long)  # each anchor has 10 candidates, k = 3
    counts = sum(kcl_mask(labels, 3, seed).double() for seed in range(400))
    assert isinstance(counts, torch.Tensor)
    off_diagonal = counts[~torch.eye(11, dtype=torch.bool)] / 400
    # binomial(400, 0.3): std 0.023; 110 cells, so 5 std is a safe bound
    assert (off_diagonal - 0.3).abs().max() < 0.115
    assert float(off_diagonal.mean()) == pytest.approx(0.3, abs=1e-12)


def test_kcl_seed_reproducibility() -> None:
    features, labels = features_for(20, torch.float32, 1), torch.zeros(20, dtype=torch.long)

    def run(seed: int) -> float:
        return float(KCLLoss(k=2, generator=torch.Generator().manual_seed(seed))(features, labels))

    assert run(5) == run(5)
    assert len({run(seed) for seed in range(6)}) > 1


def test_a_layout_takes_its_rows_and_columns_of_the_whole_draw() -> None:
    """A rank's block, with its rows and columns in any order, picks what the whole draw picks."""
    whole = torch.rand(6, 9, generator=torch.Generator().manual_seed(2)) < 0.6
    want = sample_k_positives(whole, 2, torch.Generator().manual_seed(5))
    rows, cols = (
        torch.tensor([4, 1, 5]),
        torch.randperm(9, generator=torch.Generator().manual_seed(1)),
    )
    block = whole[rows][:, cols]
    got = sample_k_positives(
        block, 2, torch.Generator().manual_seed(5), DrawLayout(rows, cols, (6, 9))
    )
    assert torch.equal(got, want[rows][:, cols])
    assert not torch.equal(got, sample_k_positives(block, 2, torch.Generator().manual_seed(5)))
    with pytest.raises(LongtailError, match="draw layout of 3 x 9 for 3 x 8"):
        sample_k_positives(block[:, :8], 2, None, DrawLayout(rows, cols, (6, 9)))


@pytest.mark.parametrize("world", [1, 2, 3])
def test_two_view_layout_places_each_ranks_views_as_one_process_stacks_them(world: int) -> None:
    """Rank-local [v1; v2] stacks, gathered in rank order, against one [v1; v2] stack of all."""
    n = 4
    v1, v2 = torch.arange(n * world), 100 + torch.arange(n * world)  # one process's rows, named
    one = torch.cat([v1, v2])
    gathered = torch.cat([torch.cat([v1[q * n : (q + 1) * n], v2[q * n : (q + 1) * n]])
                          for q in range(world)])  # fmt: skip
    for rank in range(world):
        layout = two_view_layout(n, world, rank)
        assert layout.shape == (2 * n * world, 2 * n * world)
        assert torch.equal(one[layout.cols], gathered)
        assert torch.equal(one[layout.rows], gathered[2 * n * rank : 2 * n * (rank + 1)])


def test_no_nan_for_large_small_zero_and_bf16_inputs() -> None:
    labels = torch.tensor([0, 0, 1, 1, 2, 0])
    for scale in [1e4, 1e-4]:
        x = (scale * torch.randn(6, DIM)).requires_grad_()
        SupConLoss(0.07)(x, labels).backward()
        assert x.grad is not None and torch.isfinite(x.grad).all()
    zero = torch.randn(6, DIM)
    zero[1] = 0.0
    zero.requires_grad_()
    value = SupConLoss(0.07)(zero, labels)
    value.backward()
    assert torch.isfinite(value) and zero.grad is not None and torch.isfinite(zero.grad).all()
    half = features_for(6, torch.float32, 2).to(torch.bfloat16)
    for tau in [0.07, 0.5]:
        got = SupConLoss(tau)(half, labels)
        assert got.dtype == torch.float32
        assert float(got) == pytest.approx(supcon_loop(half, labels, tau), rel=1e-4, abs=1e-4)


def test_user_errors_are_one_line_longtail_errors() -> None:
    x, y = torch.randn(4, DIM), torch.tensor([0, 0, 1, 1])
    bad_calls = [
        lambda: SupConLoss()(x, y, ref_features=x),
        lambda: SupConLoss()(x, y, ref_features=x, ref_labels=y, self_offset=1),
        lambda: SupConLoss()(x, y[:3]),
        lambda: SupConLoss()(x, y, ref_features=torch.randn(4, 3), ref_labels=y),
        lambda: KCLLoss()(x, y, ref_features=x, ref_labels=y, instance_ids=y),
        lambda: SupConLoss(temperature=0.0),
        lambda: KCLLoss(k=0),
    ]
    for call in bad_calls:
        with pytest.raises(LongtailError) as info:
            call()
        assert "\n" not in str(info.value)


def test_registry_names_every_loss() -> None:
    assert set(CONTRASTIVE_LOSSES) == {"infonce", "supcon", "kcl", "psc", "mpsc", "bcl"}
    assert CONTRASTIVE_LOSSES["kcl"] is KCLLoss


def test_logits_stay_float32_under_autocast() -> None:
    # at tau = 0.07 a bf16 matmul moves logits by ~0.05; the losses switch autocast off for it
    features, labels = features_for(12, torch.float32, 4), torch.tensor(LABEL_PATTERNS[0][:12])
    expected = float(SupConLoss(0.07)(features, labels))
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        got = SupConLoss(0.07)(features, labels)
    assert got.dtype == torch.float32
    assert float(got) == pytest.approx(expected, rel=1e-6)
