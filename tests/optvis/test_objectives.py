"""Every objective rises under optimization; names, layers and arithmetic behave as in Lucid."""

from __future__ import annotations

import pytest
import torch

from lucid_widgets.optvis import objectives as obj
from lucid_widgets.optvis import param
from lucid_widgets.optvis.objective_base import Activations
from lucid_widgets.optvis.render import Optimization

IMAGE = 32


def _value(run: Optimization, objective: obj.Objective) -> float:
    """The objective on the current image, with no random transforms."""
    with torch.no_grad():
        image = run.image()
        acts = run._activations(objective, image)
        return float(objective(acts))


CASES = {
    "channel": lambda: obj.channel("conv2", 3),
    "channel_alias": lambda: obj.channel("late", 5),
    "neuron": lambda: obj.neuron("conv2", 3),
    "neuron_xy": lambda: obj.neuron("conv1", 2, x=5, y=20),
    "direction": lambda: obj.direction("conv2", torch.linspace(-1, 1, 16)),
    "direction_cossim": lambda: obj.direction("conv2", torch.linspace(-1, 1, 16), cossim_pow=1),
    "direction_neuron": lambda: obj.direction_neuron("conv2", torch.linspace(-1, 1, 16)),
    "deepdream": lambda: obj.deepdream("relu1"),
    "class_logit": lambda: obj.class_logit(4),
    "class_logit_name": lambda: obj.class_logit("dog"),
    "linear_channel": lambda: obj.channel("fc", 2),
    "minus_total_variation": lambda: -obj.total_variation(),
    "minus_L1": lambda: -obj.L1(constant=0.5),
    "minus_L2": lambda: -obj.L2(constant=0.5),
    "minus_blur": lambda: -obj.blur_input_each_step(),
    "channel_interpolate": lambda: obj.channel_interpolate("conv2", 1, "conv2", 2),
    "alignment": lambda: obj.alignment("conv1"),
    "minus_diversity": lambda: -obj.diversity("conv2"),
    "minus_input_diff": lambda: -obj.input_diff(torch.full((2, 3, IMAGE, IMAGE), 0.25)),
    "batch_targeting": lambda: obj.channel("conv2", 1, batch=0) + obj.channel("conv2", 2, batch=1),
    "combined": lambda: obj.channel("conv2", 3) - 0.01 * obj.total_variation() / 2,
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_objective_rises_under_optimization(tiny_net, name):
    tiny_net.lucid_labels = ["cat", "dog"] + [f"class{i}" for i in range(8)]
    objective = CASES[name]()
    sd = 0.5 if name == "alignment" else None  # images must differ before they can align
    run = Optimization(
        tiny_net, objective, param_f=lambda: param.image(IMAGE, batch=2, sd=sd), transforms=[],
        seed=0,
        optimizer=lambda p: torch.optim.Adam(p, lr=0.05),
    )  # fmt: skip
    with run:
        before = _value(run, objective)
        for _ in range(25):
            run.step()
        after = _value(run, objective)
    assert after > before, f"{objective.name}: {before} -> {after}"


def test_tokens_objectives_rise(tiny_tokens):
    for objective in (obj.channel("block", 3), obj.neuron("block", 3, x=2), obj.deepdream("block")):
        with Optimization(
            tiny_tokens, objective, param_f=lambda: param.image(16), transforms=[], seed=0
        ) as run:
            before = _value(run, objective)
            for _ in range(15):
                run.step()
            assert _value(run, objective) > before, objective.name


def test_names_read_like_lucid():
    combined = obj.channel("mixed4a", 476) - 0.5 * obj.diversity("mixed4a")
    assert combined.name == "channel('mixed4a', 476) - 0.5 * diversity('mixed4a')"
    penalized = obj.channel("layer3", 7) - 0.1 * obj.total_variation("input")
    assert penalized.name == "channel('layer3', 7) - 0.1 * total_variation('input')"
    assert (obj.channel("a", 1) - (obj.channel("a", 2) + obj.channel("b", 3))).name == (
        "channel('a', 1) - (channel('a', 2) + channel('b', 3))"
    )
    assert sum([obj.channel("a", 1), obj.channel("b", 2)]).layers == {"a", "b"}
    assert obj.as_objective("layer3:7").name == "channel('layer3', 7)"


def test_arithmetic_values():
    acts = Activations({"a": torch.arange(8.0).view(1, 2, 2, 2)})
    first, second = obj.channel("a", 0), obj.channel("a", 1)  # means 1.5 and 5.5
    assert float((first + second)(acts)) == pytest.approx(7.0)
    assert float((first - 2 * second)(acts)) == pytest.approx(-9.5)
    assert float((first * second)(acts)) == pytest.approx(8.25)
    assert float((second / first)(acts)) == pytest.approx(5.5 / 1.5)
    assert float((first / 3)(acts)) == pytest.approx(0.5)
    assert float((1 - first)(acts)) == pytest.approx(-0.5)
    assert float(obj.Objective.sum([first, second, first])(acts)) == pytest.approx(8.5)
    assert float((-first)(acts)) == pytest.approx(-1.5)


def test_neuron_uses_x_for_width_on_non_square_maps():
    tensor = torch.zeros(1, 1, 4, 10)  # H=4, W=10
    tensor[0, 0, 1, 7] = 3.0
    acts = Activations({"a": tensor})
    assert float(obj.neuron("a", 0, x=7, y=1)(acts)) == 3.0
    tensor[0, 0, 2, 5] = 9.0  # centre is (y=2, x=5)
    assert float(obj.neuron("a", 0)(acts)) == 9.0


def test_diversity_is_zero_for_orthogonal_and_high_for_equal():
    same = torch.ones(2, 3, 4, 4)
    assert float(obj.diversity("a")(Activations({"a": same}))) == pytest.approx(1.0)
    different = torch.zeros(2, 2, 1, 1)
    different[0, 0] = 1
    different[1, 1] = 1
    assert float(obj.diversity("a")(Activations({"a": different}))) == pytest.approx(0.0)


def test_direction_matches_dot_product():
    acts = Activations({"a": torch.arange(6.0).view(1, 3, 1, 2)})
    vec = torch.tensor([1.0, 0.0, -1.0])
    # positions: (0, 2, 4) and (1, 3, 5) -> dots -4 and -4
    assert float(obj.direction("a", vec)(acts)) == pytest.approx(-4.0)


def test_unit_out_of_range_names_unit_count():
    acts = Activations({"a": torch.zeros(1, 16, 2, 2)})
    with pytest.raises(IndexError, match="16 units"):
        obj.channel("a", 16)(acts)


def test_unknown_class_name_lists_closest():
    acts = Activations({"logits": torch.zeros(1, 3)}, labels=["tabby cat", "tiger cat", "dog"])
    with pytest.raises(ValueError, match="tabby cat"):
        obj.class_logit("taby cat")(acts)
    logits = torch.tensor([[1.0, 2.0, 3.0]])  # distinct: a wrong index reads another value
    assert float(obj.class_logit("Dog")(Activations({"logits": logits}, ["a", "b", "dog"]))) == 3.0
    assert float(obj.class_logit("B")(Activations({"logits": logits}, ["a", "b", "dog"]))) == 2.0


def test_bad_string_objective():
    with pytest.raises(ValueError, match="layer:unit"):
        obj.as_objective("layer3")


def test_batch_targeting_reads_one_element():
    tensor = torch.zeros(2, 2, 1, 1)
    tensor[1, 0] = 5.0
    acts = Activations({"a": tensor})
    assert float(obj.channel("a", 0, batch=1)(acts)) == 5.0
    assert float(obj.channel("a", 0, batch=0)(acts)) == 0.0
    with pytest.raises(IndexError, match="batch element 2"):
        obj.channel("a", 0, batch=2)(acts)
