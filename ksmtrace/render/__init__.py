"""Text renderers of the event model: tables, JSON lines and summaries."""
