"""Synthetic, labelled neuron stacks that look like confocal light microscopy."""

from dineuro.data.synth.generate import (
    FOREGROUND_BOUNDS,
    PRESETS,
    SynthConfig,
    SyntheticStack,
    preset_config,
    split_names,
    synthesize_stack,
    write_synthetic_dataset,
)
from dineuro.data.synth.imaging import ImagingConfig, imaging_for_difficulty
from dineuro.data.synth.morphology import GrowthConfig

__all__ = [
    "FOREGROUND_BOUNDS",
    "PRESETS",
    "GrowthConfig",
    "ImagingConfig",
    "SynthConfig",
    "SyntheticStack",
    "imaging_for_difficulty",
    "preset_config",
    "split_names",
    "synthesize_stack",
    "write_synthetic_dataset",
]
