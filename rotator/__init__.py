"""rotator: DKIM key rotation orchestrator for email service providers."""

__version__ = "0.1.0"
