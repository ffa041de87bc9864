"""The shared vocabulary: the exception tree, typed records and messages, JSON logs with
request ids, per-run timings, the telemetry sink, a per-replica cache and the injectable clock.

May import nothing of the project: every other package builds on it.
"""
