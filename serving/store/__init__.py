"""The worklist store: SQLAlchemy 2 models, Alembic migrations, every query (``db``, ``queries``,
``claims``, ``audit``), the durable work queue (``work``) and the object files (``objects``).
"""

from serving.store.db import Database
from serving.store.schema import Instance, Study

__all__ = ["Database", "Instance", "Study"]
