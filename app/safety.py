"""What the browser may reach: paths confined to the runs root, uploads limited by type and size, images verified.

Everything a browser sends is untrusted: a run id, a file name inside a run, an uploaded image. Run ids and file
names are resolved (symlinks included) and must stay under the runs root; images must be a known format, below a
byte and a pixel limit (decompression bombs are refused from the header, before any pixel is decoded), and decode
cleanly. Torch- and gradio-free, so it is tested on its own.
"""

from __future__ import annotations

import re
from pathlib import Path

from PIL import Image

MAX_UPLOAD_BYTES = 10 * 1024 * 1024  # 10 MB: a dermoscopy photo is 1-5 MB
MAX_PIXELS = 6000 * 6000  # 36 MP: above any camera in clinical use; a bomb declares far more
MODEL_SIDE = 448  # images are downscaled to this longest side before the model sees them
IMAGE_FORMATS = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "BMP": ".bmp"}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
MAX_TEXT_CHARS = 8000  # a vignette, a statement to check
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


def guard_pil() -> None:
    """PIL's own guard (a warning at MAX_IMAGE_PIXELS, an error at twice that) set to our limit, backing ours up for
    decodes we do not control (gradio opening an upload, or decoding an API client's base64 image). Process-wide:
    the app server calls it at launch."""
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS


class Refused(ValueError):
    """A request the app will not serve; the message is safe to show in the browser."""


def confine(root: str | Path, relative: str) -> Path:
    """`root/relative`, resolved, if it stays inside `root`; else Refused.

    Only plain segments are accepted (no absolute paths, no '..', no hidden names, no NUL), and the resolved path
    must still be under the resolved root, so a symlink inside a run cannot lead out of it either.
    """
    if not isinstance(relative, str) or not relative.strip():
        raise Refused("no path given")
    parts = relative.strip().replace("\\", "/").split("/")
    if relative.startswith(("/", "~")) or any(not _SEGMENT.match(p) or p in (".", "..") for p in parts):
        raise Refused(f"refused: {relative!r} is not a path inside the runs folder")
    base = Path(root).resolve()
    target = base.joinpath(*parts).resolve()
    if target != base and base not in target.parents:
        raise Refused(f"refused: {relative!r} leads outside the runs folder")
    return target


def limit_text(text: str | None, what: str, max_chars: int = MAX_TEXT_CHARS) -> str:
    text = (text or "").strip()
    if len(text) > max_chars:
        raise Refused(f"{what} is {len(text)} characters; the limit is {max_chars}")
    return text


def load_upload(path: str | Path, max_bytes: int = MAX_UPLOAD_BYTES, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """An uploaded image, verified and decoded as RGB, downscaled to MODEL_SIDE; Refused with the reason otherwise."""
    p = Path(path)
    if not p.is_file():
        raise Refused("the upload is missing")
    size = p.stat().st_size
    if size > max_bytes:
        raise Refused(f"the image is {size / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.0f} MB")
    try:
        with Image.open(p) as probe:  # reads the header only
            fmt, (w, h) = probe.format, probe.size
            if fmt not in IMAGE_FORMATS:
                raise Refused(f"not an accepted image type ({fmt or 'unknown'}); use PNG, JPEG, WebP or BMP")
            if w * h > max_pixels:
                raise Refused(f"the image declares {w}x{h} pixels; the limit is {max_pixels // 1_000_000} MP")
            probe.verify()  # structure and checksums, still without decoding pixels
        with Image.open(p) as img:
            img.load()
            rgb = img.convert("RGB")
    except Refused:
        raise
    except Image.DecompressionBombError:
        raise Refused("the image declares too many pixels (decompression bomb guard)") from None
    except Exception as e:  # truncated, corrupt or disguised files: PIL raises many kinds
        raise Refused(f"the file is not a readable image ({type(e).__name__})") from None
    rgb.thumbnail((MODEL_SIDE, MODEL_SIDE))
    return rgb
