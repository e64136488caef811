"""The HTTP API: ``app.build_api``, one router per resource in ``routes``, shared dependencies in
``deps``, response shapes in ``schemas``."""
