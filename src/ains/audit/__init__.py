"""The audit log of admin actions, key changes, cancellations and trust adjustments."""
