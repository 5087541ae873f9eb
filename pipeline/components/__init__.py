"""Small custom pieces the standard TFX components lack: a gate that stops the
run on data anomalies, an atomic Pusher, resolvers (training window, Transform
cache, baseline, served model), and the span checks that decide whether a new
span trains a model (decay, drift, retrain decision)."""
