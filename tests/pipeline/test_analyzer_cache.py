"""`--analyzer-cache`: Transform gets the analysis of an earlier run, and a rerun
with nothing new still reuses every component (the cache it gets is chosen by the
window's newest span, not "the latest")."""
from ml_metadata.proto import metadata_store_pb2

from pipeline.lineage.store import open_store
from tests.conftest import NEW_SPAN, make_spans, run_pipeline
from tests.pipeline.test_components import artifacts_of, executions_of


def test_transform_reuses_the_analysis_of_the_previous_window(tmp_path):
    data_dir, output_dir = tmp_path / "data", tmp_path / "outputs"
    make_spans(data_dir, 14, 15, rows=60)
    for _ in range(2):  # the second run has nothing new
        run = run_pipeline(data_dir, output_dir, "--training-window-spans", "2",
                           "--analyzer-cache")
        assert run.returncode == 0, run.stdout + run.stderr
    make_spans(data_dir, NEW_SPAN, NEW_SPAN, rows=60)
    run = run_pipeline(data_dir, output_dir, "--training-window-spans", "2", "--analyzer-cache")
    assert run.returncode == 0, run.stdout + run.stderr

    store = open_store(str(output_dir / "metadata.sqlite"))
    first, rerun, after_new_span = executions_of(store, "Transform")
    assert rerun.last_known_state == metadata_store_pb2.Execution.CACHED
    assert after_new_span.last_known_state == metadata_store_pb2.Execution.COMPLETE
    (made,) = artifacts_of(store, first, metadata_store_pb2.Event.OUTPUT)["updated_analyzer_cache"]
    assert "analyzer_cache" not in artifacts_of(store, first, metadata_store_pb2.Event.INPUT)
    (fed_back,) = artifacts_of(store, after_new_span,
                               metadata_store_pb2.Event.INPUT)["analyzer_cache"]
    assert fed_back.id == made.id
