"""Generated scenes for the mini-suites: coloured shapes on a 3 x 3 grid, and signs with words written on them.

A scene is plain data (every object's shape, colour, grid cell, centre and size), so the same scene always renders
to the same pixels; the question generators in `qbench.suites.mini` read the facts from the scene, never the image.
"""

from __future__ import annotations

import functools
import io
import math
import random
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont

SIZE = 224  # pixels; every scene is square
GRID = 3  # 3 x 3 cells
CELL = SIZE / GRID
BACKGROUND = (255, 255, 255)

COLOURS = {"red": (220, 40, 40), "green": (40, 160, 60), "blue": (40, 80, 220), "yellow": (235, 200, 30),
           "purple": (140, 60, 180), "orange": (245, 130, 30), "black": (25, 25, 25)}
SHAPES = ("circle", "square", "triangle", "star", "cross", "diamond")
PLURALS = {"circle": "circles", "square": "squares", "triangle": "triangles", "star": "stars", "cross": "crosses",
           "diamond": "diamonds"}
ROWS = ("top", "middle", "bottom")
COLUMNS = ("left", "middle", "right")

# Words on the signs of the TextVQA-like scenes.
WORDS = ("stop", "exit", "open", "sale", "cafe", "taxi", "bus", "hotel", "bank", "park", "push", "pull", "menu",
         "shop", "gate", "road", "east", "west", "north", "south", "free", "fire", "milk", "book")


@dataclass(frozen=True)
class Shape:
    shape: str
    colour: str
    row: int  # 0 (top) .. 2 (bottom)
    column: int  # 0 (left) .. 2 (right)
    x: float  # centre, pixels
    y: float
    size: float  # bounding-box side, pixels

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"


@dataclass(frozen=True)
class Sign:
    word: str
    colour: str  # the sign's background colour
    row: int  # the grid row the sign spans (full width)


@dataclass(frozen=True)
class Scene:
    shapes: tuple[Shape, ...] = ()
    signs: tuple[Sign, ...] = ()
    degraded: str | None = None  # "blur" or "dark": too poor to answer from (VizWiz-like)

    def with_shape(self, shape: str) -> list[Shape]:
        return [s for s in self.shapes if s.shape == shape]

    def with_colour(self, colour: str) -> list[Shape]:
        return [s for s in self.shapes if s.colour == colour]

    def named(self, colour: str, shape: str) -> list[Shape]:
        return [s for s in self.shapes if s.colour == colour and s.shape == shape]


def sample_shapes(rng: random.Random, count: int, objects: list[tuple[str, str]] | None = None) -> Scene:
    """`count` shapes in distinct cells with random sizes and jitter; random kinds and colours unless `objects`
    gives each one's (colour, shape)."""
    cells = rng.sample(range(GRID * GRID), count)
    if objects is None:
        objects = [(rng.choice(list(COLOURS)), rng.choice(SHAPES)) for _ in range(count)]
    placed = []
    for cell, (colour, kind) in zip(cells, objects):
        row, column = divmod(cell, GRID)
        size = rng.uniform(0.55, 0.75) * CELL
        slack = (CELL - size) / 2
        placed.append(Shape(kind, colour, row, column,
                            x=(column + 0.5) * CELL + rng.uniform(-slack, slack),
                            y=(row + 0.5) * CELL + rng.uniform(-slack, slack), size=size))
    return Scene(shapes=tuple(placed))


def sample_signs(rng: random.Random, count: int) -> Scene:
    """`count` signs (1 or 2), each a full-width coloured band in its own row with a different word and colour."""
    rows = sorted(rng.sample(range(GRID), count))
    words = rng.sample(WORDS, count)
    colours = rng.sample([c for c in COLOURS if c not in ("black", "yellow")], count)
    return Scene(signs=tuple(Sign(word, colour, row) for word, colour, row in zip(words, colours, rows)))


def polygon(kind: str, x: float, y: float, r: float) -> list[tuple[float, float]]:
    if kind == "triangle":
        return [(x, y - r), (x + r, y + r * 0.8), (x - r, y + r * 0.8)]
    if kind == "diamond":
        return [(x, y - r), (x + r * 0.7, y), (x, y + r), (x - r * 0.7, y)]
    if kind == "star":
        return [(x + (r if i % 2 == 0 else r * 0.45) * math.sin(i * math.pi / 5),
                 y - (r if i % 2 == 0 else r * 0.45) * math.cos(i * math.pi / 5)) for i in range(10)]
    raise ValueError(f"no polygon for {kind!r}")


def draw_shape(draw: ImageDraw.ImageDraw, shape: Shape) -> None:
    x, y, r, fill = shape.x, shape.y, shape.size / 2, COLOURS[shape.colour]
    if shape.shape == "circle":
        draw.ellipse((x - r, y - r, x + r, y + r), fill=fill)
    elif shape.shape == "square":
        draw.rectangle((x - r * 0.85, y - r * 0.85, x + r * 0.85, y + r * 0.85), fill=fill)
    elif shape.shape == "cross":
        arm = r * 0.3
        draw.rectangle((x - r, y - arm, x + r, y + arm), fill=fill)
        draw.rectangle((x - arm, y - r, x + arm, y + r), fill=fill)
    else:
        draw.polygon(polygon(shape.shape, x, y, r), fill=fill)


def draw_sign(draw: ImageDraw.ImageDraw, sign: Sign) -> None:
    top, bottom = sign.row * CELL + 6, (sign.row + 1) * CELL - 6
    draw.rectangle((6, top, SIZE - 6, bottom), fill=COLOURS[sign.colour])
    draw.text((SIZE / 2, (top + bottom) / 2), sign.word.upper(), fill=(255, 255, 255), font=sign_font(), anchor="mm")


@functools.lru_cache(maxsize=1)
def sign_font() -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=44)  # Pillow's own font: the same pixels on every machine


def render(scene: Scene) -> Image.Image:
    image = Image.new("RGB", (SIZE, SIZE), BACKGROUND)
    draw = ImageDraw.Draw(image)
    for shape in scene.shapes:
        draw_shape(draw, shape)
    for sign in scene.signs:
        draw_sign(draw, sign)
    if scene.degraded == "blur":
        image = image.filter(ImageFilter.GaussianBlur(radius=14))
    elif scene.degraded == "dark":
        image = ImageEnhance.Brightness(image).enhance(0.04)
    return image


def jpeg(scene: Scene) -> bytes:
    """The scene as JPEG bytes, as the hub datasets store their photos (same scene and Pillow, same bytes)."""
    buffer = io.BytesIO()
    render(scene).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()
