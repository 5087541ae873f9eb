"""Small custom pieces the standard TFX components lack: a gate that stops the
run on data anomalies, an atomic Pusher, and a resolver for the Transform cache."""
