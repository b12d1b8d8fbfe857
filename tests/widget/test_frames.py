"""Frame encoding, throttling (with a fake clock), loss decimation, thumbnail packing."""

from __future__ import annotations

import io

import numpy as np
import pytest
from fakes import FakeClock
from PIL import Image

from lucid_widgets.optvis.arrays import to_uint8
from lucid_widgets.widget.frames import (
    LossCurve,
    Throttle,
    encode,
    pack_thumbnails,
    sniff_mime,
    unpack_thumbnails,
)

RNG = np.random.default_rng(0)


@pytest.mark.parametrize(
    ("fmt", "magic", "mime"),
    [("jpeg", b"\xff\xd8\xff", "image/jpeg"), ("png", b"\x89PNG", "image/png"),
     ("webp", b"RIFF", "image/webp")],
)  # fmt: skip
def test_encode_gives_valid_images(fmt, magic, mime):
    image = RNG.random((20, 30, 3)).astype(np.float32)
    data = encode(image, fmt)
    assert isinstance(data, bytes) and data.startswith(magic)
    assert sniff_mime(data) == mime
    decoded = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    assert decoded.shape == (20, 30, 3)
    if fmt == "png":  # lossless
        assert np.array_equal(decoded, to_uint8(image))


def test_alpha_images_are_not_sent_as_jpeg():
    rgba = RNG.random((8, 8, 4))
    data = encode(rgba, "jpeg")
    assert sniff_mime(data) == "image/webp"
    assert Image.open(io.BytesIO(data)).mode == "RGBA"


def test_grey_and_many_channel_images_encode():
    assert Image.open(io.BytesIO(encode(RNG.random((8, 8, 1)), "png"))).mode == "L"
    assert Image.open(io.BytesIO(encode(RNG.random((8, 8, 5)), "png"))).mode == "RGB"


def test_small_jpeg_frames():
    data = encode(RNG.random((128, 128, 3)), "jpeg", quality=85)
    assert len(data) < 64_000


def test_sniff_mime_rejects_other_bytes():
    with pytest.raises(ValueError, match="not a PNG"):
        sniff_mime(b"GIF89a....")


def test_throttle_bounds_frames_per_second_without_timing():
    clock = FakeClock()
    throttle = Throttle(interval=0.05, bytes_per_second=1e9, clock=clock)
    frames = 0
    for _ in range(1000):  # 1000 steps of 1 ms: one simulated second
        if throttle.ready():
            frames += 1
            throttle.sent(1000)
        clock.advance(0.001)
    assert 19 <= frames <= 21


def test_throttle_slows_down_for_big_frames():
    clock = FakeClock()
    throttle = Throttle(interval=0.05, bytes_per_second=100_000, clock=clock)
    frames = 0
    for _ in range(1000):
        if throttle.ready():
            frames += 1
            throttle.sent(50_000)  # 0.5 s worth of bandwidth each
        clock.advance(0.001)
    assert frames == 2
    throttle.reset()
    assert throttle.ready()


def test_loss_curve_is_bounded_and_keeps_the_latest_value():
    curve = LossCurve(limit=8)
    for value in range(5):
        curve.append(value)
    assert curve.points() == [0.0, 1.0, 2.0, 3.0, 4.0]
    for value in range(5, 1000):
        curve.append(value)
    points = curve.points()
    assert len(points) <= 8 and curve.count == 1000
    assert points[-1] == 999.0
    assert points[0] == pytest.approx(np.mean(range(curve.width)))  # equal-width buckets
    assert points == sorted(points)
    with pytest.raises(ValueError, match="even"):
        LossCurve(limit=3)


def test_pack_and_unpack_thumbnails():
    thumbnails = [(unit, encode(RNG.random((6, 6, 3)), "jpeg")) for unit in (3, 7, 9)]
    blob, index = pack_thumbnails(thumbnails)
    assert [entry["unit"] for entry in index] == [3, 7, 9]
    assert all(entry["mime"] == "image/jpeg" for entry in index)
    assert index[1]["offset"] == len(thumbnails[0][1])
    assert len(blob) == sum(len(data) for _, data in thumbnails)
    assert unpack_thumbnails(blob, index) == dict(thumbnails)
