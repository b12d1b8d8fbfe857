"""Local atlas builds with a tiny net: the pictures, resuming, dataset examples, write-back."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from lucid_widgets import atlas as lw_atlas
from lucid_widgets.atlas import tasks as atlas_tasks
from lucid_widgets.blocks.connections import connections
from lucid_widgets.dataset import dataset_examples
from lucid_widgets.optvis import render_units


def _uint8(images: np.ndarray) -> np.ndarray:
    return (np.clip(images, 0, 1) * 255 + 0.5).astype(np.uint8)


def test_image_equals_render_units_with_the_same_seed(tiny_net, tmp_path, fast):
    tiny_net.train()
    tiny_net.relu2.register_forward_hook(lambda *args: None)
    store = lw_atlas.build(
        tiny_net,
        tmp_path,
        units=range(8),
        views=("channel", "negative"),
        connections=False,
        seed=3,
        **fast,
    )
    assert store.layers == ["early", "late"] and store.units("late") == list(range(8))
    assert tiny_net.training and all(p.requires_grad for p in tiny_net.parameters())
    assert len(tiny_net.relu2._forward_hooks) == 1  # the user's hook kept, no hook of ours left
    tiny_net.eval()
    for kind, view in (("channel", "channel"), ("negative_channel", "negative")):
        expected = render_units(
            tiny_net,
            "late",
            units=range(8),
            size=24,
            steps=2,
            batch_size=4,
            kind=kind,
            seed=3,
            progress=False,
        )
        got = np.stack([store.image("late", unit, view=view) for unit in range(8)])
        assert got.shape == (8, 24, 24, 3)
        np.testing.assert_array_equal(got, _uint8(expected))
    assert store.complete and store.missing() == []


def test_all_four_views_and_their_shapes(tiny_net, tmp_path, fast):
    views = ("channel", "negative", "neuron", "diversity")
    store = lw_atlas.build(
        tiny_net, tmp_path, layers=["early"], units=[1], views=views, connections=False, **fast
    )
    assert store.image("early", 1, view="neuron").shape == (24, 24, 3)
    assert store.image("early", 1, view="diversity").shape == (24, 4 * 24, 3)
    assert not np.array_equal(store.image("early", 1), store.image("early", 1, view="neuron"))


def _counting(monkeypatch) -> list[str]:
    ran: list[str] = []
    compute = atlas_tasks.TaskRunner.compute

    def counted(self, task, stop=None):
        output = compute(self, task, stop)
        if output is not None:
            ran.append(task.id)
        return output

    monkeypatch.setattr(atlas_tasks.TaskRunner, "compute", counted)
    return ran


def test_interrupted_build_resumes_without_redoing_a_task(
    tiny_net, tmp_path, monkeypatch, images, fast
):
    ran = _counting(monkeypatch)
    options = dict(units=range(8), dataset=images, k=2, shard_size=4, connections=False, **fast)
    stop, seen = threading.Event(), []

    def halt_after_three(output):
        seen.append(output.task.id)
        if len(seen) == 3:
            stop.set()

    partial = lw_atlas.build(
        tiny_net, tmp_path / "a", stop=stop, callback=halt_after_three, **options
    )
    assert len(ran) == 3 and len(partial.missing()) > 0
    first = list(ran)
    resumed = lw_atlas.build(tiny_net, tmp_path / "a", **options)
    second = ran[3:]
    assert not set(first) & set(second), "a finished task ran again"
    assert resumed.missing() == [] and resumed.check() == []
    whole = lw_atlas.build(tiny_net, tmp_path / "b", **options)
    for layer in whole.layers:
        for unit in whole.units(layer):
            for view in whole.views:
                np.testing.assert_array_equal(
                    resumed.image(layer, unit, view), whole.image(layer, unit, view)
                )
            assert resumed.examples(layer, unit) == whole.examples(layer, unit)
    again = len(ran)
    lw_atlas.build(tiny_net, tmp_path / "a", **options)
    assert len(ran) == again, "a complete atlas rebuilt something"


def test_sharded_examples_equal_one_dataset_pass(tiny_net, tmp_path, images, fast):
    store = lw_atlas.build(
        tiny_net,
        tmp_path,
        units=[0, 5],
        views=("channel",),
        dataset=images,
        k=3,
        shard_size=3,
        connections=False,
        **fast,
    )
    reference = dataset_examples(
        tiny_net, images, layers=["early", "late"], k=3, cache_dir=False, progress=False
    )
    for layer in ("early", "late"):
        for unit in (0, 5):
            for which in ("top", "bottom"):
                got = store.examples(layer, unit, which)
                assert [e["index"] for e in got] == reference[layer].__dict__[f"indices_{which}"][
                    unit
                ].tolist()
                values = reference[layer].__dict__[f"values_{which}"][unit]
                np.testing.assert_allclose([e["value"] for e in got], values, atol=1e-5)
                assert [tuple(e["box"]) for e in got] == [
                    reference[layer].box(unit, r, which) for r in range(3)
                ]
    thumb = store.example_image(store.examples("late", 0)[0]["index"])
    assert thumb.ndim == 3 and thumb.shape[-1] == 3


def test_connections_unavailable_are_recorded_and_redone_later(
    tiny_net, tmp_path, monkeypatch, fast
):
    from lucid_widgets.atlas import links

    options = dict(units=[0, 1], views=("channel",), **fast)
    with monkeypatch.context() as patch:
        patch.setattr(links, "connections_function", lambda: None)
        store = lw_atlas.build(tiny_net, tmp_path, **options)
    missing = store.connections("late", 1)
    assert missing["available"] is False and "blocks" in missing["reason"]
    store = lw_atlas.build(tiny_net, tmp_path, **options)  # the real blocks engine now
    entry = store.connections("late", 1)
    expected = connections(tiny_net, "late", 1, source="relu1", k=8)
    assert entry["in"]["layer"] == "early" and entry["in"]["method"] == expected.method
    assert entry["in"]["units"] == [int(u) for u in expected.units]
    np.testing.assert_allclose(entry["in"]["strength"], expected.strength, atol=1e-5)
    assert "out" not in entry  # the last layer of the atlas has no output layer here
    out = store.connections("early", 0)["out"]
    assert out["layer"] == "late" and len(out["units"]) == 10


def test_put_writes_pictures_back(tiny_net, tmp_path, fast):
    store = lw_atlas.build(
        tiny_net,
        tmp_path,
        layers=["early"],
        units=[0],
        views=("channel",),
        connections=False,
        **fast,
    )
    picture = np.zeros((1, 24, 24, 3), np.float32)
    picture[..., 0] = 1.0
    store.put("early", [5], picture)
    reopened = lw_atlas.open(tmp_path, model=tiny_net)
    assert reopened.image("early", 5)[..., 0].min() == 255 and reopened.check() == []


def test_bad_arguments_say_what_is_valid(tiny_net, tmp_path, fast):
    with pytest.raises(ValueError, match="valid: channel, negative, neuron, diversity"):
        lw_atlas.build(tiny_net, tmp_path, views=("channel", "positive"), **fast)
    with pytest.raises(IndexError, match="valid: 0..7"):
        lw_atlas.build(tiny_net, tmp_path, layers=["early"], units=[9], **fast)
    with pytest.raises(ValueError, match="executor"):
        lw_atlas.build(tiny_net, tmp_path, executor="dask", **fast)
    with pytest.raises(lw_atlas.AtlasError, match="is not an atlas"):
        lw_atlas.open(tmp_path / "nothing")


def test_the_recipe_is_a_setting_and_old_stores_are_lucids(tiny_net, tmp_path, fast):
    from lucid_widgets.atlas.plan import Settings

    store = lw_atlas.build(
        tiny_net, tmp_path, layers=["late"], units=range(4), connections=False,
        recipe="lucid", seed=1, **fast,
    )  # fmt: skip
    assert store.settings["recipe"] == "lucid"
    expected = render_units(
        tiny_net, "late", units=range(4), size=24, steps=2, batch_size=4, seed=1,
        progress=False, recipe="lucid",
    )  # fmt: skip
    got = np.stack([store.image("late", unit) for unit in range(4)])
    np.testing.assert_array_equal(got, _uint8(expected))
    with pytest.raises(lw_atlas.AtlasSettingsError, match="recipe: 'lucid' .stored. != 'maco'"):
        lw_atlas.build(tiny_net, tmp_path, layers=["late"], units=range(4), seed=1, **fast)
    before_recipes = {k: v for k, v in Settings(recipe="lucid").to_dict().items() if k != "recipe"}
    assert Settings(recipe="lucid").differences(before_recipes) == []
    assert Settings().differences(before_recipes) == ["recipe: 'lucid' (stored) != 'maco' (asked)"]
    with pytest.raises(ValueError, match=r"recipe must be one of \('maco', 'lucid'\)"):
        lw_atlas.build(tiny_net, tmp_path / "other", recipe="cppn", **fast)
