"""The welcome page: a self-contained browser tester for every API."""
