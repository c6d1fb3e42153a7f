"""Beyond the course: the evaluation report of ``scorelib-report`` (RSMTool's analyses, HTML and JSON)."""
