"""Signer targets: each MTA's signer (OpenDKIM, rspamd, Exim, KumoMTA, an in-house one reading
JSON) gets the files its format needs, written atomically, key files before any table that
names them, then its reload command and a probe through the live signer."""
