"""The commands, as fairseq's ``fairseq_cli/``: ``scorelib-train`` (:mod:`~scorelib.cli.train`), ``scorelib-cv``,
``scorelib-eval``, ``scorelib-score``, ``scorelib-report`` and ``scorelib-probe``, one module each, every one's
options built by :mod:`scorelib.options`."""
