"""Every command-line default equals the default of the library function it feeds.

The defaults live in one torch-free module (:mod:`dineuro.defaults`) that both import; these
tests read each command's option defaults from the CLI as click sees them and each library
default from the function's signature, so a literal typed again on either side is caught.
"""

from __future__ import annotations

import dataclasses
import inspect

import pytest
import typer

from dineuro import cli
from dineuro.evaluate import compare_swc_files, evaluate_folder
from dineuro.predict import predict_stack, sliding_window_predict
from dineuro.predictor import Predictor
from dineuro.trace import trace

#: CLI option name -> (library function, its parameter name), per command.
TRACE_OPTIONS = {name: (trace, name) for name in (
    "high", "low", "max_gap", "gap_floor", "follow_gap", "follow_contrast", "follow_line_gap",
    "spur_radii", "min_piece_length", "min_tree_length", "smooth", "keep_fragments", "method",
    "units", "neurite_type")} | {
    "prune": (trace, "prune_length"), "step": (trace, "node_step")}
PREDICT_OPTIONS = {name: (sliding_window_predict, name)
                   for name in ("overlap", "batch_size", "flips", "precision")} | {
                   name: (predict_stack, name) for name in ("threshold", "prob_dtype")}
CASES = {
    "trace": TRACE_OPTIONS | {"root_snap": (trace, "root_snap")},
    "run": TRACE_OPTIONS | PREDICT_OPTIONS | {"mask": (Predictor.run, "mask")},
    "predict": PREDICT_OPTIONS,
    "compare": {"threshold": (compare_swc_files, "threshold")},
    "evaluate": {"swc_threshold": (evaluate_folder, "swc_threshold")},
}


def _cli_defaults(command: str) -> dict[str, object]:
    click_command = typer.main.get_command(cli.app).commands[command]
    return {param.name: param.default for param in click_command.params}


@pytest.mark.parametrize("command", sorted(CASES))
def test_cli_defaults_are_the_library_defaults(command):
    defaults = _cli_defaults(command)
    for option, (function, parameter) in CASES[command].items():
        expected = inspect.signature(function).parameters[parameter].default
        assert expected is not inspect.Parameter.empty, (function.__name__, parameter)
        assert defaults[option] == expected, (command, option, defaults[option], expected)


def test_every_numeric_trace_option_of_the_cli_is_checked():
    """A new trace option with a default must be added to the table above."""
    numeric = {name for name, value in _cli_defaults("trace").items()
               if isinstance(value, float)}
    assert numeric <= set(CASES["trace"]), numeric - set(CASES["trace"])


@pytest.mark.parametrize("command", ["predict", "run"])
def test_all_windows_is_the_negation_of_skip_empty(command):
    library = inspect.signature(sliding_window_predict).parameters["skip_empty"].default
    assert _cli_defaults(command)["all_windows"] is (not library)


def test_the_predictor_applies_the_library_defaults():
    """:class:`Predictor` holds the window options as fields; their defaults are the
    library's, so ``Predictor.from_checkpoint(path)`` predicts as the functions do."""
    fields = {field.name: field.default for field in dataclasses.fields(Predictor)}
    library = inspect.signature(sliding_window_predict).parameters
    for name in ("overlap", "batch_size", "flips", "precision", "skip_empty"):
        assert fields[name] == library[name].default, name


def test_block_and_cluster_defaults_are_the_library_defaults():
    """`predict --block` and `run --block` parse to the block the library uses, and a run on a
    cluster gets run_volume's memory limit."""
    from dineuro.cli._common import parse_triple
    from dineuro.predict import DEFAULT_BLOCK, predict_blocks
    from dineuro.scale import run_volume

    volume = inspect.signature(run_volume).parameters
    for command in ("predict", "run"):
        assert parse_triple(_cli_defaults(command)["block"], "--block", int) == DEFAULT_BLOCK
    assert inspect.signature(predict_blocks).parameters["block"].default == DEFAULT_BLOCK
    assert volume["block"].default == DEFAULT_BLOCK
    assert _cli_defaults("run")["memory_limit"] == volume["memory_limit"].default
