"""Cloud providers: utility and supplier APIs that report interval data late.

:mod:`.base` has the models, typed errors, retries and the request budget;
:mod:`.hourly` turns interval data into exact, continuous hourly statistics;
:mod:`.octopus` and :mod:`.tibber` are the provider clients.
"""

from .base import (
    BudgetStore,
    CloudAccount,
    CloudAuthError,
    CloudError,
    CloudMeter,
    CloudProvider,
    CloudRateLimitError,
    CloudResponseError,
    CloudTemporaryError,
    HttpJson,
    Interval,
    IntervalData,
    RequestBudget,
    RetryPolicy,
)

__all__ = [
    "BudgetStore",
    "CloudAccount",
    "CloudAuthError",
    "CloudError",
    "CloudMeter",
    "CloudProvider",
    "CloudRateLimitError",
    "CloudResponseError",
    "CloudTemporaryError",
    "HttpJson",
    "Interval",
    "IntervalData",
    "RequestBudget",
    "RetryPolicy",
]
