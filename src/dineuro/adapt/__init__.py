"""Adaptation to a lab's own stacks without labels: ``dineuro adapt``.

No synthetic generator covers every microscope; a lab has many stacks of its own and no gold
SWCs. :func:`adapt` fine-tunes a network on those stacks with pseudo-labels it makes itself
(self-training), mixed with synthetic stacks with gold labels so that it does not forget.

- :mod:`dineuro.adapt.labels`: pseudo-labels from the network's map and the tracer.
- :mod:`dineuro.adapt.loss`: Dice + cross-entropy that skips undecided voxels.
- :mod:`dineuro.adapt.crops`: batches mixing the lab's crops and synthetic ones.
- :mod:`dineuro.adapt.config`: :class:`AdaptConfig`.
- :mod:`dineuro.adapt.stacks`: the lab's stacks, the hold-out, the synthetic dataset.
- :mod:`dineuro.adapt.guards`: the guard rails checked around every round.
- :mod:`dineuro.adapt.run_folder`: the run's files, which let it resume.
- :mod:`dineuro.adapt.loop`: the rounds and resume.
"""

from dineuro.adapt.config import AdaptConfig
from dineuro.adapt.guards import AdaptWarning
from dineuro.adapt.labels import BACKGROUND, FOREGROUND, IGNORE, pseudo_label
from dineuro.adapt.loop import AdaptResult, adapt, label_stack

__all__ = ["BACKGROUND", "FOREGROUND", "IGNORE", "AdaptConfig", "AdaptResult", "AdaptWarning",
           "adapt", "label_stack", "pseudo_label"]
