"""What an extraction stores: the teachers, the student input, and the fields they produce.

Field names (shapes per sample; C candidate texts, L tokens, T grid cells, R regions):

| field | shape | from |
|---|---|---|
| ``img_emb`` | ``[D_img]`` | image teacher, pooled |
| ``img_grid`` | ``[T, D_img]`` | image teacher, grid (``--no-image-tokens`` drops it) |
| ``txt_emb`` | ``[C, D_txt]`` | text teacher, pooled, each candidate |
| ``txt_tok`` | ``[C, L, D_txt]`` | text teacher, per token (``--no-text-tokens`` drops it) |
| ``token_ids``, ``token_len`` | ``[C, L]``, ``[C]`` | text teacher's tokenizer (= own student's) |
| ``token_spans`` | ``[C, L, 2]`` | each token's characters in its text; ``(0, 0)``: special token |
| ``zeroshot`` | ``[C]`` | ``logit_scale * cos(img_emb, txt_emb)``, teachers sharing a space |
| ``pixels`` | ``[T_s, P*P*3]`` uint8 | ``pixels:P`` student input |
| ``student_grid`` | ``[T_s, D_s]`` | a frozen image encoder as student input |
| ``regions`` | ``[R, D_img]`` | the teacher grid RoI-aligned over the dataset's boxes |
| ``student_regions`` | ``[R, D_s]`` | ``student_grid`` RoI-aligned over the same boxes |
| ``region_boxes``, ``region_count`` | ``[R, 4]``, ``[1]`` | those boxes (0..1) and how many |
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from extract.store import FieldSpec

if TYPE_CHECKING:
    from extract.encoders import Encoder, ImageEncoder, TextEncoder

log = logging.getLogger(__name__)
DEFAULT_TEACHERS = "effnet-lite0,minilm"
DEFAULT_STUDENT_INPUT = "pixels:16"


@dataclass
class PlanOptions:
    """The settings that decide which fields are stored and how (all part of the cache key)."""

    teachers: str = DEFAULT_TEACHERS
    student_input: str = DEFAULT_STUDENT_INPUT
    storage: str = "fp16"
    image_tokens: bool = True
    text_tokens: bool = True
    max_text_length: int = 64
    max_regions: int = 16
    resize: str = "squash"  # or "crop": see extract/resize.py (teacher and student alike)


@dataclass
class Plan:
    image: ImageEncoder
    text: TextEncoder
    student: ImageEncoder
    fields: dict[str, FieldSpec]
    options: PlanOptions

    @property
    def shared_space(self) -> bool:
        return bool(self.image.space) and self.image.space == self.text.space

    @property
    def encoders(self) -> list[Encoder]:
        return [self.image, self.text] + ([] if self.student is self.image else [self.student])


def pick_teachers(ids: str, max_length: int) -> tuple[ImageEncoder, TextEncoder]:
    """Exactly one image and one text teacher, from one or two ids."""
    from extract.encoders import ImageEncoder, TextEncoder, create_encoders

    encoders = [
        e
        for encoder_id in ids.split(",")
        if encoder_id.strip()
        for e in create_encoders(encoder_id.strip(), max_length)
    ]
    images = [e for e in encoders if isinstance(e, ImageEncoder)]
    texts = [e for e in encoders if isinstance(e, TextEncoder)]
    if len(images) != 1 or len(texts) != 1:
        raise ValueError(
            f"--teachers {ids!r} gives {len(images)} image and {len(texts)} text encoder(s); "
            "give exactly one of each, e.g. 'effnet-lite0,minilm' or 'openclip:ViT-B-16/openai'"
        )
    return images[0], texts[0]


def pick_student(student_input: str, image: ImageEncoder, max_length: int) -> ImageEncoder:
    """The student's visual input: pixel patches, or a frozen image encoder's grid."""
    from extract.encoders import ImageEncoder, create_encoders

    if student_input == image.id:
        return image
    encoders = [
        e for e in create_encoders(student_input, max_length) if isinstance(e, ImageEncoder)
    ]
    if not encoders:
        raise ValueError(
            f"--student-input {student_input!r} is not an image encoder; use e.g. pixels:16"
        )
    return encoders[0]


def make_plan(options: PlanOptions, num_texts: int, has_boxes: bool) -> Plan:
    image, text = pick_teachers(options.teachers, options.max_text_length)
    student = pick_student(options.student_input, image, options.max_text_length)
    fields = plan_fields(image, text, student, options, num_texts, has_boxes)
    return Plan(image, text, student, fields, options)


def plan_fields(
    image: ImageEncoder,
    text: TextEncoder,
    student: ImageEncoder,
    options: PlanOptions,
    num_texts: int,
    has_boxes: bool,
) -> dict[str, FieldSpec]:
    store = options.storage
    length = text.max_length
    d_img, d_txt = image.fields["global"][0], text.fields["global"][0]
    fields = [
        FieldSpec("img_emb", (d_img,), store, image.fingerprint),
        FieldSpec("txt_emb", (num_texts, d_txt), store, text.fingerprint),
        FieldSpec("token_ids", (num_texts, length), "int32", text.fingerprint),
        FieldSpec("token_len", (num_texts,), "int32", text.fingerprint),
    ]
    if text.gives_spans:
        fields.append(FieldSpec("token_spans", (num_texts, length, 2), "int32", text.fingerprint))
    else:
        log.warning(
            "%s gives no character spans for its tokens: students with another tokenizer will "
            "get no per-token text targets from this cache",
            text.id,
        )
    if options.image_tokens:
        fields.append(FieldSpec("img_grid", image.fields["grid"], store, image.fingerprint))
    if options.text_tokens:
        fields.append(
            FieldSpec(
                "txt_tok", (num_texts, length, text.fields["tokens"][-1]), store, text.fingerprint
            )
        )
    if bool(image.space) and image.space == text.space:
        fields.append(
            FieldSpec("zeroshot", (num_texts,), "fp32", f"{image.fingerprint} + {text.fingerprint}")
        )
    if "patches" in student.fields:
        fields.append(FieldSpec("pixels", student.fields["patches"], "uint8", student.fingerprint))
    elif student is not image or not options.image_tokens:
        fields.append(FieldSpec("student_grid", student.fields["grid"], store, student.fingerprint))
    if has_boxes:
        regions = options.max_regions
        fields += [
            FieldSpec("regions", (regions, d_img_grid(image)), store, image.fingerprint),
            FieldSpec("region_boxes", (regions, 4), "fp32", "dataset boxes / image size"),
            FieldSpec("region_count", (1,), "int32", "dataset boxes"),
        ]
        if student is not image and "student_grid" in {spec.name for spec in fields}:
            width = student.fields["grid"][-1]
            fields.append(
                FieldSpec("student_regions", (regions, width), store, student.fingerprint)
            )
    return {spec.name: stored_alike(spec) for spec in fields}


# Fields that depend only on the image (and its boxes): stored once per run of samples of one
# image. Fields of the texts' tokens: stored without padding, measured by token_len.
PER_IMAGE = (
    "img_emb", "img_grid", "pixels", "student_grid",
    "regions", "region_boxes", "region_count", "student_regions",
)  # fmt: skip
RAGGED = ("txt_tok", "token_ids", "token_spans")
# The base's fields (the student's inputs); every other field is a teachers' column group's.
BASE_FIELDS = ("pixels", "student_grid", "student_regions", "region_boxes", "region_count")


def stored_alike(spec: FieldSpec) -> FieldSpec:
    return FieldSpec(
        spec.name,
        spec.shape,
        spec.storage,
        spec.producer,
        per_image=spec.name in PER_IMAGE,
        lengths="token_len" if spec.name in RAGGED else "",
    )


def d_img_grid(image: ImageEncoder) -> int:
    return image.fields["grid"][-1]


def student_input_field(plan: Plan) -> str:
    """Which field the student reads its visual tokens from."""
    if "pixels" in plan.fields:
        return "pixels"
    return "student_grid" if "student_grid" in plan.fields else "img_grid"
