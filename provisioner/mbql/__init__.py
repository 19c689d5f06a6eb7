"""MBQL, Metabase's query language: one normal form, and the wire forms Metabase reads and writes.

Pure data work, no I/O and nothing of the YAML: `normal.py` turns what Metabase returns (MBQL 5, or the
legacy form) into the normal form that plan compares; `legacy.py` turns the normal form into the legacy
MBQL 4 the tool writes; `columns.py` names a query's result columns as Metabase does.
"""
