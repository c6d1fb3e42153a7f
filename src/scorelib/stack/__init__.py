"""Beyond the course: a TF-IDF ridge beside the encoder and their blend (``--stack tfidf``)."""
