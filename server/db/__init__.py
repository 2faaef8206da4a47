"""SQL schema (SQLAlchemy 2 typed models), engine/session helpers and Alembic migration entry points."""
