"""DARTS: a softmax mixture over every choice, first-order bilevel, no resource term.

Weights step on search-train windows, architecture logits on arch-validation rows; the derived
arch is the argmax of each choice. DARTS knows no budget, so it shows what the pipeline's budget
guarantee has to project.
"""

from __future__ import annotations

from nasrec.strategies._differentiable import DifferentiableStrategy
from nasrec.strategies.base import register_strategy


@register_strategy
class Darts(DifferentiableStrategy):
    name = "darts"
    summary = "softmax mixture of all choices, first-order bilevel (weights: train, arch: arch-valid); argmax"
