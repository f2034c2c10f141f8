"""The operator console (SPEC 19): server-rendered pages under /console, served by `ains serve` itself."""
