"""Forward lineage (data -> models -> pushes) and the difference between runs."""


def served_model_id(lineage_json) -> int:
    return lineage_json("model")["model_trace"]["model"]["id"]


def test_new_span_reaches_the_served_model(store, lineage_json):
    report = lineage_json("artifact", "--span", 16)["artifact_report"]
    assert report["artifact"]["type"] == "Examples"
    assert report["artifact"]["properties"]["span"] == 16
    models = {m["model"]: m for m in report["trained_models"]}
    assert served_model_id(lineage_json) in models
    served = str(store.pushed_versions()[-1])
    assert served in models[served_model_id(lineage_json)]["pushed_versions"]


def test_oldest_span_did_not_train_the_served_model(lineage_json):
    report = lineage_json("artifact", "--span", 13)["artifact_report"]
    trained = {m["model"] for m in report["trained_models"]}
    assert served_model_id(lineage_json) not in trained


def test_curated_schema_feeds_every_model_and_every_push(store, lineage_json):
    schema = next(s for s in lineage_json("model")["model_trace"]["schemas"]
                  if s["producer_node"] == "ImportSchemaGen")
    report = lineage_json("artifact", schema["id"])["artifact_report"]
    assert len(report["trained_models"]) >= 2
    pushed = {v for m in report["trained_models"] for v in m["pushed_versions"]}
    assert pushed == {str(v) for v in store.pushed_versions()}


def test_artifact_text_shows_both_directions(lineage):
    text = lineage("artifact", "--span", 16)
    assert "Upstream (made from)" in text and "<- CsvExampleGen #" in text
    assert "Downstream (used by)" in text and "as examples by Transform #" in text
    assert "Models trained on it" in text and "pushed:" in text


def rows_by(diff: dict, section: str, node: str) -> dict:
    return {r["name"]: r for r in diff["rows"]
            if r["section"] == section and r["node"] == node}


def test_diff_tells_the_new_span_run_from_the_first(training_runs, lineage_json):
    first, _, new_span = training_runs
    diff = lineage_json("diff", first["id"], new_span["id"])["run_diff"]
    span = rows_by(diff, "parameters", "CsvExampleGen")["span"]
    assert span["a"] != span["b"] and span["b"] == "16"
    transform_inputs = rows_by(diff, "inputs", "Transform")["examples"]
    assert "span 16" in transform_inputs["b"] and "span 16" not in transform_inputs["a"]
    assert "model" in rows_by(diff, "outputs", "Trainer")
    assert rows_by(diff, "metrics", "Evaluator"), "a new model, new metrics"


def test_diff_of_a_cached_rerun_shows_only_reuse(training_runs, lineage_json, lineage):
    first, cached, _ = training_runs
    diff = lineage_json("diff", first["id"], cached["id"])["run_diff"]
    assert not rows_by(diff, "parameters", "Trainer")
    assert not rows_by(diff, "parameters", "Transform")
    assert not rows_by(diff, "inputs", "Trainer")
    assert rows_by(diff, "status", "Trainer")["execution"]["b"].startswith("CACHED")
    text = lineage("diff", first["name"], cached["name"])
    assert "CACHED (reused execution #" in text


def test_diff_accepts_latest_and_previous(training_runs, lineage_json):
    diff = lineage_json("diff", "previous", "latest")["run_diff"]
    assert diff["run_b"]["id"] == training_runs[-1]["id"]


def test_runs_list_every_push_once_as_new(store, lineage_json, lineage):
    runs = lineage_json("runs")["runs"]
    seen = set()
    for run in runs:
        assert run["status"] == "COMPLETE" and run["executions"] == len(run["nodes"])
        if run["pushed_version"]:
            assert run["pushed_reused"] == (run["pushed_version"] in seen), run
            seen.add(run["pushed_version"])
    assert seen == {str(v) for v in store.pushed_versions()}
    table = lineage("runs").splitlines()
    assert table[0].split()[:4] == ["ID", "STARTED", "DURATION", "STATUS"]
    assert len(table) == len(runs) + 1
