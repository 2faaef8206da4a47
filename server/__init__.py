"""Amoeba service: FastAPI app, SQL models, services, admin pages."""
