"""Where stored state lives: `[storage].url` parsed into a SQLite or PostgreSQL database, and versioned migrations."""

from .base import Database, Migrations, Statement
from .url import StorageUrl, open_database, parse_url

__all__ = ["Database", "Migrations", "Statement", "StorageUrl", "open_database", "parse_url"]
