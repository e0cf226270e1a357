"""The engine: training and sampling one model, planning the grid, the tasks and their executors.

Built on the plug-in families (methods, metrics, datasets), the models and the config; imported
only by the report's readers of the store, bench.testing, bench.pipeline and the command line."""
