"""One training run: subset -> confidence weights -> epochs (AdamW, warmup + cosine,
clipping, accumulation, AMP on CUDA) -> per-epoch validation, best and last checkpoints ->
final evaluation."""

from __future__ import annotations

import logging
import math
import random
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from extract.store import CacheReader
from train import confidence as conf
from train import distributed, guard
from train.centring import domain_means, stored_means
from train.data import (
    Collate,
    batches_per_epoch,
    eval_loader,
    low_shot_keys,
    matches,
    read_metas,
    train_loader,
)
from train.evaluation import predict, score, to_device
from train.mad import DistillConfig
from train.model import VISUAL_TARGETS, DistilledStudent
from train.runlog import NoLog, RunLog
from train.setup import (
    REGION_FIELDS,
    check_means_split,
    choose_visual_field,
    default_splits,
    make_optimizer,
    required_fields,
    schedule,
    seed_everything,
    visual_kind,
)
from train.students import StudentContext, create_student
from train.summary import (
    autocast,
    config_json,
    distill_share,
    save_atomic,
    weight_summary,
    write_predictions,
)
from train.tasks import resolve_task
from train.text_inputs import text_reader

log = logging.getLogger(__name__)
LOSS_TERMS = ("loss", "task", "distill_vis", "distill_txt")
BEST_PRETRAINED = "best_hf"  # the best student in its library's own format (transformers)
SUCCESS_FILES = ("results.json", "report.md", "curves.png")  # written once a run has finished


@dataclass
class TrainConfig:
    cache: Path
    out: Path
    task: str | None = None
    teachers: str | None = None  # the cache's column group distilled (default: its first)
    distill: DistillConfig = field(default_factory=DistillConfig)
    confidence: str = "auto"
    train_split: str = "train"
    val_split: str | None = None  # model selection; default: val or dev when present
    eval_splits: list[str] | None = None  # default: every split but the training one
    train_fraction: float | None = None
    train_count: int | None = None
    distill_pool: str = "labelled"  # all: distil also the training samples outside the subset
    train_where: list[tuple[str, str]] = field(default_factory=list)
    eval_where: list[tuple[str, str]] = field(default_factory=list)
    seed: int = 0
    epochs: int = 10
    keep: str = "best"  # the model kept: best on validation (validated every epoch) or last
    checkpoint_every: int = 1  # epochs between last.pt saves (a resume redoes the ones after)
    batch_size: int = 32
    lr: float = 3e-4
    lr_new: float | None = None  # peak lr of the parameters no checkpoint held (None: lr)
    weight_decay: float = 0.01
    warmup: float = 0.1
    accumulate: int = 1
    clip: float = 1.0
    student: str = "tiny"  # a student id: tiny | small | base | hf:<path> | visualbert-init:...
    student_tokenizer: str | None = None  # overrides the student's own tokenizer
    student_visual: str = "auto"  # the cached field the student sees (auto: the student input)
    dropout: float = 0.1  # own students; pretrained ones keep their configured dropout
    workers: int = 0
    device: str = "cpu"
    resume: bool = False
    check_cache: str = "read"  # what is checked before training: see train/guard.py


