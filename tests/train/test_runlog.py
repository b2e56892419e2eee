"""TensorBoard event files beside metrics.jsonl, with the same numbers."""

import json

import pytest

from tests.train.tiny_cache import build
from train.trainer import TrainConfig, Trainer


def scalars(run) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run), size_guidance={"scalars": 0, "histograms": 0}).Reload()
    found = {
        tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]
    }
    found["histograms"] = events.Tags()["histograms"]
    return found


def test_events_hold_the_logged_numbers_and_survive_a_resume(tmp_path):
    cache = build(tmp_path / "cache")
    values = dict(cache=cache, out=tmp_path / "run", epochs=3, batch_size=16, device="cpu")

    def interrupt(epoch):
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Trainer(TrainConfig(**values), on_epoch_end=interrupt).fit()
    Trainer(TrainConfig(**values, resume=True)).fit()
    lines = [
        json.loads(line)
        for line in (tmp_path / "run" / "metrics.jsonl").read_text().split("\n")
        if line
    ]
    steps = [line for line in lines if line["kind"] == "step"]
    epochs = [line for line in lines if line["kind"] == "epoch"]
    found = scalars(tmp_path / "run")
    assert (
        [s for s, _ in found["step/loss"]] == [line["step"] for line in steps] == list(range(1, 13))
    )
    assert [v for _, v in found["step/loss"]] == pytest.approx([line["loss"] for line in steps])
    assert [v for _, v in found["val/score"]] == pytest.approx([e["val"]["score"] for e in epochs])
    assert len(found["epoch/distill_vis"]) == 3 and "confidence_weights" in found["histograms"]
