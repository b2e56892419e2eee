"""Image-caption pairs: caption tables beside images, and WebDataset tar shards."""

import io
import json
import tarfile

import pytest
from PIL import Image

from extract.datasets import PairsAdapter, open_dataset


def image_bytes(color, fmt="JPEG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), color).save(buffer, format=fmt)
    return buffer.getvalue()


def write_tar(path, members: list[tuple[str, bytes]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "img").mkdir()
    for name, color in (("a.jpg", (255, 0, 0)), ("b.png", (0, 255, 0))):
        fmt = "PNG" if name.endswith("png") else "JPEG"
        (tmp_path / "img" / name).write_bytes(image_bytes(color, fmt))
    (tmp_path / "captions.csv").write_text(
        "path,caption\n"
        "img/a.jpg,A red square.\n"
        'img/b.png,"Green, bright"\n'
        "./img/a.jpg, Red again \n"
    )
    rows = [{"path": "img/b.png", "caption": "val caption"}]
    (tmp_path / "val.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tmp_path


@pytest.fixture
def shards(tmp_path):
    red, green = image_bytes((255, 0, 0)), image_bytes((0, 255, 0), "PNG")
    write_tar(
        tmp_path / "shard-000.tar",
        [
            ("000000.jpg", red),
            ("000000.txt", b"a red square\n"),
            ("000000.json", b"{}"),
            ("sub/000001.png", green),
            ("sub/000001.txt", "gr\u00fcn".encode()),
        ],
    )
    write_tar(tmp_path / "shard-001.tar", [("000002.txt", b"third"), ("000002.jpeg", red)])
    write_tar(tmp_path / "val" / "val-000.tar", [("v0.jpg", green), ("v0.txt", b"val")])
    return tmp_path, red, green


def test_caption_tables(folder):
    adapter = open_dataset("pairs", folder)
    assert isinstance(adapter, PairsAdapter) and adapter.num_texts == 1
    assert adapter.splits() == ["train", "val"]
    records = list(adapter.records("train"))
    assert [(r.key, r.image, r.texts) for r in records] == [
        ("img/a.jpg#0", "img/a.jpg", ["A red square."]),
        ("img/b.png#0", "img/b.png", ["Green, bright"]),
        ("img/a.jpg#1", "img/a.jpg", ["Red again"]),
    ]
    assert records[2].meta == {"path": "img/a.jpg", "caption_index": 1}
    assert [r.key for r in adapter.records("val")] == ["img/b.png#0"]
    assert adapter.read_image_bytes(records[1]) == (folder / "img" / "b.png").read_bytes()
    assert adapter.input_files("train") == [folder / "captions.csv"]
    assert adapter.task() == {"name": "pairs", "kind": "retrieval"}


def test_tar_shards(shards):
    root, red, green = shards
    adapter = PairsAdapter(root)
    assert adapter.splits() == ["train", "val"]
    assert adapter.input_files("train") == [root / "shard-000.tar", root / "shard-001.tar"]
    records = list(adapter.records("train"))
    assert [(r.key, r.image, r.texts) for r in records] == [
        ("000000", "shard-000.tar#000000.jpg", ["a red square"]),
        ("sub/000001", "shard-000.tar#sub/000001.png", ["gr\u00fcn"]),
        ("000002", "shard-001.tar#000002.jpeg", ["third"]),
    ]
    assert records[1].meta == {"shard": "shard-000.tar", "member": "sub/000001.png"}
    assert [adapter.read_image_bytes(r) for r in records] == [red, green, red]
    (val,) = adapter.records("val")
    assert val.image == "val/val-000.tar#v0.jpg" and adapter.read_image_bytes(val) == green


@pytest.mark.parametrize(
    "members, message",
    [
        ([("k.jpg", b"x")], r"shard-000\.tar#k: sample 'k' lacks a \.txt caption"),
        ([("k.txt", b"x")], r"shard-000\.tar#k: sample 'k' lacks an image"),
        ([("k.jpg", b"x"), ("k.png", b"x"), ("k.txt", b"x")], r"sample 'k' has two images"),
        ([("k.jpg", b"x"), ("k.txt", b"\xff")], r"shard-000\.tar#k\.txt: caption is not UTF-8"),
        ([("k.jpg", b"x"), ("k.txt", b"  ")], r"shard-000\.tar#k\.jpg: empty caption"),
        (
            [("k.jpg", b"x"), ("k.txt", b"a"), ("j.jpg", b"x"), ("j.txt", b"b"), ("k.cls", b"1")],
            r"shard-000\.tar#k: sample 'k' lacks an image",
        ),
        (
            [
                ("k.jpg", b"x"),
                ("k.txt", b"a"),
                ("j.jpg", b"x"),
                ("j.txt", b"b"),
                ("k.png", b"1"),
                ("k.txt", b"c"),
            ],
            r"shard-000\.tar#k\.png: sample key 'k' repeats the one at .*shard-000\.tar#k\.jpg",
        ),
    ],
)
def test_bad_shards(tmp_path, members, message):
    write_tar(tmp_path / "shard-000.tar", members)
    with pytest.raises(ValueError, match=message):
        list(PairsAdapter(tmp_path).records("train"))


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("captions.csv", "file,text\na.jpg,x\n", r"captions\.csv:1: the header must name"),
        ("captions.csv", "path,caption\na.jpg,x\nb.jpg\n", r"captions\.csv:3: the row has no"),
        ("captions.csv", "path,caption\n/etc/a.jpg,x\n", r"captions\.csv:2: image path '/etc/a"),
        ("captions.csv", "path,caption\n../a.jpg,x\n", r"captions\.csv:2: image path '\.\./a"),
        (
            "captions.jsonl",
            '{"path": "a.jpg"}\n',
            r"captions\.jsonl:1: missing required field 'caption'",
        ),
        (
            "captions.jsonl",
            '{"path": "a.jpg", "caption": ""}\n',
            r"captions\.jsonl:1: empty caption",
        ),
    ],
)
def test_bad_tables(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(ValueError, match=message):
        list(PairsAdapter(tmp_path).records("train"))


def test_layout_errors(tmp_path, folder):
    (folder / "captions.jsonl").write_text("")
    with pytest.raises(ValueError, match=r"split 'train' is given twice"):
        PairsAdapter(folder)
    with pytest.raises(FileNotFoundError, match=r"no caption table or tar shard"):
        PairsAdapter(folder / "img")
    with pytest.raises(FileNotFoundError, match=r"image-caption root .*missing is not a directory"):
        PairsAdapter(tmp_path / "missing")
