"""Training–serving skew from the model server's request logs:
`python -m pipeline.monitor` (see README.md, Monitoring).
"""
