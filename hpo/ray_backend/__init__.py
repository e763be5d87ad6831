"""The Ray Tune backend: the study driver (no Ray import), the Ray Tune adapter, the trainable, the runner and
Ray's own schedulers as baselines. See :mod:`hpo.ray_backend.driver` for the design."""
