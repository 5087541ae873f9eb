"""ML Metadata for every part of the project: one way to connect, one way to
read the span of an artifact, one module of run and execution queries.

The runner, the watcher's triggers and the lineage tool all go through here,
so a PostgreSQL or MySQL store works everywhere once it works in one place.
"""
