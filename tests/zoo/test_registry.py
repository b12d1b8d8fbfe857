"""Zoo registry (load / available) and offline-safe weight resolution. No network, no downloads."""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

import pytest
import torch
from torch import nn

import lucid_widgets.zoo as zoo
from lucid_widgets.zoo import weights as zoo_weights
from lucid_widgets.zoo.inceptionv1 import WEIGHTS as INCEPTION_WEIGHTS
from lucid_widgets.zoo.weights import (
    ResolvedWeights,
    WeightsMismatchError,
    WeightsSource,
    WeightsUnavailableError,
)

SOURCE = WeightsSource(url="https://example.invalid/models/tiny-0123abcd.pth")


@pytest.fixture
def hub_dir(monkeypatch, tmp_path):
    """An empty torch hub cache; downloading fails the test; no probe results cached."""
    hub = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    monkeypatch.setattr(zoo_weights, "_probe_results", {})

    def no_download(*args, **kwargs):
        pytest.fail(f"tried to download {args[:1]}")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    return hub


@pytest.fixture
def offline(monkeypatch, hub_dir):
    monkeypatch.setenv(zoo.OFFLINE_ENV, "1")
    return hub_dir


def tiny() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 1))


def assert_explains_options(message: str, name: str, source: WeightsSource, hub) -> None:
    assert source.url in message
    assert str(hub / "checkpoints" / source.filename) in message
    assert "weights=" in message
    assert "pretrained=False" in message
    assert "efficientnet_lite0" in message
    assert name in message


# --- registry ---------------------------------------------------------------------------------


def test_available_lists_models_and_local_weights(offline):
    listing = zoo.available()
    entries = {entry.name: entry for entry in listing}
    for name in ("efficientnet_lite0", "inceptionv1", "googlenet", "resnet18", "vit_b_16"):
        assert name in entries
        assert entries[name].description
    assert entries["efficientnet_lite0"].weights_local  # ships in a package
    assert not entries["inceptionv1"].weights_local  # empty hub cache
    assert not entries["resnet18"].weights_local
    text = str(listing)
    assert text.splitlines()[0].split() == ["name", "local", "description"]
    assert "inceptionv1" in text and "<table>" in listing._repr_html_()


def test_available_sees_the_hub_cache(offline):
    path = offline / "checkpoints" / "inception5h.pth"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")
    entries = {entry.name: entry for entry in zoo.available()}
    assert entries["inceptionv1"].weights_local


def test_available_all_torchvision_lists_more(offline):
    names = [entry.name for entry in zoo.available(all_torchvision=True)]
    assert "squeezenet1_1" in names and "densenet121" in names
    assert len(names) == len(set(names))
    assert "squeezenet1_1" in zoo.model_names()


def test_unknown_model_lists_closest_names():
    with pytest.raises(zoo.ModelNotFoundError) as info:
        zoo.load("resnet19")
    assert isinstance(info.value, KeyError) and isinstance(info.value, ValueError)
    message = str(info.value)
    assert "resnet18" in message and "available()" in message
    assert not message.startswith("'")  # not KeyError's quoted repr


@pytest.mark.parametrize("name", ["", None, 3])
def test_bad_model_name_type(name):
    with pytest.raises(zoo.ModelNotFoundError):
        zoo.load(name)


def test_load_normalizes_names_and_sets_metadata(offline):
    model = zoo.load("InceptionV1", pretrained=False, device="cpu")
    assert model.lucid_name == "inceptionv1"
    assert not model.training
    assert next(model.parameters()).device == torch.device("cpu")
    assert model.lucid_aliases["mixed4a_3x3_pre_relu"] == "mixed4a_3x3_pre_relu_conv"
    assert zoo.load("inception-v1", pretrained=False).lucid_name == "inceptionv1"


