"""Beyond the course: the pieces of k-fold cross-validation (the driver is ``scorelib-cv``, :mod:`scorelib.cli.cv`)."""
