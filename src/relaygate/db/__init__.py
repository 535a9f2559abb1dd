"""The store: SQLAlchemy 2 tables, the async engine and Alembic migrations."""
