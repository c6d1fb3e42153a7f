"""Beyond the course: a trained model as a scorer (``scorelib.load``), fold ensembles, and the notebook widget
(fairseq's ``hub_utils.py``)."""
