"""Where the API's Idempotency-Key replies are kept."""
