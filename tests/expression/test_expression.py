"""The objective grammar of the widget's editor: values, precedence, errors with positions."""

from __future__ import annotations

import functools

import pytest
import torch

from lucid_widgets.expression.compiler import (
    ExpressionError,
    compile_objective,
    parse,
    referenced_layers,
    unit_term,
)
from lucid_widgets.optvis import objectives
from lucid_widgets.optvis.hooks import resolve_layer
from lucid_widgets.optvis.objective_base import Activations

torch.manual_seed(0)
ACTS = Activations(
    {"l": torch.rand(2, 4, 3, 3), "features.3": torch.rand(2, 5, 3, 3), "0": torch.rand(2, 6)}
)
LAYERS = {"l": 4, "features.3": 5, "0": 6, "mixed4a": 508, "mixed4b": 512}


def value(text: str) -> float:
    return float(compile_objective(text, layers=LAYERS)(ACTS))


def mean(layer: str, unit: int) -> float:
    return float(ACTS[layer][:, unit].mean())


def test_layer_unit_is_channel_mean():
    assert value("l:1") == pytest.approx(mean("l", 1))
    assert compile_objective("l:1", layers=LAYERS).name == "channel('l', 1)"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("l:1 - 0.5 * l:2", lambda: mean("l", 1) - 0.5 * mean("l", 2)),
        ("l:1 + 2 * l:2 - l:3 / 4", lambda: mean("l", 1) + 2 * mean("l", 2) - mean("l", 3) / 4),
        ("(l:1 + l:2) * 3", lambda: 3 * (mean("l", 1) + mean("l", 2))),
        ("-l:1 - -l:2", lambda: -mean("l", 1) + mean("l", 2)),
        ("2 * -(l:1 - l:2)", lambda: -2 * (mean("l", 1) - mean("l", 2))),
        ("1e-1 * l:0 + .5 * l:3", lambda: 0.1 * mean("l", 0) + 0.5 * mean("l", 3)),
        ("l:1 * l:2", lambda: mean("l", 1) * mean("l", 2)),
        ("features.3:4", lambda: mean("features.3", 4)),
        ("'0':5", lambda: mean("0", 5)),
        ('channel("features.3", 2, batch=1)', lambda: float(ACTS["features.3"][1, 2].mean())),
    ],
)
def test_arithmetic_and_precedence(text, expected):
    assert value(text) == pytest.approx(expected(), rel=1e-5)


def test_neuron_positions_and_keywords():
    at = float(ACTS["l"][:, 2, 0, 1].mean())  # y=0 (row), x=1 (column)
    assert value("l:2@1,0") == pytest.approx(at)
    assert value("neuron(l, 2, x=1, y=0)") == pytest.approx(at)
    assert value("neuron(l, 2)") == pytest.approx(float(ACTS["l"][:, 2, 1, 1].mean()))


def test_functions_with_layer_args_and_diversity():
    objective = compile_objective("l:1 - 100 * diversity(l) + 0.1 * deepdream(l)", layers=LAYERS)
    expected = objectives.channel("l", 1) - 100 * objectives.diversity("l")
    expected = expected + 0.1 * objectives.deepdream("l")
    assert float(objective(ACTS)) == pytest.approx(float(expected(ACTS)))
    assert objective.layers == {"l"}


def test_function_names_are_case_insensitive_and_total_variation_reads_input():
    objective = compile_objective("Total_Variation() + l1()", layers=LAYERS)
    assert objective.layers == {"input"}


def test_engine_objective_names_parse_back():
    for original in [
        objectives.channel("l", 1) - 0.5 * objectives.channel("l", 2),
        -objectives.neuron("l", 3, x=1, y=2),
        objectives.channel("l", 1) - 100.0 * objectives.diversity("l"),
    ]:
        assert compile_objective(original.name, layers=LAYERS).name == original.name


