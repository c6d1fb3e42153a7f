"""Beyond the course: per-prompt thresholds between rubric points that maximise QWK (``--fit-cutpoints``)."""