class Trainer:
    def __init__(self, config: TrainConfig, on_epoch_end: Callable[[int], None] | None = None):
        self.config = config
        self.on_epoch_end = on_epoch_end
        self.world = distributed.current()
        self.device = distributed.device_of(self.world, str(config.device))
        self.cache = CacheReader(config.cache, group=config.teachers)
        self.task = resolve_task(config.task, self.cache.manifest.task, config.cache)
        self.visual = choose_visual_field(self.cache, config.student_visual)
        probe = self.probe_student()
        self.student_info = probe.info
        self.text = text_reader(probe.tokenizer, probe.max_text_len, self.cache, config.train_split)
        self.fields = required_fields(
            self.cache, config, self.visual, self.text.input_fields, self.text.target_fields
        )
        self.visual_count = "region_count" if self.visual in REGION_FIELDS else None
        if config.keep not in ("best", "last"):
            raise ValueError(f"--keep {config.keep!r}: use best or last")
        if config.distill_pool not in ("labelled", "all"):
            raise ValueError(f"--distill-pool {config.distill_pool!r}: use labelled or all")
        if config.distill_pool == "all" and config.distill.mode == "none":
            raise ValueError("--distill-pool all needs distillation (--distill naive or mad)")
        self.val_split, self.eval_splits = default_splits(self.cache, config)
        self.check_filtered_splits()
        if config.distill.mode != "none":
            check_means_split(self.cache, config.train_split)
        self._means: dict[str, np.ndarray] = {}
        self.confidence = conf.resolve_confidence(config.confidence, self.cache, self.task)
        self.out = Path(config.out)
        self.out.mkdir(parents=True, exist_ok=True)

    # ---- data -------------------------------------------------------------------------------
    def select_train_keys(self) -> tuple[list[str], dict[str, dict], bool]:
        metas = [
            (k, m)
            for k, m in read_metas(self.cache, self.config.train_split)
            if matches(m, self.config.train_where)
        ]
        metas = [(k, m) for k, m in metas if self.is_labelled(m)]
        if not metas:
            raise ValueError(
                f"no labelled training samples in {self.config.train_split} match the filters"
            )
        full = self.config.train_fraction in (None, 1.0) and self.config.train_count is None
        keys = (
            [k for k, _ in metas]
            if full
            else low_shot_keys(
                metas,
                self.task,
                self.config.train_fraction,
                self.config.train_count,
                self.config.seed,
            )
        )
        everything = len(metas) == len(self.cache.split(self.config.train_split, fields=[]))
        return keys, dict(metas), full and everything

    def pool_keys(self, keys: list[str]) -> list[str]:
        """``--distill-pool all``: the training samples (matching ``--train-where``) outside the
        low-shot subset, whose cached targets need no label."""
        if self.config.distill_pool == "labelled":
            return []
        chosen = set(keys)
        pool = [
            k
            for k, m in read_metas(self.cache, self.config.train_split)
            if matches(m, self.config.train_where) and k not in chosen
        ]
        if not pool:
            raise ValueError(
                "--distill-pool all distils the training samples outside the low-shot subset, "
                "and there are none; give --train-fraction or --train-count"
            )
        return pool

    def is_labelled(self, meta: dict) -> bool:
        if self.task.kind == "soft_score":
            return "targets" in meta
        return meta.get(self.task.groups[0].label_key) is not None

    def eval_keys(self, split: str, where: list[tuple[str, str]]) -> list[str]:
        return [k for k, m in read_metas(self.cache, split) if matches(m, where)]

    def check_filtered_splits(self) -> None:
        """A validation or evaluation split that ``--train-where`` / ``--eval-where`` leaves
        empty would score nothing, and the run would end without a model selection or a score:
        refuse it before anything is trained."""
        wanted = [(self.val_split, self.config.train_where, "--train-where")]
        wanted += [(split, self.config.eval_where, "--eval-where") for split in self.eval_splits]
        for split, where, option in wanted:
            if split is None or not where or self.eval_keys(split, where):
                continue
            text = " ".join(f"{name}={value}" for name, value in where)
            role = "validation" if split == self.val_split and option == "--train-where" else "eval"
            raise ValueError(
                f"no sample of the {role} split {split!r} matches {option} {text}; give a value "
                f"its samples' json holds, or another split (--val-split, --eval-split)"
            )

    def instance_weights(self, keys: list[str], metas: dict[str, dict]) -> dict[str, float]:
        if self.config.distill.mode != "mad" or self.confidence == "none":
            return {}
        fields = ["zeroshot"] if self.confidence == "zeroshot" else ["img_emb", "txt_emb"]
        reader = CacheReader(self.config.cache, as_float32=True, group=self.cache.group)
        reader = reader.split(self.config.train_split, fields)
        samples = [reader[key] for key in keys]
        collate = Collate(self.task, self.visual)
        gold = [collate.gold(s["meta"]) for s in samples]
        if self.confidence == "zeroshot":
            weights = conf.zero_shot_weights(samples, self.task, gold)
        else:
            means = self.target_means(["img_emb", "txt_emb"])
            weights = conf.knn_confidence(samples, self.task, gold, means, [metas[k] for k in keys])
        return dict(zip(keys, weights.tolist(), strict=True))

    def collate(self, unlabelled: frozenset[str] = frozenset()) -> Collate:
        """Training batches: the student's inputs and the distillation targets."""
        return Collate(
            self.task,
            self.visual,
            tuple(self.fields.targets),
            self.text,
            self.visual_count,
            unlabelled,
        )

    def means(self) -> dict[str, torch.Tensor]:
        means = self.target_means(list(self.fields.targets))
        return {name: torch.from_numpy(value).to(self.device) for name, value in means.items()}

    def target_means(self, names: list[str]) -> dict[str, np.ndarray]:
        """The targets' centres: the cache's training-split means, or with ``--train-where``
        the means over the training split's samples of that domain (computed once per field)."""
        missing = [name for name in names if name not in self._means]
        if missing and self.config.train_where:
            keys = self.eval_keys(self.config.train_split, self.config.train_where)
            self._means.update(domain_means(self.cache, self.config.train_split, keys, missing))
        elif missing:
            self._means.update(stored_means(self.cache, missing))
        return {name: self._means[name] for name in names}

    # ---- the student ------------------------------------------------------------------------
    def student_context(self) -> StudentContext:
        return StudentContext(
            visual_field=self.visual,
            visual_kind=visual_kind(self.cache, self.visual),
            visual_shape=self.cache.fields[self.visual].shape,
            vocab_size=int(self.cache.config["text_vocab_size"]),
            max_text_len=self.cache.fields["token_ids"].shape[-1],
            dropout=self.config.dropout,
            tokenizer=self.config.student_tokenizer,
        )

    def probe_student(self):
        """The student built once to learn its tokenizer and check that it fits the cache; the
        global random state is left as it was (``build`` makes the trained one, seeded)."""
        with torch.random.fork_rng(devices=[]):
            return create_student(self.config.student, self.student_context())

    def build(self) -> DistilledStudent:
        seed_everything(self.config.seed)
        student = create_student(self.config.student, self.student_context())
        image_dim, text_dim = (
            self.target_width(("img_grid", "regions", "img_emb")),
            self.target_width(("txt_tok", "txt_emb")),
        )
        distill = self.config.distill.mode != "none"
        return DistilledStudent(student, self.task, image_dim, text_dim, distill).to(self.device)

    def target_width(self, names: tuple[str, ...]) -> int:
        """Width of the distillation targets: a ViT's token grid is wider than its embedding."""
        name = next((n for n in names if n in self.fields.targets), names[-1])
        return self.cache.fields[name].shape[-1]

    def fit(self, progress: Callable[[int, str], object] | None = None) -> dict:
        """Train, select on validation, evaluate every eval split; returns the results."""
        config = self.config
        if self.world.main:  # a failed run must not leave an earlier run's results looking new
            self.remove_reports()
        splits = {config.train_split, *self.eval_splits} | ({self.val_split} - {None})
        guard.check_cache(self.cache, sorted(splits), config.check_cache, self.world, progress)
        keys, metas, full = self.select_train_keys()
        weights, means, model = self.instance_weights(keys, metas), self.means(), self.build()
        trained = self.wrap(model)  # before a resume restores each rank's random state
        pool = self.pool_keys(keys)
        step_weights = dict(weights)
        if weights and pool:  # no label, so no confidence: the labelled samples' mean weight
            step_weights.update(dict.fromkeys(pool, float(np.mean(list(weights.values())))))
        collate = self.collate(unlabelled=frozenset(pool))
        optimizer = make_optimizer(model, config.lr, config.weight_decay, config.lr_new)
        shard_counts = [s.count for s in self.cache.split(config.train_split, fields=[]).shards]
        batches = batches_per_epoch(
            len(keys), full, config.batch_size, config.workers, self.world, shard_counts
        )
        total = max(1, math.ceil(batches / config.accumulate) * config.epochs)
        warmup = int(config.warmup * total)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: schedule(s, total, warmup)
        )
        state = {"epoch": 0, "best": None, "best_epoch": None, "history": []}
        if config.resume and (self.out / "last.pt").is_file():
            state = self.load_last(model, optimizer, scheduler)
            log.info("resuming after epoch %d", state["epoch"])
        elif self.world.main:
            (self.out / "best.pt").unlink(missing_ok=True)  # never report an older run's model
            shutil.rmtree(self.out / BEST_PRETRAINED, ignore_errors=True)
        distributed.barrier(self.world)
        run_log = (
            RunLog(self.out, state["epoch"], scheduler.last_epoch) if self.world.main else NoLog()
        )
        run_log.weights(weights)
        try:
            for epoch in range(state["epoch"], config.epochs):
                loader = train_loader(
                    config.cache,
                    config.train_split,
                    keys,
                    full,
                    self.fields.training,
                    collate,
                    config.batch_size,
                    config.workers,
                    config.seed,
                    epoch,
                    pool,
                    self.world,
                    group=self.cache.group,
                )
                bar = None
                if progress is not None and self.world.main:
                    bar = progress(batches, f"epoch {epoch + 1}/{config.epochs}")
                losses = self.train_epoch(
                    trained, loader, optimizer, scheduler, means, step_weights, bar,
                    lambda entry, epoch=epoch: run_log.step(epoch + 1, entry), epoch + 1,
                )  # fmt: skip
                entry = {"kind": "epoch", "epoch": epoch + 1, **losses}
                entry["lr"] = scheduler.get_last_lr()[0]
                self.validate(model, collate, entry, state)
                run_log.epoch(entry, scheduler.last_epoch)
                state["history"].append(entry)
                state["epoch"] = epoch + 1
                if state["epoch"] % config.checkpoint_every == 0 or state["epoch"] == config.epochs:
                    self.save_last(model, optimizer, scheduler, state)
                    distributed.barrier(self.world)
                if self.on_epoch_end is not None:
                    self.on_epoch_end(epoch + 1)
        except ValueError:  # non-finite values, a damaged member of the cache
            self.remove_results()
            raise
        finally:
            run_log.close()
        try:
            results = self.final_results(model, collate, keys, metas, weights, state)
        except ValueError:  # a damaged member of an evaluation split
            self.remove_results()
            raise
        results["pool_samples"] = len(pool)
        return results

    def remove_results(self) -> None:
        """A failed run leaves no model, score or prediction that looks like its result."""
        if self.world.main:
            (self.out / "best.pt").unlink(missing_ok=True)
            shutil.rmtree(self.out / BEST_PRETRAINED, ignore_errors=True)
            self.remove_reports()

    def remove_reports(self) -> None:
        for name in SUCCESS_FILES:
            (self.out / name).unlink(missing_ok=True)
        shutil.rmtree(self.out / "predictions", ignore_errors=True)

    def wrap(self, model: DistilledStudent):
        """The model a training step calls: DDP's wrapper across ranks, else the model itself.
        Ranks other than 0 draw other dropout masks (DDP gives them rank 0's weights)."""
        if not self.world.distributed:
            return model
        from torch.nn.parallel import DistributedDataParallel

        torch.manual_seed(self.config.seed * 1000 + self.world.rank)
        ids = [self.device.index] if self.device.type == "cuda" else None
        # find_unused_parameters: a student may leave parts unused (a pooler, a dropped branch)
        return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)

    def validate(self, model, collate: Collate, entry: dict, state: dict) -> None:
        """Score the validation split; keep the best model (selection never sees a test split).
        With ``keep="last"`` only the last epoch is validated, and its model is kept."""
        if self.val_split is None:
            return
        last = entry["epoch"] == self.config.epochs
        if self.config.keep == "last" and not last:
            return
        # model selection sees the training domain only (--train-where), never the shifted one
        rows = self.predict(model, self.val_split, collate, self.config.train_where)
        entry["val"] = distributed.broadcast(
            self.world, score(self.task, rows) if self.world.main else None
        )
        value = entry["val"]["score"]
        better = state["best"] is None or (value is not None and value > state["best"])
        if value is not None and (better or self.config.keep == "last"):
            state.update(best=value, best_epoch=entry["epoch"])
            if self.world.main:
                save_atomic({"model": model.export_state()}, self.out / "best.pt")
        distributed.barrier(self.world)

    def predict(self, model, split: str, collate: Collate, where) -> list[dict]:
        """Predictions over every sample of a split exactly once, in stored order: under DDP
        each rank predicts its share and rank 0 gets all the rows (the others get none)."""
        keys = self.eval_keys(split, where)
        mine = distributed.split_evenly(keys, self.world)
        rows = predict(model, self.loader(split, mine, collate), self.device)
        if not self.world.distributed:
            return rows
        parts = distributed.gather_to_main(self.world, rows)
        return [row for part in parts for row in part] if parts is not None else []

    def loader(self, split: str, keys: list[str], collate: Collate):
        return eval_loader(
            self.config.cache,
            split,
            keys,
            self.fields.inputs,
            collate.inputs_only(),
            self.config.batch_size,
            self.config.workers,
            group=self.cache.group,
        )

    def batch_loss(
        self, model, batch: dict, means: dict, weights: dict
    ) -> tuple[torch.Tensor, dict]:
        """Task loss plus distillation for one batch; also each term as a float. ``model`` may
        be the DDP wrapper, whose forward is the loss."""
        w, mean = None, None
        if weights and self.config.distill.mode != "none":
            w = torch.tensor([weights.get(k, 1.0) for k in batch["keys"]], device=self.device)
            if self.world.distributed:  # normalised over the global batch, not this rank's part
                total, count = distributed.sum_over_ranks(self.world, [float(w.sum()), len(w)])
                mean = torch.tensor(total / count, device=self.device)
        with autocast(self.device):
            loss, parts = model(batch, means, w, self.config.distill, mean)
        return loss, {name: float(torch.as_tensor(value).detach()) for name, value in parts.items()}

    def train_epoch(
        self, model, loader, optimizer, scheduler, means, weights, bar, log_step, epoch=1
    ) -> dict:
        """One pass over the training data; logs every optimiser step through ``log_step``.
        Stops (on every rank) at the first non-finite value in a batch or loss."""
        model.train()
        config, totals, seen, pending = self.config, dict.fromkeys(LOSS_TERMS, 0.0), 0, False
        optimizer.zero_grad(set_to_none=True)
        try:
            for step, batch in enumerate(loader):
                batch = to_device(batch, self.device)
                problem = guard.nonfinite_value(batch, config.train_split)
                loss, parts = self.batch_loss(model, batch, means, weights)
                problem = problem or guard.nonfinite_loss(
                    parts["loss"], epoch, step + 1, batch["keys"]
                )
                guard.stop_on(problem, self.world)
                (loss / config.accumulate).backward()
                pending = (step + 1) % config.accumulate != 0
                if not pending:
                    self.optimizer_step(model, optimizer, scheduler, parts, log_step)
                count = len(batch["keys"])
                seen += count
                for name in LOSS_TERMS:
                    totals[name] += parts[name] * count
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{totals['loss'] / seen:.4f}")
            if seen and pending:  # the last, incomplete accumulation still counts
                self.optimizer_step(model, optimizer, scheduler, parts, log_step)
        finally:  # also when a batch stops the run, so its error line starts a line
            if bar is not None:
                bar.close()
        # the epoch's means over every rank's samples (each step's entry is rank 0's batch)
        *sums, seen = distributed.sum_over_ranks(self.world, [*totals.values(), seen])
        return {name: value / max(seen, 1) for name, value in zip(totals, sums, strict=True)}

    def optimizer_step(self, model, optimizer, scheduler, parts: dict, log_step) -> None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), self.config.clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        log_step({"step": scheduler.last_epoch, **parts, "lr": scheduler.get_last_lr()[0]})

    # ---- checkpoints ------------------------------------------------------------------------
    def save_last(self, model, optimizer, scheduler, state: dict) -> None:
        rng = {
            # this rank's GPU only: asking every visible GPU would open a context on each
            "cuda": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
            "torch": torch.get_rng_state(),
            "numpy": np.random.get_state(),
            "python": random.getstate(),
        }
        if self.world.distributed:  # every rank's random state, so dropout resumes exactly
            ranks = distributed.gather_to_main(self.world, rng)
            if not self.world.main:
                return
            rng = {"ranks": ranks}
        save_atomic(
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "state": state,
                "rng": rng,
                "config": config_json(self.config),
            },
            self.out / "last.pt",
        )

    def load_last(self, model, optimizer, scheduler) -> dict:
        checkpoint = torch.load(self.out / "last.pt", map_location=self.device, weights_only=False)
        if checkpoint["config"] != config_json(self.config):
            raise ValueError(
                f"{self.out}/last.pt was written by a run with other settings; use another --out"
            )
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        self.restore_rng(checkpoint["rng"])
        return checkpoint["state"]

    def restore_rng(self, rng: dict) -> None:
        if "ranks" in rng:
            if len(rng["ranks"]) != self.world.size:
                raise ValueError(
                    f"{self.out}/last.pt was written by {len(rng['ranks'])} ranks and this run "
                    f"has {self.world.size}; resume with the same world size, or use another --out"
                )
            rng = rng["ranks"][self.world.rank]
        elif self.world.distributed:
            raise ValueError(
                f"{self.out}/last.pt was written by one process; resume it without torchrun"
            )
        torch.set_rng_state(rng["torch"])
        if isinstance(rng.get("cuda"), list):  # a last.pt of every visible GPU's state
            torch.cuda.set_rng_state_all(rng["cuda"])
        elif rng.get("cuda") is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], self.device)
        np.random.set_state(rng["numpy"])
        random.setstate(rng["python"])

    # ---- results ----------------------------------------------------------------------------
    def describe_student(self) -> dict:
        """What the report says of the student: what it is, what it reads, what was loaded."""
        info = asdict(self.student_info)
        info["visual_input"] = self.visual
        info["text_input"] = self.text.description
        visual_target = next((n for n in self.fields.targets if n in VISUAL_TARGETS), None)
        if visual_target == self.visual:
            info["notes"].append(
                f"the student's visual input {self.visual} is also the visual target: the "
                "visual branch distils the teacher's features into themselves"
            )
        return info

    def final_results(self, model, collate, keys, metas, weights, state) -> dict:
        if state["best_epoch"] is not None and (self.out / "best.pt").is_file():
            best = torch.load(self.out / "best.pt", map_location=self.device, weights_only=True)[
                "model"
            ]
            model.load_state_dict(best, strict=False)
            if self.world.main:
                export_pretrained(model, self.out / BEST_PRETRAINED)
        splits = {}
        for split in self.eval_splits:
            rows = self.predict(model, split, collate, self.config.eval_where)
            if self.world.main:  # rank 0 holds the rows
                splits[split] = score(self.task, rows)
                write_predictions(self.out, split, self.task, rows)
        splits = distributed.broadcast(self.world, splits)
        return {
            "config": config_json(self.config),
            "cache": str(self.config.cache),
            "cache_key": self.cache.cache_key,
            "teachers": self.cache.group,
            "task": self.task.name,
            "confidence": self.confidence if self.config.distill.mode == "mad" else "none",
            "student": self.describe_student(),
            "train_samples": len(keys),
            "world_size": self.world.size,
            "global_batch": self.config.batch_size * self.world.size * self.config.accumulate,
            "val_split": self.val_split,
            "best_epoch": state["best_epoch"],
            "best_val_score": state["best"],
            "history": state["history"],
            "splits": splits,
            "weights": weight_summary(weights, metas, self.task),
            "distill_share": distill_share(state["history"]),
            "target_means": self.means_source(),
        }

    def means_source(self) -> str:
        """What the targets were centred by, for the report."""
        if self.config.distill.mode == "none":
            return "none (no distillation)"
        where = " ".join(f"{name}={value}" for name, value in self.config.train_where)
        if where:
            return f"the {self.config.train_split!r} samples with {where} (computed by the run)"
        return f"the cache's means over {self.config.train_split!r}"


def export_pretrained(model: DistilledStudent, folder: Path) -> None:
    """``save_pretrained`` of a transformers student (with its tokenizer), written to a temporary
    folder and renamed, so a reader never sees half a model; own students have no such format."""
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    if not model.student.save_pretrained(tmp):
        return
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
