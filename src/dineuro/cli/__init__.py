"""The ``dineuro`` command line: each command parses its options, calls the library, and shows
progress; nothing else happens here.

The commands live by stage, in the order ``dineuro --help`` lists them: :mod:`.data` (convert,
synth, show), :mod:`.training` (train, adapt, experiment, pretrain2d), :mod:`.prediction`
(predict, trace, run, demo), :mod:`.scoring` (evaluate, compare, model-card) and
:mod:`.weights`; what they share is in :mod:`._common`. Importing this package does not import
torch: every command imports what it needs when it runs.
"""

# Importing a command module registers its commands, in this order.
from dineuro.cli import data, training, prediction, scoring, weights  # noqa: F401, I001
from dineuro.cli._common import app, main

__all__ = ["app", "main"]
