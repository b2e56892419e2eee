"""transformers VL students (ViLT, VisualBERT) from folders written by save_pretrained."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from extract.encoders.pixels import PixelPatches
from extract.store import CacheReader
from tests.train.tiny_cache import build
from train.mad import DistillConfig
from train.run import main as train_cli
from train.students import StudentContext, create_student
from train.students.hf import patches_to_images, recut_size
from train.trainer import TrainConfig, Trainer


def context(kind="pixels", shape=(4, 48), tokenizer=None) -> StudentContext:
    field = {"pixels": "pixels", "grid": "student_grid", "regions": "student_regions"}[kind]
    return StudentContext(field, kind, shape, vocab_size=50, max_text_len=6, tokenizer=tokenizer)


def test_patches_are_put_back_into_the_image():
    images = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    patches = PixelPatches("16@64").encode(images)["patches"]
    assert torch.equal(patches_to_images(patches, 16), images)
    assert recut_size(64, 32) == 64 and recut_size(224, 32) == 224 and recut_size(64, 24) == 72


def test_vilt_visual_tokens_equal_the_librarys_own_embedding(vilt_dir, wordpiece):
    student = create_student(f"hf:{vilt_dir}", context()).eval()
    assert student.num_visual_tokens == 16 and "re-cut at ViLT's 2 px" in student.info.notes[0]
    patches = torch.randint(0, 256, (3, 4, 48), dtype=torch.uint8)
    pixels = student.pixel_values(patches)
    with torch.no_grad():  # visual token j is patch j (row-major); the library shuffles them
        ours = student.image_embeds(pixels)  # [N, 1 + 16, W]
        mask = torch.ones(3, 8, 8, dtype=torch.long)
        library, _, (where, _) = student.model.embeddings.visual_embed(pixels, mask, -1)
    order = where[..., 0] * 4 + where[..., 1]  # the library's patch index, row-major
    assert torch.equal(ours[:, 0], library[:, 0])  # the image [CLS]
    for row in range(3):
        assert torch.allclose(ours[row, 1:][order[row]], library[row, 1:], atol=1e-6)
    ids = torch.tensor(wordpiece(["a red cube", "blue", "what is it"], padding=True)["input_ids"])
    lengths = (ids != 0).sum(1)
    mask = (ids != 0).long()
    with torch.no_grad():
        ours = student(patches, ids, lengths)
        # the library samples patches in a random order: [CLS] and attention to text agree
        library = student.model(
            input_ids=ids,
            attention_mask=mask,
            pixel_values=student.pixel_values(patches),
            output_attentions=True,
        )
    assert torch.allclose(ours.cls, library.pooler_output, atol=1e-5)
    reference = library.attentions[-1][:, :, 0].mean(1)  # [N, L + 1 + T], no dropout in eval
    length = ids.shape[1]
    assert torch.allclose(ours.cls_attention[:, -length:], reference[:, :length], atol=1e-5)
    assert ours.visual.shape == (3, 16, 32) and ours.text.shape == (3, length, 32)
    assert ours.text_mask.tolist() == mask.bool().tolist()


def test_cls_attention_is_the_librarys_without_dropout(visualbert_dir, wordpiece):
    student = create_student(f"hf:{visualbert_dir}", context("grid", (5, 24)))
    last = "encoder.layer.1.attention.self.dropout"  # earlier dropout changes the layer's input
    for name, module in student.named_modules():  # heavy attention dropout, no other dropout
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.9 if name.endswith(last) else 0.0
    student.train()  # attention dropout on: our attention must still be the eval-mode one
    visual = torch.randn(2, 5, 24)
    ids = torch.tensor(wordpiece(["a red cube", "blue"], padding=True)["input_ids"])
    regions = torch.tensor([[True] * 5, [True, True, False, False, False]])
    with torch.no_grad():
        ours = student(visual, ids, (ids != 0).sum(1), regions)
        student.eval()
        library = student.model(
            input_ids=ids,
            attention_mask=(ids != 0).long(),
            visual_embeds=student.adapter(visual),
            visual_attention_mask=regions.long(),
            output_attentions=True,
        )
    reference = library.attentions[-1][:, :, 0].mean(1)  # [N, L + T]
    length = ids.shape[1]
    expected = torch.cat([reference[:, length:], reference[:, :length]], 1)
    assert torch.allclose(ours.cls_attention, expected, atol=1e-6)
    assert ours.cls_attention[1, 2:5].abs().max() == 0  # missing regions get no attention


def run_cli(cache, out, *extra: str):
    args = ["--cache", str(cache), "--out", str(out), "--epochs", "1", "--batch-size", "16"]
    return CliRunner().invoke(train_cli, [*args, "--device", "cpu", *extra])


@pytest.mark.slow
@pytest.mark.parametrize("distill", ["none", "naive", "mad"])
@pytest.mark.parametrize("kind", ["vilt", "visualbert"])
def test_each_student_trains_with_each_mode(tmp_path, kind, distill, request):
    folder = request.getfixturevalue(f"{kind}_dir")
    cache = build(tmp_path / "cache", "vcr")
    result = run_cli(cache, tmp_path / "run", "--student", f"hf:{folder}", "--distill", distill)
    assert result.exit_code == 0, result.output
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    student = results["student"]
    assert student["source"] == f"hf:{folder}" and student["loaded"] > 20
    assert student["missing"] == [] and student["unexpected"] == []
    assert "overlap" in student["text_input"]  # BERT tokens aligned to the fake teacher ids
    if kind == "visualbert":  # 48 pixel values per cached patch -> 24
        assert student["adapters"][0] == "pixels: linear 48 -> 24 (visual_embedding_dim)"
    share = results["distill_share"]
    assert (share == {}) if distill == "none" else (share["vis"] > 0 and share["txt"] > 0)
    report = (tmp_path / "run" / "report.md").read_text()
    assert "## Student" in report and f"hf:{folder}" in report
    assert_best_is_the_plain_model(tmp_path / "run", kind)


def assert_best_is_the_plain_model(run, kind: str) -> None:
    """best_hf/ loads with the library alone and holds exactly best.pt's weights (and, for
    VisualBERT, the visual adapter that feeds it the cached features)."""
    from transformers import AutoTokenizer, ViltModel, VisualBertModel

    from train.students.hf import VisualAdapter

    model_class = ViltModel if kind == "vilt" else VisualBertModel
    plain = model_class.from_pretrained(run / "best_hf")
    best = torch.load(run / "best.pt", weights_only=True)["model"]
    exported = {k.removeprefix("student.model."): v for k, v in best.items()}
    state = plain.state_dict()
    assert all(torch.equal(exported[k], state[k]) for k in state)
    assert not any(k.startswith("distill_heads") for k in best)
    assert AutoTokenizer.from_pretrained(run / "best_hf").is_fast
    students = {k for k in best if k.startswith("student.")}
    if kind == "visualbert":
        adapter = VisualAdapter.from_folder(run / "best_hf")
        for name, value in adapter.state_dict().items():
            assert torch.equal(value, best[f"student.adapter.{name}"])
        students -= {f"student.adapter.{name}" for name in adapter.state_dict()}
    assert students == {f"student.model.{k}" for k in state}  # nothing of the student left out


@pytest.mark.parametrize("kind", ["vilt", "visualbert"])
def test_resume_is_bit_identical(tmp_path, kind, request):
    folder = request.getfixturevalue(f"{kind}_dir")
    cache = build(tmp_path / "cache", "vqa")
    values = dict(cache=cache, epochs=3, batch_size=16, device="cpu", student=f"hf:{folder}")
    Trainer(TrainConfig(out=tmp_path / "whole", **values)).fit()

    def interrupt(epoch):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Trainer(TrainConfig(out=tmp_path / "cut", **values), on_epoch_end=interrupt).fit()
    Trainer(TrainConfig(out=tmp_path / "cut", resume=True, **values)).fit()
    whole = torch.load(tmp_path / "whole" / "last.pt", weights_only=False)
    cut = torch.load(tmp_path / "cut" / "last.pt", weights_only=False)
    assert all(torch.equal(whole["model"][k], cut["model"][k]) for k in whole["model"])
    assert whole["state"]["history"] == cut["state"]["history"]


def test_half_precision_checkpoints_train_in_float32(tmp_path, visualbert_dir):
    from transformers import VisualBertModel

    VisualBertModel.from_pretrained(visualbert_dir, dtype=torch.bfloat16).save_pretrained(
        tmp_path / "bf16"
    )
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (tmp_path / "bf16" / name).write_bytes((visualbert_dir / name).read_bytes())
    student = create_student(f"hf:{tmp_path / 'bf16'}", context("grid", (4, 24)))
    assert {p.dtype for p in student.parameters()} == {torch.float32}
    ids = torch.tensor([[101, 2417, 102]])
    assert student(torch.randn(1, 4, 24), ids, torch.tensor([3])).cls.dtype == torch.float32


def test_an_older_transformers_export_does_not_outlive_its_run(tmp_path, vilt_dir):
    cache = build(tmp_path / "cache")
    assert run_cli(cache, tmp_path / "run", "--student", f"hf:{vilt_dir}").exit_code == 0
    assert (tmp_path / "run" / "best_hf").is_dir()
    assert run_cli(cache, tmp_path / "run").exit_code == 0  # the own student, same --out
    assert not (tmp_path / "run" / "best_hf").exists()


def test_visualbert_reads_region_features(tmp_path, visualbert_dir):
    cache = build(tmp_path / "cache", "vcr", regions=True)
    config = TrainConfig(
        cache=cache,
        out=tmp_path / "run",
        epochs=1,
        batch_size=16,
        student=f"hf:{visualbert_dir}",
        student_visual="student_regions",
        distill=DistillConfig(mode="naive"),
    )
    trainer = Trainer(config)
    assert trainer.fields.inputs == ["student_regions", "region_count"]
    assert "regions" in trainer.fields.targets  # the teacher's RoI features of the same boxes
    results = trainer.fit()
    assert results["distill_share"]["vis"] > 0
    assert results["student"]["adapters"] == [
        "student_regions: linear 6 -> 24 (visual_embedding_dim)"
    ]


def test_region_mask_follows_region_count(tmp_path, visualbert_dir):
    cache = build(tmp_path / "cache", "vcr", regions=True)
    student = f"hf:{visualbert_dir}"
    config = TrainConfig(cache=cache, out=tmp_path / "run", student=student, batch_size=64)
    config.student_visual = "student_regions"
    trainer = Trainer(config)
    samples = list(CacheReader(cache).split("val", ["region_count"]))
    batch = next(iter(trainer.loader("val", trainer.eval_keys("val", []), trainer.collate())))
    assert batch["visual_mask"].sum(1).tolist() == [int(s["region_count"][0]) for s in samples]


def test_a_checkpoint_without_tokenizer_names_the_fix(untokenized_dir):
    with pytest.raises(ValueError, match="--student-tokenizer"):
        create_student(f"hf:{untokenized_dir}", context("grid", (4, 8)))
    student = create_student(f"hf:{untokenized_dir}", context("grid", (4, 8), tokenizer="minilm"))
    assert student.tokenizer.is_fast and student.info.adapters == [
        "student_grid: learned position per grid cell (4 cells)"
    ]


def test_unsupported_students_are_refused(tmp_path, wordpiece):
    from transformers import BertConfig, BertModel

    BertModel(
        BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2)
    ).save_pretrained(tmp_path / "bert")
    with pytest.raises(ValueError, match="'bert' model; supported VL encoders: vilt"):
        create_student(f"hf:{tmp_path / 'bert'}", context())
    with pytest.raises(FileNotFoundError, match="no model config"):
        create_student(f"hf:{tmp_path / 'nothing'}", context())
    with pytest.raises(ValueError, match="unknown --student 'huge'"):
        create_student("huge", context())


def test_vilt_needs_pixels(vilt_dir):
    with pytest.raises(ValueError, match="a ViLT student reads pixels"):
        create_student(f"hf:{vilt_dir}", context("grid", (4, 24)))


@pytest.mark.slow
def test_real_extraction_then_pretrained_students(tmp_path, visualbert_dir):
    """extract.run on a tiny VCR set (MiniLM + EfficientNet teachers, a frozen student encoder
    for region features), then train.run with VisualBERT on the regions and with the MiniLM-
    initialised student, as a user runs them."""
    from extract.run import main as extract_cli
    from tests.extract.fixtures import write_vcr

    root = write_vcr(tmp_path / "data", {"train": 6, "val": 3})
    cache = tmp_path / "cache"
    extracted = CliRunner().invoke(
        extract_cli,
        ["--dataset", "vcr", "--root", str(root), "--out", str(cache), "--no-index",
         "--student-input", "effnet-lite0:random", "--max-text-length", "24",
         "--batch-size", "4", "--workers", "0"],
    )  # fmt: skip
    assert extracted.exit_code == 0, extracted.output
    reader = CacheReader(cache)
    assert reader.fields["student_regions"].shape == (16, 1280)
    assert reader.fields["token_spans"].shape == (8, 24, 2)
    regions = run_cli(
        cache, tmp_path / "visualbert", "--student", f"hf:{visualbert_dir}",
        "--student-visual", "student_regions", "--distill", "mad", "--task", "vcr-qar",
    )  # fmt: skip
    assert regions.exit_code == 0, regions.output
    results = json.loads((tmp_path / "visualbert" / "results.json").read_text())
    assert results["student"]["adapters"] == [
        "student_regions: linear 1280 -> 24 (visual_embedding_dim)"
    ]
    assert "gives exactly the cached ids" in results["student"]["text_input"]  # BERT-uncased
    assert results["distill_share"]["vis"] > 0 and results["distill_share"]["txt"] > 0
    init = run_cli(cache, tmp_path / "init", "--student", "visualbert-init:minilm")
    assert init.exit_code == 0, init.output
    assert "q2ar" in json.loads((tmp_path / "init" / "results.json").read_text())["splits"]["val"]
