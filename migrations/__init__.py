"""Alembic migration scripts of the Amoeba service (run them with ``amoeba db upgrade``)."""
