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
IMAGE_FORMATS = {
    "PNG": ".png",
    "JPEG": ".jpg",
    "MPO": ".jpg",
    "WEBP": ".webp",
    "BMP": ".bmp",
}  # MPO: phone JPEGs
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


ACCEPTED = "use PNG, JPEG, WebP or BMP"
_SHOWN_NAME = re.compile(r"[^A-Za-z0-9 ._()+-]")


def upload_path(value) -> Path | None:
    """The server-side file behind an upload, as gradio hands it over: a path (a preprocessed `gr.Image(type=
    "filepath")`), or the FileData dict an event gets with `preprocess=False`. The dict form lets a bad file reach
    our checks: gradio's own preprocessing opens it with PIL first and its error shows the server path."""
    if value is None or value == "":
        return None
    if isinstance(value, dict):
        value = value.get("path")
    elif hasattr(value, "path"):  # a gradio FileData model
        value = value.path
    if not isinstance(value, (str, Path)) or not str(value):
        raise Refused("the upload is not a file; upload an image again")
    return Path(value)


def shown_name(path: Path) -> str:
    """How a message names an uploaded file: its base name only (the folder is the server's upload cache, which
    the browser must never see), reduced to plain characters so it can never become markup, and kept short."""
    name = _SHOWN_NAME.sub("_", path.name)[:60]
    return name or "the uploaded file"


def load_upload(
    path, max_bytes: int = MAX_UPLOAD_BYTES, max_pixels: int = MAX_PIXELS, max_side: int | None = MODEL_SIDE
) -> Image.Image:
    """An uploaded image, verified and decoded as RGB, downscaled to `max_side` (None: kept as is); otherwise
    Refused with a one-line reason that names the file by its base name only, never by a server path.

    `path` is a path or gradio's FileData (see `upload_path`). Refused: a missing file, an extension that is not an
    image's, more than `max_bytes`, content that is not PNG/JPEG/WebP/BMP (a text file renamed .png), a header
    declaring more than `max_pixels` (a decompression bomb, refused before any pixel is decoded), and truncated or
    corrupt data."""
    p = upload_path(path)
    if p is None or not p.is_file():
        raise Refused("the uploaded file is missing; upload it again")
    name = shown_name(p)
    if p.suffix.lower() not in IMAGE_SUFFIXES:
        raise Refused(
            f"{name} is not an accepted image type ({p.suffix.lower() or 'no extension'}); {ACCEPTED}"
        )
    size = p.stat().st_size
    if size > max_bytes:
        raise Refused(f"{name} is {size / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.0f} MB")
    rgb = _decode(p, name, max_pixels)
    if max_side:
        rgb.thumbnail((max_side, max_side))
    return rgb


def _decode(p: Path, name: str, max_pixels: int) -> Image.Image:
    """Header checks, then a full decode; PIL's many exception types (whose messages carry the path) become one
    Refused each."""
    try:
        with Image.open(p) as probe:  # reads the header only
            fmt, (w, h) = probe.format, probe.size
            if fmt not in IMAGE_FORMATS:
                raise Refused(f"{name} is a {fmt or 'unknown'} file, not an accepted image type; {ACCEPTED}")
            if w * h > max_pixels:
                raise Refused(f"{name} declares {w}x{h} pixels; the limit is {max_pixels // 1_000_000} MP")
            probe.verify()  # structure and checksums, still without decoding pixels
        with Image.open(p) as img:
            img.load()
            return img.convert("RGB")
    except Refused:
        raise
    except Image.DecompressionBombError:
        raise Refused(
            f"{name} declares more pixels than the {max_pixels // 1_000_000} MP limit (decompression bomb "
            "guard)"
        ) from None
    except Image.UnidentifiedImageError:
        raise Refused(f"{name} is not a readable image (its content is not image data); {ACCEPTED}") from None
    except Exception:  # truncated, corrupt or disguised files: PIL raises many kinds
        raise Refused(f"{name} is damaged or incomplete: not a readable image; {ACCEPTED}") from None


def check_upload(value) -> str:
    """'' when an upload is an image the app accepts, else the one-line message to show at once (at upload time,
    not after the clinician has pressed Answer). `value` as `upload_path` takes it; None (a cleared upload) is ''."""
    try:
        if upload_path(value) is None:
            return ""
        load_upload(value)
    except Refused as e:
        return str(e)
    return ""
