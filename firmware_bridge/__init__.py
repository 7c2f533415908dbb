"""Hardware: serial sketches, Firmata boards, MQTT nodes, discovery and the device registry.

Every transport feeds the readings domain's ingest pipeline (``sensors.pipeline``) and
never imports the app shell. The serial, Firmata and MQTT transports arrive with their
own issues; this package is their home.
"""