def test_load_delegates_efficientnet_lite0(offline):
    model = zoo.load("efficientnet_lite0", pretrained=False)
    assert model.lucid_name == "efficientnet_lite0"
    assert not model.training
    assert len(model.lucid_labels) == 1000


def test_load_rejects_non_bool_pretrained():
    with pytest.raises(TypeError, match="pretrained"):
        zoo.load("inceptionv1", pretrained="yes")


def test_lazy_exports():
    assert "layers" in dir(zoo) and "LayerInfo" in zoo.__all__
    with pytest.raises(AttributeError):
        zoo.no_such_thing  # noqa: B018


# --- weight resolution ------------------------------------------------------------------------


def test_offline_env_raises_with_instructions_and_no_download(offline, monkeypatch):
    def no_probe(*args):
        pytest.fail("probed the network although LUCID_WIDGETS_OFFLINE=1")

    monkeypatch.setattr(zoo_weights, "_probe", no_probe)
    with pytest.raises(WeightsUnavailableError) as info:
        zoo.load("inceptionv1")
    assert_explains_options(str(info.value), "inceptionv1", INCEPTION_WEIGHTS, offline)
    assert info.value.url == INCEPTION_WEIGHTS.url


def test_unreachable_host_raises_without_download(hub_dir, monkeypatch):
    monkeypatch.delenv(zoo.OFFLINE_ENV, raising=False)
    probed = []
    monkeypatch.setattr(zoo_weights, "_probe", lambda host, port, timeout: probed.append(host))
    with pytest.raises(WeightsUnavailableError, match="cannot be reached") as info:
        zoo_weights.resolve_weights_file(SOURCE, "tiny")
    assert probed == ["example.invalid"]
    assert_explains_options(str(info.value), "tiny", SOURCE, hub_dir)


def test_probe_gives_up_on_a_blocking_connect(monkeypatch):
    """The connect blocks until released and would then succeed: the probe must not wait for it,
    and the socket itself must get the probe's timeout."""
    release, finished = threading.Event(), threading.Event()
    calls = []

    def blocking_connect(address, timeout=None):
        calls.append((address, timeout))
        release.wait(60)
        finished.set()
        return contextlib.nullcontext()  # a connection: a probe that waited would say online

    monkeypatch.setattr(zoo_weights.socket, "create_connection", blocking_connect)
    try:
        assert zoo_weights._probe("example.invalid", 443, timeout=0.05) is False
        assert not finished.is_set()  # returned while the connect was still blocked
        assert calls == [(("example.invalid", 443), 0.05)]
    finally:
        release.set()


def test_probe_reports_refused_connection(monkeypatch):
    def refuse(address, timeout=None):
        raise ConnectionRefusedError

    monkeypatch.setattr(zoo_weights.socket, "create_connection", refuse)
    assert zoo_weights._probe("example.invalid", 443, timeout=1.0) is False


def test_is_offline_caches_the_probe(monkeypatch):
    monkeypatch.delenv(zoo.OFFLINE_ENV, raising=False)
    monkeypatch.setattr(zoo_weights, "_probe_results", {})
    calls = []
    monkeypatch.setattr(zoo_weights, "_probe", lambda *args: calls.append(args) or True)
    assert not zoo_weights.is_offline("https://example.invalid/a.pth")
    assert not zoo_weights.is_offline("https://example.invalid/b.pth")
    assert calls == [("example.invalid", 443, zoo_weights.PROBE_TIMEOUT_S)]


