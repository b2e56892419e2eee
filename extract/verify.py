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
def main(cache_dir: str, no_decode: bool) -> None:
    """Check every shard of a cache: presence, byte size, sha256, sample counts, and (unless
    --no-decode) each sample's field shapes, dtypes and finiteness. Exit status 0 only when all
    of it holds."""
    try:
        manifest = load_manifest(cache_dir)
        total = sum(len(s.shards) for s in manifest.splits.values()) * (1 + len(manifest.groups))
    except (FileNotFoundError, ValueError):
        total = None  # verify_cache reports the manifest problem itself
    with tqdm(total=total, desc="verify", unit="shard", disable=total is None) as bar:
        report = verify_cache(cache_dir, decode=not no_decode, on_shard=lambda _: bar.update())
    click.echo(format_report(report))
    sys.exit(0 if report.ok else 1)


if __name__ == "__main__":
    main()
