"""Pictures and an HTML page for a scan: ESD plots, α by depth, α vs accuracy, phase tables.

``plots`` holds pure plotting functions (matplotlib Agg; arrays, records or pyarrow tables in, figures or
PNG bytes out), ``tables`` reads a results folder into Arrow tables and derives the report's tables, and
``html`` assembles the self-contained page.
"""
