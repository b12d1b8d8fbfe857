"""Every text gives an Objective or an ExpressionError with a position, nothing else."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lucid_widgets.expression import ExpressionError, compile_objective
from lucid_widgets.optvis import objectives as obj
from lucid_widgets.optvis.objective_base import Activations, Objective

LAYERS = {"a": 4, "b": 4}


def _compile(text: str):
    return compile_objective(text, layers=LAYERS)


@pytest.mark.parametrize(
    "text",
    [
        "(" * 300 + "a:1" + ")" * 300,
        "-" * 1000 + "a:1",
        " + ".join(["a:1"] * 450),
        " - ".join(["a:1"] * 450),
        "a:" + "9" * 5000,
        "2 * a:1 * " + "9" * 400,
        "a:1 * 1e999",
        "1e308 * 1e308 * a:1",
        "a:1 + " * 2000 + "a:1",
    ],
)
def test_hostile_inputs_give_an_expression_error_with_a_position(text):
    with pytest.raises(ExpressionError) as info:
        _compile(text)
    assert 0 <= info.value.position <= len(text)
    assert info.value.to_dict()["message"]


def test_a_long_but_reasonable_sum_compiles_and_evaluates():
    objective = _compile(" + ".join(f"a:{i % 4}" for i in range(150)))
    acts = Activations({"a": torch.arange(4.0).view(1, 4, 1, 1)})
    assert float(objective(acts)) == sum(i % 4 for i in range(150))


def test_builtin_sum_of_a_thousand_objectives_is_flat():
    terms = [obj.channel("a", i % 4) for i in range(1000)]
    acts = Activations({"a": torch.arange(4.0).view(1, 4, 1, 1)})
    total = sum(terms)
    assert len(total.terms) == 1000 and total.name == Objective.sum(terms).name
    assert float(total(acts)) == float(Objective.sum(terms)(acts)) == 1500.0
    assert float((total - terms[1])(acts)) == 1499.0


ALPHABET = "ab:01234567()+-*/.,@=' \"eE_xyznchalogitsdivrf"
TOKENS = st.sampled_from(
    ["a:1", "b:3", "a:9", "(", ")", "+", "-", "*", "/", "0.5", "1e9", ",", "@", "=",
     "channel(", "neuron(", "diversity(", "class_logit(", "x=", "'a'", "True", "L1(", "9" * 30]
)  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(ALPHABET, max_size=60), st.lists(TOKENS, max_size=30).map(" ".join)))
def test_any_text_gives_an_objective_or_an_expression_error(text):
    try:
        result = _compile(text)
    except ExpressionError as error:
        assert 0 <= error.position <= len(text)
    else:
        assert isinstance(result, Objective)
