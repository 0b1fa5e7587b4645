"""Draw one synthetic skin image from ground-truth findings (KG node ids); Pillow only, ~ms per image.

Every finding the renderer knows has a drawing rule below; ``SUPPORTED`` lists them so the sampler only
puts findings into the ground truth that are actually drawn.
"""

from __future__ import annotations

import math
import random

from PIL import Image, ImageChops, ImageDraw, ImageFilter

SS = 2  # supersampling factor: draw large, downscale once for smooth edges

FITZPATRICK_RGB = {
    1: (246, 224, 208),
    2: (234, 199, 172),
    3: (210, 166, 130),
    4: (176, 124, 88),
    5: (122, 82, 57),
    6: (78, 52, 38),
}
COLOUR_RGB = {
    "colour:light_brown": (165, 112, 70),
    "colour:dark_brown": (92, 55, 33),
    "colour:black": (32, 24, 24),
    "colour:blue_grey": (92, 104, 128),
    "colour:red": (205, 62, 62),
    "colour:pink": (230, 140, 145),
    "colour:salmon_pink": (238, 138, 112),
    "colour:violaceous": (128, 66, 122),
    "colour:purple": (118, 36, 88),
    "colour:white": (238, 236, 230),
    "colour:yellow": (222, 190, 92),
    "colour:depigmented": (252, 247, 242),
    "colour:tan": (196, 150, 105),
}
RELATIVE = {"colour:skin_coloured": 0.92, "colour:hypopigmented": 1.22, "colour:hyperpigmented": 0.62}
SIZE_FRAC = {"size:small": (0.07, 0.10), "size:medium": (0.13, 0.19), "size:large": (0.23, 0.32)}
LAYOUTS = {
    "distribution:solitary": (1, 1),
    "distribution:multiple": (3, 6),
    "distribution:grouped": (5, 9),
    "distribution:generalized": (9, 15),
    "distribution:dermatomal": (7, 11),
    "distribution:symmetric": (4, 6),
    "distribution:christmas_tree": (5, 8),
    "distribution:centrofacial": (1, 1),
    "distribution:follicular": (8, 14),
    "distribution:flexural": (1, 1),
    "distribution:sun_exposed": (3, 6),
    "distribution:unilateral": (1, 1),
    "distribution:extensor": (2, 4),
    "distribution:satellite_lesions": (5, 8),
}
SHAPES = (
    "shape:round",
    "shape:oval",
    "shape:irregular",
    "shape:asymmetric",
    "shape:annular",
    "shape:polygonal",
    "shape:linear",
    "shape:targetoid",
)
BORDERS = (
    "border:well_defined",
    "border:ill_defined",
    "border:irregular",
    "border:rolled",
    "border:raised_active_edge",
)
SURFACES = (
    "surface:smooth",
    "surface:scaly",
    "surface:silvery_scale",
    "surface:crusted",
    "surface:honey_crust",
    "surface:ulcerated",
    "surface:verrucous",
    "surface:stuck_on",
    "surface:shiny",
    "surface:keratotic",
    "surface:umbilicated",
    "surface:lichenified",
    "surface:excoriated",
    "surface:fine_scale",
    "surface:greasy_scale",
)
MORPHOLOGY = (
    "morphology:macule",
    "morphology:patch",
    "morphology:papule",
    "morphology:plaque",
    "morphology:nodule",
    "morphology:vesicle",
    "morphology:pustule",
    "morphology:wheal",
    "morphology:comedo",
    "morphology:bulla",
    "morphology:erosion",
    "morphology:burrow",
    "morphology:palpable_purpura",
)
DERMOSCOPY = tuple(
    f"dermoscopic_feature:{n}"
    for n in (
        "pigment_network",
        "atypical_pigment_network",
        "blue_white_veil",
        "irregular_dots_globules",
        "streaks",
        "arborizing_vessels",
        "milia_like_cysts",
        "comedo_like_openings",
        "central_white_patch",
        "red_blue_lacunae",
        "strawberry_pattern",
        "wickham_striae",
        "dotted_vessels",
        "glomerular_vessels",
        "telangiectasia",
        "regression_structures",
        "leaf_like_areas",
        "blue_grey_ovoid_nests",
        "fissures_ridges",
        "hairpin_vessels",
        "peripheral_delicate_network",
        "moth_eaten_border",
    )
)
SUPPORTED: set[str] = {
    *COLOUR_RGB,
    *RELATIVE,
    *SIZE_FRAC,
    *LAYOUTS,
    *SHAPES,
    *BORDERS,
    *SURFACES,
    *MORPHOLOGY,
    *DERMOSCOPY,
}


