"""ganforge's orchestrator: job specs, Ray Tune searches, MLflow tracking and the model registry."""

__version__ = "0.1.0"
