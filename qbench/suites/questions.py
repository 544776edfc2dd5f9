"""Question families for the mini-suites: each reads the facts of a generated scene and asks one question about it.

A family returns a QA, or None when the scene does not allow its question (e.g. no shape is unique by colour).
Families are grouped by the benchmark whose skills they imitate: VQAv2 (attributes, counts, existence), GQA
(spatial relations, one answer), VizWiz (one object, or unanswerable), TextVQA (reading the words on signs).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from qbench.suites.scenes import COLOURS, PLURALS, SHAPES, Scene, Shape

UNANSWERABLE = "unanswerable"


@dataclass(frozen=True)
class QA:
    question: str
    answer: str
    family: str  # VQAv2 question_type / GQA detailed type
    answer_type: str  # "other", "number", "yes/no" or "unanswerable"
    distractors: tuple[str, ...] = ()  # wrong answers that some of the ten annotators give
    full_answer: str = ""  # GQA's fullAnswer


Family = Callable[[random.Random, Scene], QA | None]


def others(options, answer: str) -> tuple[str, ...]:
    return tuple(o for o in options if o != answer)


def article(phrase: str) -> str:
    """The phrase with its indefinite article: "a red circle", "an orange star"."""
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def yes_no(answer: bool) -> str:
    return "yes" if answer else "no"


# --- VQAv2: attributes, counts, existence -----------------------------------------------------------------------
def alone_in(rng: random.Random, scene: Scene, kind: Callable[[Shape], list[Shape]]) -> Shape | None:
    """A random shape that is the only one of its `kind` (the shapes with its shape, or with its colour); None if no
    shape is."""
    unique = [s for s in scene.shapes if len(kind(s)) == 1]
    return rng.choice(unique) if unique else None


def vqa_colour(rng: random.Random, scene: Scene) -> QA | None:
    shape = alone_in(rng, scene, lambda s: scene.with_shape(s.shape))
    if shape is None:
        return None
    return QA(f"What color is the {shape.shape}?", shape.colour, "what color is the", "other",
              others(COLOURS, shape.colour))


def vqa_shape(rng: random.Random, scene: Scene) -> QA | None:
    shape = alone_in(rng, scene, lambda s: scene.with_colour(s.colour))
    if shape is None:
        return None
    return QA(f"What shape is the {shape.colour} one?", shape.shape, "what shape is the", "other",
              others(SHAPES, shape.shape))


def vqa_count(rng: random.Random, scene: Scene) -> QA:
    anything = rng.random() < 0.3  # mostly about what is there, sometimes about what is not (answer 0)
    if rng.random() < 0.5:
        kind = rng.choice(SHAPES if anything else [s.shape for s in scene.shapes])
        count, question = len(scene.with_shape(kind)), f"How many {PLURALS[kind]} are there?"
    else:
        colour = rng.choice(list(COLOURS) if anything else [s.colour for s in scene.shapes])
        count, question = len(scene.with_colour(colour)), f"How many {colour} shapes are there?"
    return QA(question, str(count), "how many", "number", (str(count + 1), str(max(count - 1, 0))))


def vqa_exists(rng: random.Random, scene: Scene) -> QA | None:
    present = {(s.colour, s.shape) for s in scene.shapes}
    absent = sorted({(c, s) for c in COLOURS for s in SHAPES} - present)
    if rng.random() < 0.5:
        (colour, kind), answer = rng.choice(sorted(present)), True
    else:
        (colour, kind), answer = rng.choice(absent), False
    return QA(f"Is there {article(f'{colour} {kind}')} in the image?", yes_no(answer), "is there a", "yes/no",
              (yes_no(not answer),))


VQAV2_FAMILIES: list[Family] = [vqa_colour, vqa_shape, vqa_count, vqa_exists]


# --- GQA: spatial relations between uniquely named shapes ----------------------------------------------------------
RELATIONS: dict[str, Callable[[Shape, Shape], bool]] = {
    "to the left of": lambda a, b: a.column < b.column,
    "to the right of": lambda a, b: a.column > b.column,
    "above": lambda a, b: a.row < b.row,
    "below": lambda a, b: a.row > b.row,
}


def uniquely_named(scene: Scene) -> list[Shape]:
    return [s for s in scene.shapes if len(scene.named(s.colour, s.shape)) == 1]


def pair_apart(rng: random.Random, scene: Scene, axis: str) -> tuple[Shape, Shape] | None:
    """Two uniquely named shapes in different columns or rows (`axis`), chosen at random; None if there are none."""
    named = uniquely_named(scene)
    pairs = [(a, b) for a in named for b in named if getattr(a, axis) != getattr(b, axis)]
    return rng.choice(pairs) if pairs else None


def gqa_choose_side(rng: random.Random, scene: Scene) -> QA | None:
    if (pair := pair_apart(rng, scene, "column")) is None:
        return None
    a, b = pair
    side = "left" if a.column < b.column else "right"
    return QA(f"Is the {a.name} to the left or to the right of the {b.name}?", side, "relChooseSide", "other",
              others(("left", "right"), side), f"The {a.name} is to the {side} of the {b.name}.")


def gqa_choose_height(rng: random.Random, scene: Scene) -> QA | None:
    if (pair := pair_apart(rng, scene, "row")) is None:
        return None
    a, b = pair
    where = "above" if a.row < b.row else "below"
    return QA(f"Is the {a.name} above or below the {b.name}?", where, "relChooseHeight", "other",
              others(("above", "below"), where), f"The {a.name} is {where} the {b.name}.")


def single_related(scene: Scene) -> list[tuple[Shape, str, Shape]]:
    """(reference, relation, other) where `other` is the only shape in that relation to the uniquely named reference."""
    found = []
    for reference in uniquely_named(scene):
        for relation, holds in RELATIONS.items():
            matches = [s for s in scene.shapes if s is not reference and holds(s, reference)]
            if len(matches) == 1:
                found.append((reference, relation, matches[0]))
    return found


def gqa_query_shape(rng: random.Random, scene: Scene) -> QA | None:
    related = pick_related(rng, scene)
    if related is None:
        return None
    reference, relation, other = related
    return QA(f"What shape is {relation} the {reference.name}?", other.shape, "relQueryShape", "other",
              others(SHAPES, other.shape), f"The shape {relation} the {reference.name} is a {other.shape}.")


def gqa_query_colour(rng: random.Random, scene: Scene) -> QA | None:
    related = pick_related(rng, scene)
    if related is None:
        return None
    reference, relation, other = related
    return QA(f"What color is the shape {relation} the {reference.name}?", other.colour, "relQueryColor", "other",
              others(COLOURS, other.colour), f"The shape {relation} the {reference.name} is {other.colour}.")


def pick_related(rng: random.Random, scene: Scene):
    """A random (reference, relation, the one shape in that relation to it), or None where the scene has none."""
    options = single_related(scene)
    return rng.choice(options) if options else None


def gqa_verify(rng: random.Random, scene: Scene) -> QA | None:
    references = uniquely_named(scene)
    if not references:
        return None
    reference, relation, kind = rng.choice(references), rng.choice(list(RELATIONS)), rng.choice(SHAPES)
    found = any(s.shape == kind and RELATIONS[relation](s, reference) for s in scene.shapes if s is not reference)
    answer = yes_no(found)
    full = f"{answer.capitalize()}, there is {'a' if found else 'no'} {kind} {relation} the {reference.name}."
    return QA(f"Is there a {kind} {relation} the {reference.name}?", answer, "relVerify", "yes/no",
              (yes_no(not found),), full)


GQA_FAMILIES: list[Family] = [gqa_choose_side, gqa_choose_height, gqa_query_shape, gqa_query_colour, gqa_verify]


# --- VizWiz: one photographed object, or a question the picture cannot answer ---------------------------------------
def vizwiz_colour(rng: random.Random, scene: Scene) -> QA | None:
    if len(scene.shapes) != 1:
        return None
    return QA("What color is this?", scene.shapes[0].colour, "what color is", "other",
              others(COLOURS, scene.shapes[0].colour))


def vizwiz_shape(rng: random.Random, scene: Scene) -> QA | None:
    if len(scene.shapes) != 1:
        return None
    return QA("What shape is this?", scene.shapes[0].shape, "what shape is", "other",
              others(SHAPES, scene.shapes[0].shape))


def vizwiz_count(rng: random.Random, scene: Scene) -> QA:
    count = len(scene.shapes)
    return QA("How many shapes are there?", str(count), "how many", "number", (str(count + 1), str(count - 1)))


def vizwiz_absent(rng: random.Random, scene: Scene) -> QA | None:
    if rng.random() < 0.5:  # rarer than the answerable questions
        return None
    kind = rng.choice([kind for kind in SHAPES if not scene.with_shape(kind)])
    return QA(f"What color is the {kind}?", UNANSWERABLE, "what color is", UNANSWERABLE, tuple(COLOURS))


VIZWIZ_FAMILIES: list[Family] = [vizwiz_colour, vizwiz_shape, vizwiz_count, vizwiz_absent]


def unanswerable(qa: QA) -> QA:
    """The same question about a picture too blurred or too dark to answer it."""
    return QA(qa.question, UNANSWERABLE, qa.family, UNANSWERABLE, (qa.answer,))


# --- TextVQA: the words written on signs ----------------------------------------------------------------------------
def text_single(rng: random.Random, scene: Scene) -> QA | None:
    if len(scene.signs) != 1:
        return None
    question = rng.choice(["What does the sign say?", "What word is written in the image?"])
    return QA(question, scene.signs[0].word, "read", "other")


def text_by_colour(rng: random.Random, scene: Scene) -> QA | None:
    if len(scene.signs) < 2:
        return None
    sign = rng.choice(scene.signs)
    return QA(f"What does the {sign.colour} sign say?", sign.word, "read colour", "other",
              tuple(s.word for s in scene.signs if s is not sign))


def text_by_position(rng: random.Random, scene: Scene) -> QA | None:
    if len(scene.signs) < 2:
        return None
    top = rng.random() < 0.5
    sign = scene.signs[0] if top else scene.signs[-1]
    return QA(f"What word is written at the {'top' if top else 'bottom'}?", sign.word, "read position", "other",
              tuple(s.word for s in scene.signs if s is not sign))


TEXTVQA_FAMILIES: list[Family] = [text_single, text_by_colour, text_by_position]


def annotate(rng: random.Random, qa: QA, annotators: int = 10, agreement: float = 0.9) -> list[str]:
    """Ten human-like answers: mostly the right one, sometimes a plausible wrong one."""
    return [qa.answer if not qa.distractors or rng.random() < agreement else rng.choice(qa.distractors)
            for _ in range(annotators)]
