"""Text forms that both domains write and read: CSV dialects and RFC 3339 times.

A leaf: it imports nothing of LabHub (an import-linter contract keeps it so), which is
why ``sensors`` and ``inventory``, which never import each other, may both import it.
:mod:`labtext.csvtext` owns the CSV delimiters, their detection, decimal commas and the
spreadsheet-formula guard; :mod:`labtext.times` owns reading and writing a time as text;
:mod:`labtext.printable` owns which characters a name or a note may hold, and how text
holding others is shown on a terminal.
Each raises plain ``ValueError`` subclasses; the domains turn them into their own errors.
"""
