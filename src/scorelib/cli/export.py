"""``scorelib-export DIR OUT [--quantize int8]``: a trained scorer as ONNX graphs (:mod:`scorelib.export.onnx`).

No fairseq counterpart. ``scorelib-score OUT ...`` and ``scorelib.load(OUT)`` score the export with onnxruntime.
"""
from __future__ import annotations

import sys

from scorelib import options
from scorelib.cli import options as cli_options
from scorelib.logging.console import run, setup_logging


def export_dir(args) -> None:
    from scorelib.export.onnx import export

    manifest = export(args.dir, args.out, quantize=args.quantize)
    print(f"exported {len(manifest['models'])} model(s) of {args.dir} ({manifest['quantize'] or 'fp32'}) into "
          f"{args.out}", file=sys.stderr)


def cli_main(argv=None) -> int:
    """``scorelib-export DIR OUT [--quantize int8]``."""
    setup_logging()
    parser = cli_options.get_export_parser()
    return run("scorelib-export", export_dir, options.check_args(parser, parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(cli_main())
