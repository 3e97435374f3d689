"""Serving a model over HTTP: the app and its routes, the request limits and guards, uploads, dynamic batching and
the drawing page."""
