"""``python -m scorelib.cli [scorelib-train flags]`` (and ``torchrun --nproc_per_node=N -m scorelib.cli ...``) runs
``scorelib-train``."""
import sys

from scorelib.cli.train import cli_main

sys.exit(cli_main())