@pytest.mark.parametrize(
    ("text", "position", "fragment"),
    [
        ("", 0, "empty expression"),
        ("l:1 +", 5, "expected a term"),
        ("l:1 ** 2", 5, "expected a term"),
        ("l:x", 2, "unit index"),
        ("l:1 $ 2", 4, "unexpected character '$'"),
        ("l", 0, "':unit'"),
        ("l:1 l:2", 4, "unexpected token"),
        ("(l:1 + l:2", 10, "expected ')'"),
        ("l:1@3", 5, "expected ','"),
        ("channel(l, 1", 12, "expected ','"),
        ("channel(x=1, l)", 13, "positional argument after keyword"),
        ("l:-1", 2, "unit index"),
    ],
)
def test_syntax_errors_report_position_and_expectation(text, position, fragment):
    with pytest.raises(ExpressionError) as caught:
        compile_objective(text, layers=LAYERS)
    error = caught.value
    assert error.position == position
    assert fragment in error.message
    assert "\n" in str(error) and "^" in str(error)  # a caret under the problem
    info = error.to_dict()
    assert set(info) == {"message", "position", "end", "expected", "suggestions"}


def test_unknown_layer_lists_closest_names():
    with pytest.raises(ExpressionError) as caught:
        compile_objective("mixed4a:1 - 0.5 * mixd4b:3", layers=LAYERS)
    error = caught.value
    assert error.message == "unknown layer 'mixd4b'"
    assert (error.position, error.end) == (18, 24)
    assert error.suggestions[0] == "mixed4b"


def test_unknown_layer_inside_a_call_points_at_the_argument():
    with pytest.raises(ExpressionError) as caught:
        compile_objective("l:1 - diversity(mixd4a)", layers=LAYERS)
    assert caught.value.position == len("l:1 - diversity(")
    assert "mixed4a" in caught.value.suggestions


def test_unit_out_of_range():
    with pytest.raises(ExpressionError, match="out of range") as caught:
        compile_objective("l:0 + l:4", layers=LAYERS)
    assert caught.value.position == 6
    with pytest.raises(ExpressionError, match="out of range"):
        compile_objective("channel(l, 9)", layers=LAYERS)


def test_unknown_function_suggests_and_never_evaluates_python():
    with pytest.raises(ExpressionError) as caught:
        compile_objective("chanel(l, 1)", layers=LAYERS)
    assert caught.value.suggestions == ["channel"]
    assert (caught.value.position, caught.value.end) == (0, 6)
    for text in ["__import__('os')", "eval('1')", "l.__class__:1", "open('x')"]:
        with pytest.raises(ExpressionError):
            compile_objective(text, layers=LAYERS)


def test_bad_arguments_show_the_signature():
    with pytest.raises(ExpressionError, match="bad arguments for channel") as caught:
        compile_objective("channel(l)", layers=LAYERS)
    assert "channel(layer" in caught.value.expected


def test_numbers_alone_and_division_by_zero():
    with pytest.raises(ExpressionError, match="no objective term"):
        compile_objective("3 + 4", layers=LAYERS)
    with pytest.raises(ExpressionError, match="division by zero") as caught:
        compile_objective("l:1 / 0", layers=LAYERS)
    assert caught.value.position == 6


def test_resolve_layer_accepts_model_paths_and_aliases(tiny_net):
    resolve = functools.partial(resolve_layer, tiny_net)
    objective = compile_objective("late:1 + conv2:3 + relu1:0", layers={}, resolve_layer=resolve)
    assert objective.layers == {"late", "conv2", "relu1"}
    with pytest.raises(ExpressionError, match="unknown layer 'conv9'"):
        compile_objective("conv9:1", layers={"conv1": 8}, resolve_layer=resolve)


def test_referenced_layers_in_written_order():
    assert referenced_layers("b:1 - 2 * diversity(a) + b:2 + total_variation()") == ["b", "a"]
    assert referenced_layers("neuron(layer='x', unit=1)") == ["x"]
    assert referenced_layers("l:1 +") == []


def test_unit_term_round_trips():
    assert unit_term("mixed4a", 476) == "mixed4a:476"
    assert unit_term("features.3", 2, "neuron") == "neuron(features.3, 2)"
    assert unit_term("0", 5) == "'0':5"
    assert value(unit_term("0", 5)) == pytest.approx(mean("0", 5))
    assert parse(unit_term("a-b", 1)).layer == "a-b"
    with pytest.raises(ValueError, match="channel"):
        unit_term("l", 1, "pixel")
