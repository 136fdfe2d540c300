"""``qcalo export RUN_DIR --format onnx --out MODEL.onnx``: a trained run as an ONNX file."""

from __future__ import annotations

import argparse

from qcalo.cli.checks import run_inputs
from qcalo.utils.layout import RunLayout

HELP = "export a trained run as an ONNX model (showers from incident energies and noise)"


def _opset(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected an integer ONNX opset") from None
    if not 7 <= value <= 25:
        raise argparse.ArgumentTypeError(f"{value}: expected an ONNX opset between 7 and 25")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run directory written by `qcalo train`")
    parser.add_argument(
        "--format", choices=("onnx",), default="onnx", help="file format (onnx, the default)"
    )
    parser.add_argument(
        "--out",
        metavar="MODEL.onnx",
        required=True,
        help="output file (written atomically, only after ONNX Runtime reproduced torch's showers)",
    )
    parser.add_argument(
        "--checkpoint",
        choices=("best", "last"),
        default="best",
        help="which checkpoint to export (default best)",
    )
    parser.add_argument(
        "--opset", type=_opset, default=17, metavar="N", help="ONNX opset version (default 17)"
    )


def run(args: argparse.Namespace) -> int:
    from qcalo.errors import ConfigError
    from qcalo.utils.paths import claim_output

    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        raise ConfigError(
            "qcalo export needs the onnx and onnxruntime packages; install them with "
            "pip install 'qcalo[export]'"
        ) from None
    from qcalo.export import export_onnx

    with claim_output(
        args.out, inputs=run_inputs(args.run_dir), reserved=[RunLayout(args.run_dir).checkpoints]
    ) as out:
        summary = export_onnx(args.run_dir, out, which=args.checkpoint, opset=args.opset)
    if not args.quiet:
        print(
            f"wrote {summary.path} ({summary.kind}; inputs {', '.join(summary.inputs)}; "
            f"ONNX Runtime vs torch on {summary.check_events} events: relative error "
            f"{summary.parity_error:.1e})"
        )
    return 0
