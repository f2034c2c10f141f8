"""AINS, the Agent Intelligence Network System: a registry and task broker for AI agents."""

__version__ = "0.1.0"
