"""The worklist store: SQLAlchemy 2 models, Alembic migrations, and the queries the API needs.

SQLite by default (a file under ./var/), PostgreSQL by URL; the same migrations run on both.
"""

from serving.store.db import Database
from serving.store.schema import Instance, Study

__all__ = ["Database", "Instance", "Study"]
