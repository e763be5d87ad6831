"""A study session, with no Ray import: what the driver records (rows, journal, budget, best so far), the
persisted scheduler state of our cores, the record of Ray's own schedulers, and the order
in which a study folder is created and ended. :mod:`hpo.ray_backend.runner` runs a session on Ray Tune."""
