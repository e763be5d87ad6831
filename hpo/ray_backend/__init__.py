"""The Ray Tune backend: the one session loop (runner), the Ray Tune adapters for our cores and for Ray's own
schedulers, the trainable, and Ray job submission. The session itself (driver, rows, state) is Ray-free:
see :mod:`hpo.session`."""
