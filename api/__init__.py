"""Movie Time REST API (Bottle): serves what the pipeline published to MongoDB.

``create_app(settings)`` builds the WSGI app; ``api.wsgi:create()`` is the gunicorn entry point
and ``python -m api`` runs it for development.
"""

from api.app import create_app
from api.settings import Settings

__all__ = ["Settings", "create_app"]
