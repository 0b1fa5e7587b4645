"""One image check for every reader (records, importers, app uploads): present, an image, within a pixel limit
(read from the header, before any pixel is decoded: a decompression bomb never allocates), and optionally decoded
in full (a truncated file fails here, not in the middle of a run)."""

from __future__ import annotations

import warnings
from pathlib import Path

# a clinical photo is under 25 MP; larger is a bomb or not a photo (PIL's own limit is 89 MP)
MAX_PIXELS = 40_000_000


class ImageError(ValueError):
    """`reason` is a short key for counting skips (missing_image, unreadable_image, image_too_large)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def check_image(path: str | Path, max_pixels: int = MAX_PIXELS, decode: bool = True) -> tuple[int, int]:
    """(width, height) of a usable image, else `ImageError`. `decode=False` checks the header and structure only
    (cheap enough for every record at the start of a run); `decode=True` also decodes every byte."""
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise ImageError("missing_image", f"image not found: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit decides, below
            with Image.open(path) as im:
                w, h = im.size
                if w * h > max_pixels:
                    raise ImageError(
                        "image_too_large",
                        f"{path.name}: {w}x{h} pixels is over the {max_pixels:,}-pixel limit",
                    )
                im.verify()
            if decode:
                with Image.open(path) as im:
                    im.convert("RGB")
    except Image.DecompressionBombError as e:
        raise ImageError(
            "image_too_large", f"{path.name}: over the {max_pixels:,}-pixel limit ({e})"
        ) from None
    except (OSError, SyntaxError, ValueError) as e:  # PIL's unreadable/truncated/corrupt signals
        if isinstance(e, ImageError):
            raise
        raise ImageError("unreadable_image", f"{path.name}: unreadable image ({e})") from None
    return w, h
