"""Streaming tasks: a `StreamTask` model whose events reach every client, served over SSE.

Public API mirrors django-streaming-coordinator so users can port by changing imports:
`models.StreamTask`, `coordinator.coordinator`, the ASGI app in `server`, the Django view in `views`.
"""
