"""``python -m extract.search --cache DIR (--text "..." | --key KEY) [-k 5]``: nearest samples.

``--text`` encodes the query with the cache's own text teacher and searches the text index (and
the image index too when the teachers share a space); ``--key`` searches the image index with that
sample's cached image embedding. Results print with their texts.
"""

from __future__ import annotations

import sys

import click
import numpy as np

from extract.store import CacheReader


def default_split(cache: CacheReader) -> str:
    splits = [name.split("/")[0] for name in cache.indices]
    if not splits:
        raise click.ClickException(
            f"{cache.cache_dir} has no FAISS indices (made with --no-index?); extract without it"
        )
    return "train" if "train" in splits else splits[0]


def encode_query(cache: CacheReader, text: str) -> np.ndarray:
    import torch

    from extract.encoders import TextEncoder, create_encoders

    config = cache.config
    encoders = create_encoders(config["teachers"][1], config.get("max_text_length", 64))
    (encoder,) = [e for e in encoders if isinstance(e, TextEncoder)]
    if cache.fields["txt_emb"].producer != encoder.fingerprint:
        raise click.ClickException(
            f"the text teacher here ({encoder.fingerprint}) is not the one that made the cache "
            f"({cache.fields['txt_emb'].producer})"
        )
    with torch.inference_mode():
        return encoder.encode(*encoder.tokenize([text]))["global"].float().numpy()


def show(cache: CacheReader, split: str, hits: list[tuple[str, float]], title: str) -> None:
    """Text-index names are ``<key>#<candidate>``; image-index names are plain keys."""
    reader = cache.split(split, fields=[])
    click.echo(title)
    for rank, (name, score) in enumerate(hits, start=1):
        key, candidate = name, None
        if name not in reader:
            key, _, number = name.rpartition("#")
            candidate = int(number)
        texts = reader[key]["meta"].get("texts", [])
        shown = texts[candidate] if candidate is not None else " | ".join(texts[:2])
        click.echo(f"{rank:>3}. {score:6.3f}  {key}  {shown}")


@click.command(context_settings={"show_default": True})
@click.option(
    "--cache", "cache_dir", required=True, type=click.Path(file_okay=False), help="Cache directory."
)
@click.option("--text", default=None, help="Query text (encoded with the cache's text teacher).")
@click.option("--key", default=None, help="Query with the image of this sample key.")
@click.option(
    "--split", default=None, help="Split whose index is searched (default: train, else the first)."
)
@click.option("-k", "count", default=5, help="Number of neighbours.")
@click.option(
    "--teachers", default=None, help="Column group whose indices are searched [default: the first]."
)
def main(
    cache_dir: str, text: str | None, key: str | None, split: str | None, count: int,
    teachers: str | None,
) -> None:  # fmt: skip
    """Print the samples nearest to a text or to a sample's image, with their texts."""
    from extract.index import KeyedIndex

    if (text is None) == (key is None):
        raise click.UsageError("give exactly one of --text and --key")
    cache = CacheReader(cache_dir, as_float32=True, group=teachers)
    split = split or default_split(cache)
    indices = cache.indices_dir
    if text is not None:
        query = encode_query(cache, text)
        hits = KeyedIndex.load(indices, f"{split}-text").search(query, count)[0]
        show(cache, split, hits, f"texts nearest to {text!r} in {split}:")
        if cache.config.get("shared_space"):
            hits = KeyedIndex.load(indices, f"{split}-image").search(query, count)[0]
            show(cache, split, hits, f"images nearest to {text!r} in {split}:")
        return
    owner = next((name for name in cache.splits if key in cache.split(name, fields=[])), None)
    if owner is None:
        raise click.ClickException(f"no sample {key!r} in any split of {cache_dir}")
    query = cache.split(owner, fields=["img_emb"])[key]["img_emb"][None]
    hits = KeyedIndex.load(indices, f"{split}-image").search(query, count)[0]
    show(cache, split, hits, f"images nearest to the image of {key!r} in {split}:")


if __name__ == "__main__":
    sys.exit(main())
