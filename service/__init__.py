"""FastAPI service (REST API and dashboard) over the results store."""
