"""``qcalo download ds1-photons|ds1-pions [--out DIR]``: fetch CaloChallenge dataset 1 from Zenodo."""

from __future__ import annotations

import argparse

HELP = "download the CaloChallenge dataset-1 files (checksummed, resumable)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from qcalo.data.download import BASE_URL_ENV, DATASETS, DOI

    parser.description = (
        f"Download the CaloChallenge dataset-1 files (HDF5 showers and binning XML) from their "
        f"Zenodo record (DOI {DOI}): resumable (an interrupted run continues where it stopped), "
        f"checked against the record's checksums, renamed into place only when complete. "
        f"${BASE_URL_ENV} replaces https://zenodo.org (a mirror)."
    )
    parser.add_argument("dataset", choices=tuple(DATASETS), help="which particle's files to fetch")
    parser.add_argument(
        "--out",
        metavar="DIR",
        default="data",
        help="folder for the files (created if needed; default: data)",
    )
    # The full record API URL, for tests and mirrors with another layout.
    parser.add_argument("--record-url", help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    from qcalo.data.download import download_dataset

    def log(line: str) -> None:
        if not args.quiet:
            print(line, flush=True)

    paths = download_dataset(args.dataset, args.out, url=args.record_url, log=log)
    log(f"{args.dataset}: {len(paths)} files in {args.out}")
    return 0
