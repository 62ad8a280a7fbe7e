"""Prototypical supervised contrastive losses PSC and MPSC (Wang et al., Hybrid networks, CVPR 2021).

The contrast set is a learnable set of class prototypes, not the batch: memory is O(N * C * M)
whatever the class mix of the batch, and every sample meets every negative class. ``ref_*`` and
``self_offset`` are accepted so that callers can treat all contrastive losses alike, and IGNORED:
each sample's term depends only on itself and the prototypes, so under DDP the local batch is
right as is (gradient averaging gives the full-batch mean), and a MoCo queue has no role.
"""

from __future__ import annotations

import abc

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from longtail.errors import LongtailError
from longtail.losses.kernel import masked_contrastive, mean_over_valid
from longtail.losses.masks import check_temperature, cosine_logits, unit_rows


class _PrototypeContrast(nn.Module, abc.ABC):
    """Shared forward: features [N, D], labels [N] against ``bank()`` [C, M, D] -> scalar."""

    def __init__(self, num_classes: int, dim: int, temperature: float, exclude: bool) -> None:
        super().__init__()
        if num_classes < (2 if exclude else 1) or dim < 1:
            raise LongtailError(
                f"prototype loss needs num_classes >= 2 and dim >= 1 (got {num_classes}, {dim}):"
                " set them to the dataset's class count and the projection size"
            )
        self.temperature = check_temperature(temperature)
        self.exclude_positive = exclude

    @abc.abstractmethod
    def bank(self) -> Tensor:
        """The normalised prototypes as [C, M, D] (M = 1 for PSC)."""

    def extra_repr(self) -> str:
        c, m, d = self.bank().shape
        return f"num_classes={c}, num_prototypes={m}, dim={d}, temperature={self.temperature}, exclude_positive={self.exclude_positive}"

    def forward(
        self,
        features: Tensor,
        labels: Tensor,
        *,
        ref_features: Tensor | None = None,
        ref_labels: Tensor | None = None,
        self_offset: int | None = None,
    ) -> Tensor:
        """features [N, D], labels [N] in [0, C) -> scalar; ``ref_*`` are ignored (module doc)."""
        bank = self.bank()
        num_classes, per_class, dim = bank.shape
        if features.dim() != 2 or features.shape[1] != dim or labels.shape != features.shape[:1]:
            raise LongtailError(
                f"features {tuple(features.shape)} / labels {tuple(labels.shape)} must be"
                f" [N, {dim}] / [N]: set the loss's dim to the projection size"
            )
        n, labels = features.shape[0], labels.long()
        # one host sync buys a readable error instead of a device-side assert in one_hot
        if n and not 0 <= int(labels.min()) <= int(labels.max()) < num_classes:
            raise LongtailError(
                f"labels must lie in [0, {num_classes}): set num_classes to the dataset's class count"
            )
        logits = cosine_logits(
            unit_rows(features), unit_rows(bank.reshape(-1, dim)), self.temperature
        )
        own_class = F.one_hot(labels, num_classes).bool()[:, :, None].expand(-1, -1, per_class)
        own = own_class.reshape(n, -1)  # [N, C * M]
        # masked_select and masked_scatter both walk the mask row-major: row i's M own entries
        soft_assignment = logits.detach().masked_select(own).view(n, per_class).softmax(dim=1)
        weights = torch.zeros_like(logits).masked_scatter(own, soft_assignment)
        denominator = ~own if self.exclude_positive else torch.ones_like(own)
        loss, valid = masked_contrastive(logits, weights, denominator)
        return mean_over_valid(loss, valid)


class PSCLoss(_PrototypeContrast):
    """Prototypical supervised contrastive loss (Wang et al. 2021, eq. 4, §3.3 and §4.4).

        L_i = -log( exp(z_i . p_y / tau) / sum_{j != y} exp(z_i . p_j / tau) )

    with z_i and the prototypes p_j (parameter ``prototypes`` [C, D]) L2-normalised. The positive
    is EXCLUDED from the denominator, as the paper's gradient analysis has it (dL/ds_iy is then the
    constant -1/tau; the negatives' softmax lacks the dominating positive term).
    ``exclude_positive=False`` gives the standard softmax form, i.e. cross-entropy on cosine logits
    / tau. Default tau = 0.1: Hybrid-PSC on CIFAR-100 (the paper uses 1.0 on CIFAR-10).
    """

    def __init__(
        self, num_classes: int, dim: int, temperature: float = 0.1, exclude_positive: bool = True
    ) -> None:
        super().__init__(num_classes, dim, temperature, exclude_positive)
        # normal init, normalised in forward: directions uniform on the sphere
        self.prototypes = nn.Parameter(torch.randn(num_classes, dim))

    def bank(self) -> Tensor:
        return self.prototypes[:, None, :]


class MPSCLoss(_PrototypeContrast):
    """Multi-prototype PSC (Wang et al. 2021, eq. 5); parameter ``prototypes`` [C, M, D].

    The paper leaves MPSC unevaluated and eq. 5's symbols are lost in our copy; our form is

        L_i = sum_m w_im * -log( exp(s_i,y,m) / sum_{j != y, m'} exp(s_i,j,m') ),
        s_i,j,m = z_i . p_j,m / tau,   w_im = softmax_m(s_i,y,m), detached,

    positives = the own class's M prototypes weighted by the sample's soft assignment, the
    denominator = the prototypes of every other class (PSC's exclusion; ``exclude_positive=False``
    puts all C * M in it). w is detached: with a gradient the loss could fall by moving weight onto
    the nearest prototype instead of moving z, i.e. by a hard assignment; detached, w is an E-step
    (as in mixture models) and each prototype pulls z in proportion to its responsibility. M = 1
    gives w = 1 and exactly :class:`PSCLoss`. Default tau = 0.1 (PSC's CIFAR-100 value).
    """

    def __init__(
        self,
        num_classes: int,
        dim: int,
        num_prototypes: int = 1,
        temperature: float = 0.1,
        exclude_positive: bool = True,
    ) -> None:
        super().__init__(num_classes, dim, temperature, exclude_positive)
        if num_prototypes < 1:
            raise LongtailError(f"num_prototypes={num_prototypes} must be >= 1: pass e.g. 3")
        self.prototypes = nn.Parameter(torch.randn(num_classes, num_prototypes, dim))

    def bank(self) -> Tensor:
        return self.prototypes
