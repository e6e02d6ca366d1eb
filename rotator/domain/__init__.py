"""Pure domain core: no DNS, database, scheduler or logging imports live here."""
