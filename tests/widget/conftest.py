"""Fixtures of the widget tests: a recording comm, the fake engine, widgets closed after a test."""

from __future__ import annotations

import comm
import pytest
from fakes import FakeEngine, RecordingComm

from lucid_widgets.widget import engine as widget_engine


@pytest.fixture
def recording_comm(monkeypatch):
    """Every widget created in the test gets a RecordingComm; yields the list of them."""
    created: list[RecordingComm] = []

    def create(*args, **kwargs):
        instance = RecordingComm(*args, **kwargs)
        created.append(instance)
        return instance

    monkeypatch.setattr(comm, "create_comm", create)
    return created


@pytest.fixture
def fake_engine(monkeypatch) -> FakeEngine:
    """Replace the widget's engine calls with fast, countable fakes."""
    engine = FakeEngine()
    monkeypatch.setattr(widget_engine, "make_preview", engine.make_preview)
    monkeypatch.setattr(widget_engine, "resume_preview", engine.resume_preview)
    monkeypatch.setattr(widget_engine, "make_grid_batch", engine.make_grid_batch)
    return engine


@pytest.fixture
def close_widgets():
    """Collects widgets and closes them after the test, even when it fails."""
    widgets: list = []
    yield widgets
    for widget in widgets:
        widget.close()
