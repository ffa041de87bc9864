"""Remembers what each user tells it ("remember ..."), per user, across threads."""
