"""Hypothesis profiles: ``default`` keeps the harness within a minute of ``make test``;
``HYPOTHESIS_PROFILE=long`` (``benchmarks/fuzz.py``) runs many more cases."""
import os

from hypothesis import HealthCheck, settings

settings.register_profile("default", max_examples=25, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
settings.register_profile("long", max_examples=150, deadline=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
