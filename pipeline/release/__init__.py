"""Staged rollout: a pushed version is served as `canary` next to `stable`, then
promoted or rolled back (`python -m pipeline.release`, docs/delivery.md)."""
