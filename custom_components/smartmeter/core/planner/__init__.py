"""Peak-aware planning: prices, capacity limits and charge plans (no Home Assistant imports).

:mod:`.models` holds the shared dataclasses; :mod:`.prices` reads price lists
and time-of-use schedules; :mod:`.capacity` follows quarter-hour demand and the
month's peak; :mod:`.optimizer` plans a charge at the lowest total cost.
"""
