"""``python -m extract.verify --cache DIR``: check a cache against its manifest."""

from __future__ import annotations

import sys

import click
from tqdm import tqdm

from extract.store import format_report, load_manifest, verify_cache


@click.command()
@click.option(
    "--cache",
    "cache_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Cache directory (the one holding manifest.json), e.g. shards/vcr.",
)
@click.option(
    "--no-decode",
    is_flag=True,
    help="Check files, sizes and checksums only; skip decoding every sample "
    "(shapes, dtypes and finiteness are then not checked).",
)
@click.option(
    "--inputs",
    "inputs_root",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="The dataset root the cache was extracted from: also check that its annotation files "
    "and every image are unchanged since (sha256), and list skipped samples whose images read "
    "now (--retry-skipped adds them).",
)
def main(cache_dir: str, no_decode: bool, inputs_root: str | None) -> None:
    """Check every shard of a cache: presence, byte size, sha256, sample counts, and (unless
    --no-decode) each sample's field shapes, dtypes and finiteness; with --inputs, the dataset
    it came from too. Exit status 0 only when all of it holds."""
    try:
        manifest = load_manifest(cache_dir)
        total = sum(len(s.shards) for s in manifest.splits.values()) * (1 + len(manifest.groups))
    except (FileNotFoundError, ValueError):
        total = None  # verify_cache reports the manifest problem itself
    with tqdm(total=total, desc="verify", unit="shard", disable=total is None) as bar:
        report = verify_cache(cache_dir, decode=not no_decode, on_shard=lambda _: bar.update())
    click.echo(format_report(report))
    if inputs_root is not None and report.ok:
        inputs = check_dataset(cache_dir, inputs_root)
        sys.exit(0 if inputs.ok else 1)
    sys.exit(0 if report.ok else 1)


def check_dataset(cache_dir: str, root: str):
    from extract.inputs import check_inputs, format_inputs_report

    with tqdm(desc="inputs", unit="image") as bar:
        try:
            report = check_inputs(cache_dir, root, on_image=bar.update)
        except (ValueError, FileNotFoundError) as error:
            bar.close()
            click.echo(f"error: {error}", err=True)
            sys.exit(1)
    click.echo(format_inputs_report(report))
    return report


if __name__ == "__main__":
    main()
