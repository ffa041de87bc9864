"""A graph of plain Python steps."""