def _scale(c, f: float) -> tuple[int, int, int]:
    return tuple(max(0, min(255, int(x * f))) for x in c)


def skin(size: int, fitzpatrick: int, rng: random.Random) -> Image.Image:
    """A Fitzpatrick-toned background with blotchy low-frequency and pore-like fine texture."""
    base = FITZPATRICK_RGB[fitzpatrick]
    img = Image.new("RGB", (size, size), base)
    coarse = Image.frombytes("L", (8, 8), rng.randbytes(64)).resize((size, size), Image.BICUBIC)
    fine = Image.frombytes("L", (size // 2, size // 2), rng.randbytes((size // 2) ** 2)).resize((size, size))
    dark, light = _scale(base, 0.86), _scale(base, 1.08)
    img = Image.composite(Image.new("RGB", img.size, light), Image.new("RGB", img.size, dark), coarse)
    img = Image.blend(img, Image.new("RGB", img.size, base), 0.45)
    return Image.composite(
        Image.new("RGB", img.size, _scale(base, 0.93)),
        img,
        fine.point(lambda v: 90 if v > 200 else 0).filter(ImageFilter.GaussianBlur(0.8)),
    )


def _outline(cx, cy, r, shape, border, rng, n=48) -> list[tuple[float, float]]:
    aspect = {"shape:oval": 0.68, "shape:linear": 0.28}.get(shape, 1.0)
    rot = rng.uniform(0, math.pi)
    harm = []
    if shape in ("shape:irregular", "shape:asymmetric"):
        harm += [(k, rng.uniform(0.08, 0.22), rng.uniform(0, 6.3)) for k in (1, 2, 3)]
    if border in ("border:irregular", "dermoscopic_feature:moth_eaten_border"):
        harm += [(k, rng.uniform(0.04, 0.09), rng.uniform(0, 6.3)) for k in (7, 11, 13)]
    pts = []
    sides = 6 if shape == "shape:polygonal" else 0
    for i in range(n):
        a = 2 * math.pi * i / n
        rr = r * (1 + sum(amp * math.sin(k * a + ph) for k, amp, ph in harm) + rng.uniform(-0.015, 0.015))
        if sides:
            seg = math.pi / sides
            rr *= math.cos(seg) / math.cos((a % (2 * seg)) - seg)
        x, y = rr * math.cos(a), rr * aspect * math.sin(a)
        pts.append((cx + x * math.cos(rot) - y * math.sin(rot), cy + x * math.sin(rot) + y * math.cos(rot)))
    return pts


def _centres(layout: str, n: int, S: int, r: float, rng: random.Random) -> list[tuple[float, float]]:
    if layout == "distribution:dermatomal":
        y0, slope = rng.uniform(0.3, 0.7) * S, rng.uniform(-0.3, 0.3)
        return [
            (x, y0 + slope * (x - S / 2) + rng.gauss(0, r * 0.6))
            for x in [S * (0.1 + 0.8 * i / max(1, n - 1)) for i in range(n)]
        ]
    if layout in ("distribution:grouped", "distribution:satellite_lesions"):
        gx, gy = rng.uniform(0.35, 0.65) * S, rng.uniform(0.35, 0.65) * S
        spread = 1.8 if layout == "distribution:grouped" else 3.2
        return [(gx + rng.gauss(0, r * spread), gy + rng.gauss(0, r * spread)) for _ in range(n)]
    if layout == "distribution:symmetric":
        half = [(rng.uniform(0.12, 0.4) * S, rng.uniform(0.15, 0.85) * S) for _ in range((n + 1) // 2)]
        return half + [(S - x, y) for x, y in half][: n - len(half)]
    if n == 1:
        return [(S / 2 + rng.uniform(-0.06, 0.06) * S, S / 2 + rng.uniform(-0.06, 0.06) * S)]
    m = r * 1.1
    return [(rng.uniform(m, S - m), rng.uniform(m, S - m)) for _ in range(n)]


def _dots(d: ImageDraw.ImageDraw, cx, cy, r, n, rad, fill, rng, spread=0.8):
    for _ in range(n):
        a, q = rng.uniform(0, 6.283), r * spread * math.sqrt(rng.random())
        x, y, s = cx + q * math.cos(a), cy + q * math.sin(a), rad * rng.uniform(0.7, 1.3)
        d.ellipse((x - s, y - s, x + s, y + s), fill=fill)


def _lines(d, cx, cy, r, n, fill, width, rng, length=0.5, curvy=False):
    for _ in range(n):
        a, q = rng.uniform(0, 6.283), r * 0.7 * math.sqrt(rng.random())
        x, y = cx + q * math.cos(a), cy + q * math.sin(a)
        pts = [(x, y)]
        ang = rng.uniform(0, 6.283)
        for _ in range(4 if curvy else 1):
            ang += rng.uniform(-1.2, 1.2) if curvy else 0
            step = r * length / (4 if curvy else 1)
            x, y = x + step * math.cos(ang), y + step * math.sin(ang)
            pts.append((x, y))
        d.line(pts, fill=fill, width=width)


def _branches(d, x, y, ang, length, width, fill, rng, depth=3):
    if depth == 0 or length < 2:
        return
    x2, y2 = x + length * math.cos(ang), y + length * math.sin(ang)
    d.line([(x, y), (x2, y2)], fill=fill, width=max(1, int(width)))
    for s in (-1, 1):
        _branches(
            d, x2, y2, ang + s * rng.uniform(0.3, 0.8), length * 0.62, width * 0.7, fill, rng, depth - 1
        )


def _overlay(img: Image.Image, mask: Image.Image, draw_fn, blur: float = 0.0) -> Image.Image:
    """Run ``draw_fn(draw)`` on a transparent layer, clip it to the lesion mask, paste it on ``img``."""
    layer = Image.new("RGBA", img.size, (0, 0, 0, 0))
    draw_fn(ImageDraw.Draw(layer))
    if blur > 0.6:  # smaller blurs are invisible after the 2x downscale; blur is the main cost here
        layer = layer.filter(ImageFilter.GaussianBlur(blur))
    alpha = ImageChops.multiply(layer.getchannel("A"), mask)
    return Image.composite(layer.convert("RGB"), img, alpha)


def _lesion(img, f: dict[str, list[str]], cx, cy, r, skin_rgb, rng) -> Image.Image:
    """Draw one lesion inside its bounding box only (overlays on a crop keep this ~1 ms)."""
    m = 1.8 * r + 4
    x0, y0 = max(0, int(cx - m)), max(0, int(cy - m))
    x1, y1 = min(img.size[0], int(cx + m) + 1), min(img.size[1], int(cy + m) + 1)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return img
    crop = _lesion_at(img.crop((x0, y0, x1, y1)), f, cx - x0, cy - y0, r, skin_rgb, rng)
    img.paste(crop, (x0, y0))
    return img


def _lesion_at(img, f: dict[str, list[str]], cx, cy, r, skin_rgb, rng) -> Image.Image:
    one = {t: (v[0] if v else "") for t, v in f.items()}
    colours = f.get("colour", ["colour:light_brown"])
    shape, border = one.get("shape", "shape:round"), one.get("border", "border:well_defined")
    morph, surf, derm = (
        one.get("morphology", ""),
        set(f.get("surface", [])),
        set(f.get("dermoscopic_feature", [])),
    )
    border_src = (
        "dermoscopic_feature:moth_eaten_border" if "dermoscopic_feature:moth_eaten_border" in derm else border
    )
    poly = _outline(cx, cy, r, shape, border_src, rng)

    def colour(cid: str) -> tuple[int, int, int]:
        return COLOUR_RGB.get(cid) or _scale(skin_rgb, RELATIVE.get(cid, 1.0))

    mask = Image.new("L", img.size, 0)
    md = ImageDraw.Draw(mask)
    md.polygon(poly, fill=235)
    ring = shape == "shape:annular"  # central clearing
    if ring:
        md.polygon([(cx + (x - cx) * 0.62, cy + (y - cy) * 0.62) for x, y in poly], fill=60)
    blur = {"border:ill_defined": r * 0.35, "border:irregular": 1.2}.get(border, 0.9 * SS)
    if morph in ("morphology:patch", "morphology:macule") and border == "border:ill_defined":
        blur *= 1.3
    mask = mask.filter(ImageFilter.GaussianBlur(blur))

    # base colour plus blotches of the other colours (several colours = variegation)
    layer = Image.new("RGB", img.size, colour(colours[0]))
    ld = ImageDraw.Draw(layer)
    for k, cid in enumerate(colours[1:]):
        for _ in range(2 if k < 2 else 1):
            a, q = rng.uniform(0, 6.283), rng.uniform(0.1, 0.55) * r
            s = r * rng.uniform(0.25, 0.5)
            bx, by = cx + q * math.cos(a), cy + q * math.sin(a)
            ld.ellipse((bx - s, by - s * rng.uniform(0.6, 1), bx + s, by + s), fill=colour(cid))
    if len(colours) > 1:
        layer = layer.filter(ImageFilter.GaussianBlur(r * 0.12))
    if morph in ("morphology:papule", "morphology:nodule", "morphology:bulla", "morphology:plaque"):
        hl = Image.new("L", img.size, 0)
        s = r * (0.55 if morph != "morphology:plaque" else 0.8)
        ImageDraw.Draw(hl).ellipse(
            (cx - s - r * 0.25, cy - s - r * 0.25, cx + s - r * 0.25, cy + s - r * 0.25), fill=70
        )
        layer = Image.composite(
            Image.new("RGB", img.size, (255, 255, 255)), layer, hl.filter(ImageFilter.GaussianBlur(r * 0.4))
        )
    img = Image.composite(layer, img, mask)
    lw = max(1, int(r * 0.06))

    def edge(fill, width):
        return lambda d: d.line(poly + poly[:1], fill=fill, width=width)

    if border == "border:rolled":
        img = _overlay(
            img, mask.point(lambda v: 255 if v else 0), edge((255, 236, 236, 170), max(2, int(r * 0.16))), 1.0
        )
    if border == "border:raised_active_edge" or (ring and "surface:scaly" in surf):
        img = _overlay(
            img, Image.new("L", img.size, 255), edge(colour(colours[0]) + (200,), max(2, int(r * 0.14))), 0.8
        )
    # surface
    if "surface:silvery_scale" in surf:
        img = _overlay(
            img, mask, lambda d: _dots(d, cx, cy, r, int(r * 3), r * 0.09, (236, 236, 240, 215), rng), 0.6
        )
    if "surface:scaly" in surf:
        img = _overlay(
            img, mask, lambda d: _lines(d, cx, cy, r, int(r * 0.9), (245, 240, 232, 200), lw, rng, 0.18), 0.4
        )
    if "surface:fine_scale" in surf:
        img = _overlay(img, mask, edge((250, 246, 240, 200), lw), 0.5)
    if "surface:greasy_scale" in surf:
        img = _overlay(
            img, mask, lambda d: _dots(d, cx, cy, r, int(r * 1.2), r * 0.08, (235, 210, 140, 190), rng), 0.6
        )
    if surf & {"surface:crusted", "surface:honey_crust"}:
        fill = (214, 160, 60, 235) if "surface:honey_crust" in surf else (140, 80, 40, 230)
        img = _overlay(img, mask, lambda d: _dots(d, cx, cy, r, 6, r * 0.18, fill, rng, 0.6), 0.8)
    if "surface:ulcerated" in surf:
        img = _overlay(
            img, mask, lambda d: _dots(d, cx, cy, r, 3, r * 0.22, (120, 20, 28, 235), rng, 0.25), 1.0
        )
    if surf & {"surface:verrucous", "surface:keratotic"}:
        img = _overlay(
            img, mask, lambda d: _dots(d, cx, cy, r, int(r * 4), r * 0.05, (250, 238, 220, 120), rng), 0.3
        )
        img = _overlay(
            img, mask, lambda d: _dots(d, cx, cy, r, int(r * 2), r * 0.05, (60, 40, 30, 100), rng), 0.3
        )
    if "surface:stuck_on" in surf:
        img = _overlay(
            img, mask, lambda d: _lines(d, cx, cy, r, 5, (50, 32, 20, 170), lw, rng, 0.5, curvy=True), 0.3
        )
    if "surface:shiny" in surf:
        s = r * 0.22
        img = _overlay(
            img,
            mask,
            lambda d: d.ellipse(
                (cx - r * 0.4 - s, cy - r * 0.4 - s, cx - r * 0.4 + s, cy - r * 0.4 + s),
                fill=(255, 255, 255, 150),
            ),
            r * 0.12,
        )
    if "surface:umbilicated" in surf:
        s = r * 0.18
        img = _overlay(
            img, mask, lambda d: d.ellipse((cx - s, cy - s, cx + s, cy + s), fill=(150, 110, 100, 200)), 0.8
        )
    if "surface:lichenified" in surf:
        img = _overlay(
            img,
            mask,
            lambda d: [
                d.line(
                    [(cx - r + i * r / 3, cy - r), (cx - r + i * r / 3 + r, cy + r)],
                    fill=(90, 50, 50, 110),
                    width=lw,
                )
                for i in range(7)
            ],
            0.3,
        )
    if "surface:excoriated" in surf:
        img = _overlay(img, mask, lambda d: _lines(d, cx, cy, r, 3, (160, 20, 20, 200), lw, rng, 0.6), 0.3)
    # primary-lesion extras
    if morph in ("morphology:vesicle", "morphology:pustule"):
        fill = (250, 245, 215, 220) if morph == "morphology:pustule" else (255, 235, 230, 180)
        img = _overlay(
            img, mask, lambda d: _dots(d, cx, cy, r, max(3, int(r * 0.5)), r * 0.12, fill, rng), 0.5
        )
    if morph == "morphology:wheal":
        img = _overlay(
            img, mask, lambda d: _dots(d, cx, cy, r, 1, r * 0.45, (250, 225, 225, 160), rng, 0.1), r * 0.25
        )
    if morph == "morphology:comedo":
        img = _overlay(img, mask, lambda d: _dots(d, cx, cy, r, 1, r * 0.2, (40, 30, 25, 230), rng, 0.1), 0.5)
    if morph == "morphology:burrow":
        img = _overlay(
            img,
            Image.new("L", img.size, 255),
            lambda d: _lines(d, cx, cy, r, 1, (110, 100, 95, 220), lw, rng, 1.6, curvy=True),
            0.3,
        )
    if morph == "morphology:erosion":
        img = _overlay(
            img, mask, lambda d: _dots(d, cx, cy, r, 2, r * 0.3, (220, 90, 90, 150), rng, 0.3), 1.0
        )
    # dermoscopic structures
    for df in sorted(derm):
        img = _DERMOSCOPY_DRAW.get(df, lambda *a: a[0])(img, mask, cx, cy, r, lw, rng)
    return img


def _network(colour, irregular):
    def draw(img, mask, cx, cy, r, lw, rng):
        def fn(d):
            step = r * (0.22 if not irregular else 0.3)
            k = int(2 * r / step) + 2
            for i in range(k):
                off = (rng.uniform(-0.3, 0.3) * step) if irregular else 0
                w = lw * (2 if irregular and rng.random() < 0.4 else 1)
                d.line(
                    [(cx - r + i * step + off, cy - r), (cx - r + i * step - off, cy + r)],
                    fill=colour,
                    width=w,
                )
                d.line(
                    [(cx - r, cy - r + i * step + off), (cx + r, cy - r + i * step - off)],
                    fill=colour,
                    width=w,
                )

        return _overlay(img, mask, fn, 0.4)

    return draw


def _simple(fn_factory, blur=0.5):
    return lambda img, mask, cx, cy, r, lw, rng: _overlay(img, mask, fn_factory(cx, cy, r, lw, rng), blur)


_DERMOSCOPY_DRAW = {
    "dermoscopic_feature:pigment_network": _network((70, 42, 25, 95), False),
    "dermoscopic_feature:peripheral_delicate_network": _network((90, 55, 35, 110), False),
    "dermoscopic_feature:atypical_pigment_network": _network((35, 22, 18, 190), True),
    "dermoscopic_feature:blue_white_veil": _simple(
        lambda cx, cy, r, lw, rng: (
            lambda d: _dots(d, cx + r * 0.2, cy, r, 2, r * 0.35, (150, 170, 205, 190), rng, 0.3)
        ),
        3.0,
    ),
    "dermoscopic_feature:irregular_dots_globules": _simple(
        lambda cx, cy, r, lw, rng: lambda d: _dots(d, cx, cy, r, 9, r * 0.07, (30, 20, 20, 230), rng, 0.95)
    ),
    "dermoscopic_feature:streaks": lambda img, mask, cx, cy, r, lw, rng: _overlay(
        img,
        Image.new("L", img.size, 255),
        lambda d: [
            d.line(
                [
                    (cx + r * 0.75 * math.cos(a), cy + r * 0.75 * math.sin(a)),
                    (cx + r * 1.15 * math.cos(a), cy + r * 1.15 * math.sin(a)),
                ],
                fill=(40, 25, 20, 220),
                width=lw,
            )
            for a in [rng.uniform(0, 6.28) for _ in range(5)]
        ],
        0.4,
    ),
    "dermoscopic_feature:arborizing_vessels": _simple(
        lambda cx, cy, r, lw, rng: (
            lambda d: [
                _branches(
                    d,
                    cx + rng.uniform(-0.4, 0.4) * r,
                    cy + rng.uniform(-0.4, 0.4) * r,
                    rng.uniform(0, 6.28),
                    r * 0.45,
                    lw * 1.5,
                    (185, 20, 35, 230),
                    rng,
                )
                for _ in range(3)
            ]
        ),
        0.3,
    ),
    "dermoscopic_feature:telangiectasia": _simple(
        lambda cx, cy, r, lw, rng: (
            lambda d: _lines(
                d, cx, cy, r * 1.4, 6, (200, 40, 50, 200), max(1, lw // 2 + 1), rng, 0.5, curvy=True
            )
        ),
        0.3,
    ),
    "dermoscopic_feature:milia_like_cysts": _simple(
        lambda cx, cy, r, lw, rng: lambda d: _dots(d, cx, cy, r, 6, r * 0.07, (252, 250, 240, 240), rng), 0.3
    ),
    "dermoscopic_feature:comedo_like_openings": _simple(
        lambda cx, cy, r, lw, rng: lambda d: _dots(d, cx, cy, r, 6, r * 0.07, (45, 30, 20, 235), rng), 0.3
    ),
    "dermoscopic_feature:central_white_patch": _simple(
        lambda cx, cy, r, lw, rng: (
            lambda d: d.ellipse(
                (cx - r * 0.38, cy - r * 0.3, cx + r * 0.38, cy + r * 0.3), fill=(245, 238, 230, 225)
            )
        ),
        1.5,
    ),
    "dermoscopic_feature:red_blue_lacunae": _simple(
        lambda cx, cy, r, lw, rng: (
            lambda d: [
                _dots(d, cx, cy, r, 4, r * 0.17, c, rng, 0.6)
                for c in ((170, 20, 50, 230), (90, 40, 110, 230))
            ]
        ),
        0.5,
    ),
    "dermoscopic_feature:strawberry_pattern": _simple(
        lambda cx, cy, r, lw, rng: (
            lambda d: _dots(d, cx, cy, r, int(r * 0.8), r * 0.05, (250, 245, 240, 220), rng)
        ),
        0.3,
    ),
    "dermoscopic_feature:wickham_striae": _simple(
        lambda cx, cy, r, lw, rng: (
            lambda d: _lines(d, cx, cy, r, 4, (250, 250, 250, 220), max(1, lw), rng, 0.5, curvy=True)
        ),
        0.3,
    ),
    "dermoscopic_feature:dotted_vessels": _simple(
        lambda cx, cy, r, lw, rng: (
            lambda d: _dots(d, cx, cy, r, int(r * 0.9), r * 0.04, (175, 15, 30, 230), rng)
        ),
        0.2,
    ),
    "dermoscopic_feature:glomerular_vessels": _simple(
        lambda cx, cy, r, lw, rng: lambda d: _dots(d, cx, cy, r, 6, r * 0.08, (175, 15, 30, 200), rng), 0.6
    ),
    "dermoscopic_feature:hairpin_vessels": _simple(
        lambda cx, cy, r, lw, rng: (
            lambda d: _lines(d, cx, cy, r, 5, (180, 20, 30, 200), lw, rng, 0.25, curvy=True)
        ),
        0.3,
    ),
    "dermoscopic_feature:regression_structures": _simple(
        lambda cx, cy, r, lw, rng: (
            lambda d: _dots(d, cx - r * 0.3, cy, r * 0.5, 14, r * 0.03, (110, 115, 130, 230), rng)
        ),
        0.2,
    ),
    "dermoscopic_feature:leaf_like_areas": _simple(
        lambda cx, cy, r, lw, rng: (
            lambda d: _dots(d, cx, cy, r * 1.05, 4, r * 0.14, (80, 85, 105, 220), rng, 0.95)
        ),
        0.5,
    ),
    "dermoscopic_feature:blue_grey_ovoid_nests": _simple(
        lambda cx, cy, r, lw, rng: lambda d: _dots(d, cx, cy, r, 3, r * 0.16, (75, 85, 110, 225), rng, 0.6),
        0.6,
    ),
    "dermoscopic_feature:fissures_ridges": _simple(
        lambda cx, cy, r, lw, rng: (
            lambda d: _lines(d, cx, cy, r, 6, (45, 28, 18, 200), lw, rng, 0.45, curvy=True)
        ),
        0.3,
    ),
}


def render(findings: dict[str, list[str]], size: int, fitzpatrick: int, rng: random.Random) -> Image.Image:
    """One RGB image showing ``findings`` (KG ids by type) on a Fitzpatrick ``fitzpatrick`` skin background."""
    S = size * SS
    img = skin(S, fitzpatrick, rng)
    skin_rgb = FITZPATRICK_RGB[fitzpatrick]
    one = {t: v[0] for t, v in findings.items() if v}
    layout = one.get("distribution", "distribution:solitary")
    lo, hi = LAYOUTS.get(layout, (1, 1))
    n = rng.randint(lo, hi)
    frac = SIZE_FRAC.get(one.get("size", "size:medium"), (0.13, 0.19))
    shrink = 1.0 if n == 1 else max(0.35, 1.0 / math.sqrt(n) * 1.3)
    if layout == "distribution:centrofacial":  # diffuse erythema plus small papules across it
        f_bg = {
            **findings,
            "morphology": ["morphology:patch"],
            "border": ["border:ill_defined"],
            "dermoscopic_feature": [],
        }
        img = _lesion(img, f_bg, S / 2, S / 2, S * 0.36, skin_rgb, rng)
        n, shrink = rng.randint(5, 9), 0.35
    for cx, cy in _centres(layout, n, S, S * frac[1] * shrink, rng):
        r = S * rng.uniform(*frac) * shrink
        if layout == "distribution:christmas_tree":
            findings = {**findings, "shape": ["shape:oval"]}
        img = _lesion(img, findings, cx, cy, r, skin_rgb, rng)
    return img.resize((size, size), Image.LANCZOS)
