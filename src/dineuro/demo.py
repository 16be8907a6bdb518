"""The main job on an embedded default: a few realistic synthetic stacks, the packaged default
model, predict + trace, scores against the gold, and a picture.

Every stage writes under one folder and is skipped when its output is already there, so the demo
can be re-run (or resumed after an interruption) cheaply. Nothing is downloaded or trained: the
default model ships with dineuro (``dineuro model-card`` says how it was trained), and the stacks
come from the ``realistic`` synthetic preset with a seed the model was not trained on.
"""

from __future__ import annotations

from dataclasses import replace

from dineuro.data.synth import PRESETS, SynthConfig

#: The demo's stacks: small enough for a minute on 2 CPU cores, all in the test split.
DEMO_STACKS, DEMO_SHAPE, DEMO_SEED = 3, (48, 128, 128), 1


def demo_synth_config() -> SynthConfig:
    """Three realistic stacks of 48x128x128, seed 1 (the default model trained on seed 0)."""
    return replace(PRESETS["realistic"], n_stacks=DEMO_STACKS, shape=DEMO_SHAPE, seed=DEMO_SEED,
                   split=(0.0, 0.0, 1.0))
