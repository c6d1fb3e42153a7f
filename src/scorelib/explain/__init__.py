"""Beyond the course: what the scorer looks at (sentence occlusion, token attributions) and robustness probes."""
