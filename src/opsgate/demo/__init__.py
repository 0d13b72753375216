"""The embedded demo target: a small real service opsgate checks when no environment is given."""
