"""predict and evaluate on small models, against logits computed directly."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from torch import nn

from longtail.errors import LongtailError
from longtail.eval import evaluate, predict


def to_float(batch: torch.Tensor) -> torch.Tensor:
    return batch.float().div(255.0).sub(0.5)


def images_and_model(n: int = 37, num_classes: int = 10) -> tuple[torch.Tensor, nn.Module]:
    torch.manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 4, 4), dtype=torch.uint8)
    model = nn.Sequential(nn.Flatten(), nn.Linear(48, num_classes))
    return images, model


@pytest.mark.parametrize("batch_size", [1, 8, 37, 100])
def test_predict_matches_direct_argmax(batch_size: int) -> None:
    images, model = images_and_model()
    with torch.no_grad():
        expected = model(to_float(images)).argmax(dim=1)
    preds = predict(model, images, batch_size=batch_size, transform=to_float)
    assert preds.dtype == torch.int64
    assert torch.equal(preds, expected)


def test_predict_runs_in_eval_mode_and_restores_each_module_mode() -> None:
    seen: list[bool] = []
    model = nn.Sequential(nn.Flatten(), nn.Dropout(p=0.9), nn.Linear(48, 3))
    model[0].register_forward_hook(lambda module, args, out: seen.append(module.training))
    model.train()
    model[1].eval()  # e.g. a frozen part kept in eval mode inside a training model
    images, _ = images_and_model()
    with torch.no_grad():
        expected = model[2](to_float(images).flatten(1)).argmax(dim=1)
    preds = predict(model, images, batch_size=16, transform=to_float)
    assert seen == [False, False, False]
    assert torch.equal(preds, expected)  # dropout was off
    assert [m.training for m in model] == [True, False, True]


def test_predict_restores_mode_after_an_error() -> None:
    images, model = images_and_model()
    model.train()

    def failing(batch: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        predict(model, images, batch_size=8, transform=failing)
    assert all(m.training for m in model.modules())


def test_predict_empty_and_bad_arguments() -> None:
    images, model = images_and_model()
    empty = predict(model, images[:0], batch_size=4, transform=to_float)
    assert empty.shape == (0,) and empty.dtype == torch.int64
    with pytest.raises(LongtailError, match="batch_size"):
        predict(model, images, batch_size=0, transform=to_float)
    with pytest.raises(LongtailError, match="logits"):
        predict(nn.Identity(), images, batch_size=4, transform=to_float)


def test_predict_under_bfloat16_autocast_on_cpu() -> None:
    images, model = images_and_model()
    preds = predict(model, images, batch_size=16, transform=to_float, autocast_dtype=torch.bfloat16)
    with torch.no_grad():
        logits = model(to_float(images))
    # bf16 may flip near-ties only: every prediction must score within bf16 error of the best.
    gap = logits.max(dim=1).values - logits.gather(1, preds[:, None]).squeeze(1)
    assert preds.shape == (37,) and float(gap.max()) < 0.05


def test_evaluate_tiny_linear_model_against_manual_counts() -> None:
    images, model = images_and_model(n=60, num_classes=4)
    labels = torch.arange(60) % 3  # class 3 absent from the evaluation set
    counts = [500, 120, 30, 5]
    summary = evaluate(
        model,
        images,
        labels,
        num_classes=4,
        train_counts=counts,
        batch_size=16,
        transform=to_float,
    )
    with torch.no_grad():
        preds = model(to_float(images)).argmax(dim=1)
    per_class = [100.0 * ((preds == c) & (labels == c)).sum().item() / 20 for c in range(3)]
    assert summary["per_class"][:3] == pytest.approx(per_class)
    assert summary["per_class"][3] is None
    assert summary["top1"] == pytest.approx(100.0 * (preds == labels).float().mean().item())
    assert summary["mean_class_acc"] == pytest.approx(sum(per_class) / 3)
    assert summary["many"] == pytest.approx((per_class[0] + per_class[1]) / 2)
    assert summary["medium"] == pytest.approx(per_class[2])
    assert summary["few"] is None  # class 3 is few-shot but absent
    assert summary["head"] == pytest.approx(per_class[0])  # round(0.3 * 4) = 1 head class


def test_evaluate_rejects_inconsistent_inputs() -> None:
    images, model = images_and_model(n=20, num_classes=5)
    labels = torch.arange(20) % 5
    run = partial(evaluate, model, images, batch_size=8, transform=to_float)
    with pytest.raises(LongtailError, match="train_counts has 4"):
        run(labels, num_classes=5, train_counts=[1] * 4)
    with pytest.raises(LongtailError, match="labels span"):
        run(labels, num_classes=4, train_counts=[1] * 4)
    with pytest.raises(LongtailError, match="one label per image"):
        run(labels[:5], num_classes=5, train_counts=[1] * 5)
    # A 5-way head evaluated as 3 classes: labels fit, some predictions do not.
    small = labels % 3
    with torch.no_grad():
        assert int(model(to_float(images)).argmax(1).max()) >= 3
    with pytest.raises(LongtailError, match="predicted class ids >= num_classes=3"):
        run(small, num_classes=3, train_counts=[1] * 3)
