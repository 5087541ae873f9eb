"""Staged rollout: canary and stable labels, promotion, rollback, retention."""
