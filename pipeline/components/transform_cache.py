"""Feeds Transform the analyzer cache of an earlier run, without breaking caching.

With a rolling window, most spans were analyzed last time; TFT's analyzer cache
lets Transform analyze only the new span. Taking simply the latest cache would
change Transform's inputs on every run and defeat execution caching when no new
data arrived, so this takes the latest cache made before the newest span of the
window was ingested: a rerun with the same window sees the same cache.
"""
from tfx.dsl.components.common import resolver


class CacheBeforeNewestSpanStrategy(resolver.ResolverStrategy):

    def resolve_artifacts(self, store, input_dict):
        examples = input_dict["examples"]
        caches = input_dict["cache"]
        if not examples:
            return {"examples": [], "cache": []}
        newest_span_ingested = max(a.mlmd_artifact.create_time_since_epoch
                                   for a in examples)
        older = [c for c in caches
                 if c.mlmd_artifact.create_time_since_epoch < newest_span_ingested]
        latest = max(older, key=lambda c: (c.mlmd_artifact.create_time_since_epoch,
                                           c.id), default=None)
        return {"examples": examples, "cache": [latest] if latest else []}
