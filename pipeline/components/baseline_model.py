"""Picks the baseline the Evaluator compares a candidate model with.

TFX's LatestBlessedModelStrategy returns the latest blessed model, which after
a push is the candidate itself: a rerun with no new data then re-evaluates and
re-pushes the same model. This returns the latest model blessed *before* the
candidate was trained, so a rerun sees the same baseline and stays cached.
"""
from tfx.dsl.components.common import resolver


def _created(artifact):
    return (artifact.mlmd_artifact.create_time_since_epoch, artifact.id)


class BlessedBeforeCandidateStrategy(resolver.ResolverStrategy):

    def resolve_artifacts(self, store, input_dict):
        models, blessings = input_dict["model"], input_dict["model_blessing"]
        if not models:
            return {"model": [], "model_blessing": []}
        candidate = max(models, key=_created)
        blessing_of = {b.get_int_custom_property("current_model_id"): b
                       for b in sorted(blessings, key=_created)
                       if b.get_int_custom_property("blessed") == 1}
        earlier = [m for m in models
                   if m.id in blessing_of and _created(m) < _created(candidate)]
        if not earlier:
            return {"model": [], "model_blessing": []}
        baseline = max(earlier, key=_created)
        return {"model": [baseline], "model_blessing": [blessing_of[baseline.id]]}
