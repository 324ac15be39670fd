"""Synthetic card-face images, deterministic from the profile seed (never real people).

The chip copy of the face photo is a greyscale JPEG 2000 image (券面AP EF 0002 ``DF27``,
card_apdu.md §2.3); the name, address and number images are 1-bit PNGs. No Japanese font
is assumed on the machine, so text images draw one deterministic block glyph per character
(derived from its code point): right size and shape for a reader, not legible text [I].
"""

from __future__ import annotations

import io
import random
from functools import lru_cache

from PIL import Image, ImageDraw, features

from onshi.errors import OnshiError

__all__ = ["face_photo_jp2", "text_image_png"]

PHOTO_SIZE = (180, 240)
"""Width x height of the synthetic photo; small enough to give a few KB of JPEG 2000."""


@lru_cache(maxsize=64)
def face_photo_jp2(seed: str) -> bytes:
    """A greyscale face drawing (head, hair, eyes, brows, nose, mouth) as a JPEG 2000 file.

    Memoised: load tests build many cards from one profile, and encoding costs ~50 ms."""
    if not features.check("jpg_2000"):
        raise OnshiError(
            "Pillow was built without JPEG 2000 (OpenJPEG) support; the face photo needs it",
            fix="install a Pillow wheel with OpenJPEG (pip install --force-reinstall Pillow)",
        )
    rng = random.Random(f"{seed}/face")
    w, h = PHOTO_SIZE
    img = Image.new("L", PHOTO_SIZE, 200 + rng.randrange(40))
    draw = ImageDraw.Draw(img)
    cx = w // 2 + rng.randrange(-6, 7)
    head_w, head_h = 52 + rng.randrange(14), 68 + rng.randrange(14)
    top = 58 + rng.randrange(10)
    skin = 150 + rng.randrange(50)
    draw.ellipse((cx - 95, top + 2 * head_h - 20, cx + 95, h + 120), fill=60 + rng.randrange(60))
    draw.rectangle((cx - 20, top + 2 * head_h - 30, cx + 20, top + 2 * head_h + 10), fill=skin)
    draw.ellipse((cx - head_w, top, cx + head_w, top + 2 * head_h), fill=skin)
    hair = 20 + rng.randrange(60)
    draw.chord((cx - head_w - 3, top - 8, cx + head_w + 3, top + head_h), 180, 360, fill=hair)
    eye_y, eye_dx = top + head_h - 6 + rng.randrange(8), 18 + rng.randrange(8)
    for side in (-1, 1):
        ex = cx + side * eye_dx
        draw.ellipse((ex - 7, eye_y - 4, ex + 7, eye_y + 4), fill=245)
        draw.ellipse((ex - 3, eye_y - 3, ex + 3, eye_y + 3), fill=25)
        draw.line((ex - 9, eye_y - 11, ex + 9, eye_y - 12 - rng.randrange(3)), fill=hair, width=3)
    nose_y = eye_y + 24 + rng.randrange(6)
    draw.line((cx, eye_y + 6, cx - 4, nose_y), fill=skin - 40, width=2)
    mouth_y, mouth_w = nose_y + 18 + rng.randrange(6), 14 + rng.randrange(8)
    draw.arc((cx - mouth_w, mouth_y - 8, cx + mouth_w, mouth_y + 6), 20, 160, fill=90, width=3)
    out = io.BytesIO()
    img.save(out, format="JPEG2000", irreversible=True, quality_mode="rates", quality_layers=[12])
    return out.getvalue()


def text_image_png(text: str, *, height: int = 24) -> bytes:
    """A 1-bit PNG with one block glyph per character of ``text``."""
    cell = height
    img = Image.new("1", (max(1, len(text)) * cell + 4, height + 4), 1)
    draw = ImageDraw.Draw(img)
    for i, ch in enumerate(text):
        bits = random.Random(ord(ch)).getrandbits(16) if not ch.isspace() else 0
        x0, y0, step = 2 + i * cell, 2, cell // 4
        for b in range(16):
            if bits >> b & 1:
                x, y = x0 + (b % 4) * step, y0 + (b // 4) * step
                draw.rectangle((x, y, x + step - 2, y + step - 2), fill=0)
    out = io.BytesIO()
    img.save(out, format="PNG", optimize=True)
    return out.getvalue()
