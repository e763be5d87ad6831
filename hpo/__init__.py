"""The HPO engine: study specs, schedulers, searchers, backends, results store and the CLI."""
