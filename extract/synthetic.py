"""python -m extract.synthetic --out data/synthetic: write the embedded demo's datasets.

Procedural scenes and, over the same images, VCR, SNLI-VE and VQA v2 datasets in their released
formats (splits train / val / test / test_shifted, all labelled). Read them with
``open_dataset("synthetic", out, task="vqa" | "snli_ve" | "vcr")`` or
``python -m extract.run --dataset synthetic --root <out> --dataset-option task=vcr``.
"""

from __future__ import annotations

from pathlib import Path

import click

from extract.datasets.synthetic import GenerationResult, GeneratorConfig, generate

DEFAULTS = GeneratorConfig()


def summary(result: GenerationResult) -> str:
    """A table of what the output holds, and how long it took."""
    columns = ("images", "vcr", "snli_ve", "vqa")
    lines = [f"{'split':<14}" + "".join(f"{name:>9}" for name in columns)]
    for split, counts in result.counts.items():
        lines.append(f"{split:<14}" + "".join(f"{counts[name]:>9}" for name in columns))
    if result.skipped:
        lines.append(f"{result.out} already holds these datasets (same settings): nothing to do")
    else:
        lines.append(f"wrote {result.out} in {result.seconds:.1f} s")
    return "\n".join(lines)


@click.command(context_settings={"show_default": True})
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("data/synthetic"),
    help="Output folder (gets vcr/, snli_ve/, vqa/, scenes/ and generator.json).",
)
@click.option("--seed", default=DEFAULTS.seed, help="Seed: the same seed gives identical files.")
@click.option("--size", default=DEFAULTS.image_size, help="Image side in pixels.")
@click.option("--train", default=DEFAULTS.train, help="Training images.")
@click.option("--val", default=DEFAULTS.val, help="Validation images (SNLI-VE: dev).")
@click.option("--test", default=DEFAULTS.test, help="Test images (labelled).")
@click.option(
    "--shifted",
    default=DEFAULTS.test_shifted,
    help="test_shifted images: paraphrases, synonyms, unseen colour-shape pairs.",
)
def main(out: Path, seed: int, size: int, train: int, val: int, test: int, shifted: int) -> None:
    """Generate the synthetic VCR / SNLI-VE / VQA datasets under OUT."""
    try:
        config = GeneratorConfig(
            seed=seed, image_size=size, train=train, val=val, test=test, test_shifted=shifted
        )
        result = generate(config, out)
    except (ValueError, FileExistsError) as err:
        raise click.ClickException(str(err)) from None
    click.echo(summary(result))


if __name__ == "__main__":
    main()
