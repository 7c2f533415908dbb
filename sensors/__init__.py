"""Readings: what a sensor reading is and how LabHub keeps it.

Quantities and units, decoders for the wire formats that lab kits already speak, the
ingest pipeline (validate, convert, batch, write), storage, queries, runs and export.
This package never imports the app shell, the hardware layer, the inventory or a web
framework: it takes plain data in and gives plain data out.
"""
