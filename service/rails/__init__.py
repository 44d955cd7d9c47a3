"""The governor's rules (cooldowns, limits, budget, storms, breaker, kill switch), pure."""
