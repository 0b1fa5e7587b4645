"""Browser input never opens anything outside the runs root; uploads are limited by type, bytes and pixels."""

import pytest
from PIL import Image

from app.safety import MAX_PIXELS, Refused, confine, limit_text, load_upload


@pytest.mark.parametrize(
    "bad",
    [
        "../x",
        "demo/../../etc",
        "/etc/passwd",
        "~/x",
        "demo/./x",
        ".hidden",
        "a\x00b",
        "",
        "..\\..\\etc",
        "demo//x",
    ],
)
def test_traversal_and_odd_paths_are_refused(tmp_path, bad):
    with pytest.raises(Refused):
        confine(tmp_path, bad)


def test_plain_paths_resolve_inside_the_root(tmp_path):
    (tmp_path / "demo" / "sft").mkdir(parents=True)
    assert confine(tmp_path, "demo/sft") == (tmp_path / "demo" / "sft").resolve()


def test_a_symlink_out_of_the_root_is_refused(tmp_path):
    root = tmp_path / "runs"
    root.mkdir()
    (root / "escape").symlink_to(tmp_path.parent)
    with pytest.raises(Refused, match="outside"):
        confine(root, "escape")


def test_uploads_verified(tmp_path, png_header):
    good = tmp_path / "ok.jpg"
    Image.new("RGB", (900, 600), (200, 120, 100)).save(good)
    img = load_upload(good)
    assert img.mode == "RGB" and max(img.size) == 448  # downscaled for the model

    bomb = tmp_path / "bomb.png"
    png_header(bomb, 60000, 60000)
    with pytest.raises(Refused, match="pixels"):
        load_upload(bomb)
    assert 60000 * 60000 > MAX_PIXELS

    fake = tmp_path / "fake.png"
    fake.write_text("<svg onload=alert(1)></svg>")
    with pytest.raises(Refused, match="not a readable image|not an accepted"):
        load_upload(fake)

    gif = tmp_path / "x.gif"
    Image.new("RGB", (8, 8)).save(gif)
    with pytest.raises(Refused, match="accepted image type"):
        load_upload(gif)

    truncated = tmp_path / "cut.png"
    Image.new("RGB", (300, 300), (1, 2, 3)).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(Refused):
        load_upload(truncated)

    with pytest.raises(Refused, match="limit"):
        load_upload(good, max_bytes=100)


def test_text_limit():
    assert limit_text("  a case ", "the case") == "a case"
    with pytest.raises(Refused, match="limit"):
        limit_text("x" * 9000, "the case")