def test_download_when_online_lands_in_the_cache(hub_dir, monkeypatch):
    monkeypatch.delenv(zoo.OFFLINE_ENV, raising=False)
    monkeypatch.setattr(zoo_weights, "is_offline", lambda url: False)
    seen = {}

    def fake_download(url, dst, hash_prefix=None, progress=True):
        seen.update(url=url, hash_prefix=hash_prefix)
        torch.save(tiny().state_dict(), dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    source = WeightsSource.from_torch_hub_url(SOURCE.url)
    path = zoo_weights.resolve_weights_file(source, "tiny")
    assert path == hub_dir / "checkpoints" / "tiny-0123abcd.pth" and path.is_file()
    assert seen == {"url": SOURCE.url, "hash_prefix": "0123abcd"}
    assert not list(path.parent.glob("*.partial"))


def test_failed_download_explains_and_cleans_up(hub_dir, monkeypatch):
    monkeypatch.delenv(zoo.OFFLINE_ENV, raising=False)
    monkeypatch.setattr(zoo_weights, "is_offline", lambda url: False)

    def broken_download(url, dst, hash_prefix=None, progress=True):
        Path(dst).write_bytes(b"half")
        raise RuntimeError("invalid hash value")

    monkeypatch.setattr(torch.hub, "download_url_to_file", broken_download)
    with pytest.raises(WeightsUnavailableError, match="downloading failed"):
        zoo_weights.resolve_weights_file(SOURCE, "tiny")
    assert not list((hub_dir / "checkpoints").glob("*"))


def test_cached_file_is_used_offline(offline):
    model = tiny()
    path = offline / "checkpoints" / SOURCE.filename
    path.parent.mkdir(parents=True)
    torch.save(model.state_dict(), path)
    resolved = zoo_weights.resolve_weights("tiny", SOURCE)
    assert resolved == ResolvedWeights(path, None)
    fresh = tiny()
    zoo_weights.load_weights(fresh, resolved)
    assert torch.equal(fresh[0].weight, model[0].weight)


def test_state_dict_file_unwraps_checkpoints(tmp_path):
    state = tiny().state_dict()
    path = tmp_path / "checkpoint.pth"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    loaded = zoo_weights.load_state_dict_file(path)
    assert sorted(loaded) == sorted(state)


@pytest.mark.parametrize("content", [[1, 2], {"weight": 3}])
def test_state_dict_file_rejects_non_state_dicts(tmp_path, content):
    path = tmp_path / "bad.pth"
    torch.save(content, path)
    with pytest.raises(WeightsMismatchError, match="expected a state dict"):
        zoo_weights.load_state_dict_file(path)


def test_state_dict_file_rejects_garbage_and_missing_files(tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(WeightsMismatchError, match="weights_only=True"):
        zoo_weights.load_state_dict_file(garbage)
    with pytest.raises(FileNotFoundError, match="nothing.pth"):
        zoo_weights.resolve_weights("tiny", SOURCE, tmp_path / "nothing.pth")


def test_sha256_checked_for_the_canonical_file_name(tmp_path):
    source = WeightsSource.from_torch_hub_url(SOURCE.url)
    path = tmp_path / source.filename
    torch.save(tiny().state_dict(), path)
    resolved = zoo_weights.resolve_weights("tiny", source, path)
    assert resolved.sha256 == "0123abcd"
    with pytest.raises(WeightsMismatchError, match="sha256"):
        zoo_weights.load_weights(tiny(), resolved)
    renamed = tmp_path / "my-finetuned.pth"
    path.rename(renamed)
    assert zoo_weights.resolve_weights("tiny", source, renamed).sha256 is None


def test_verify_state_dict_names_the_problems():
    state = tiny().state_dict()
    state["extra.weight"] = torch.zeros(1)
    del state["0.bias"]
    state["2.weight"] = torch.zeros(5, 4, 1, 1)
    with pytest.raises(WeightsMismatchError) as info:
        zoo_weights.verify_state_dict(tiny(), state)
    message = str(info.value)
    assert "missing keys: 0.bias" in message
    assert "unexpected keys: extra.weight" in message
    assert "2.weight (file (5, 4, 1, 1), model (2, 4, 1, 1))" in message


def test_no_source_needs_a_file():
    with pytest.raises(WeightsUnavailableError, match="pretrained=False"):
        zoo_weights.resolve_weights("mine", None)
