import os

from hypothesis import HealthCheck, settings

# Each example compiles a model with Dynamo: few examples, no deadline.
settings.register_profile(
    "toca", max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "toca"))
