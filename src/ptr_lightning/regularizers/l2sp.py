"""L2-SP: weight decay towards the pre-trained weights instead of towards 0."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ptr_lightning.core import names
from ptr_lightning.core.settings import check, non_negative
from ptr_lightning.core.tensors import squared_norm
from ptr_lightning.regularizers.base import Regularizer, StepTensors


class L2SP(Regularizer):
    """L2-SP (Li, Grandvalet & Davoine, "Explicit Inductive Bias for Transfer Learning with
    Convolutional Networks", ICML 2018, Eq. 3).

    ``L = L_ce + alpha/2 * ||w_S - w0_S||^2 + beta/2 * ||w_new||^2``: ``w_S`` are all the
    backbone's parameters, ``w0_S`` their values when :meth:`attach` ran (the pre-trained
    starting point), ``w_new`` all the parameters of the new head (weights and biases, as the
    weight decay it replaces would take). Defaults: ``alpha = beta = 0.01`` (the paper picks
    alpha in {0.01, 0.1} per task, beta = 0.01).

    L2-SP *replaces* weight decay on the backbone and the head (:attr:`replaces_weight_decay`):
    the optimizer should give :meth:`penalized_parameters` ``weight_decay=0``, otherwise they
    are pulled towards both w0 and 0.

    ``w0`` is kept as persistent buffers ``w0_<param name with "." -> "__">``, so it follows
    ``.to()`` and is saved in (and restored from) the checkpoint. The backbone and head are only
    referenced, not registered as submodules, so their parameters appear once in a state_dict.
    """

    replaces_weight_decay = True
    RULES = {"alpha": non_negative("regularizer.alpha"), "beta": non_negative("regularizer.beta")}

    def __init__(self, alpha: float = 0.01, beta: float = 0.01) -> None:
        super().__init__()
        check(self.RULES, alpha=alpha, beta=beta)
        self.alpha, self.beta = float(alpha), float(beta)
        # A plain tuple, not submodules: the LightningModule owns (and checkpoints) these.
        self._attached: tuple[nn.Module, nn.Module] | None = None

    @staticmethod
    def buffer_name(param_name: str) -> str:
        return "w0_" + param_name.replace(".", "__")

    def attach(self, backbone: nn.Module, head: nn.Module, source_classifier: nn.Module) -> None:
        self._attached = (backbone, head)
        for name, param in backbone.named_parameters():
            self.register_buffer(self.buffer_name(name), param.detach().clone(), persistent=True)

    def _modules_or_raise(self) -> tuple[nn.Module, nn.Module]:
        if self._attached is None:
            raise RuntimeError("L2SP.attach(backbone, head, ...) must run before the first step")
        return self._attached

    def penalized_parameters(self) -> list[nn.Parameter]:
        """The parameters whose weight decay L2-SP replaces (backbone and head)."""
        backbone, head = self._modules_or_raise()
        return [*backbone.parameters(), *head.parameters()]

    def forward(self, ce_loss: Tensor, step: StepTensors) -> tuple[Tensor, dict[str, Tensor]]:
        backbone, head = self._modules_or_raise()
        # Parameters are looked up by name each step (not cached) so a conversion that swaps the
        # Parameter objects (e.g. ``.to()`` with overwrite_module_params_on_conversion) is safe.
        zero = ce_loss.new_zeros((), dtype=torch.float32)
        source = sum(
            (
                squared_norm(param - getattr(self, self.buffer_name(name)))
                for name, param in backbone.named_parameters()
            ),
            zero,
        )
        new = sum((squared_norm(param) for param in head.parameters()), zero)
        term = 0.5 * self.alpha * source + 0.5 * self.beta * new
        return ce_loss + term, {
            names.TRAIN_REG_LOSS: term.detach(),
            "l2sp/source_dist_sq": source.detach(),
            "l2sp/head_norm_sq": new.detach(),
        }
