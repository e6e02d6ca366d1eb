"""The provisioning API under /v1, served by the daemon ([api] listen): handlers check a
bearer token's scope, validate and record through the same use cases as the CLI, and
leave the work to the daemon. Every error is an RFC 9457 problem document whose detail is
the CLI's one line."""
