"""The public path of `BenchPipeline` (README, "Using a trained model elsewhere"); it lives in
bench/engine/pipeline.py."""
from bench.engine.pipeline import BenchPipeline

__all__ = ["BenchPipeline"]
