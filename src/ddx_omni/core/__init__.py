"""Cross-cutting pieces every capability may import: settings, auth, errors, request ids, metrics, logging, health."""
