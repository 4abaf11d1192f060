"""Test-only helpers (fault injection); production code never imports them
unless a test asks for it through ``PYG_SCHNET_FAULT``."""
