"""Offline export and import of the whole ledger between backends (SQLite <-> PostgreSQL).

`manage.py export_ledger FILE` and `manage.py import_ledger FILE` (portal/management/commands) are thin;
the rules live here: which tables move and in what order (tables), how a row is written as one canonical
JSON line (encoding), the reader (export) and the loader (load). This is the project layer, so it may see
every app; creditservice/lib may not.
"""
