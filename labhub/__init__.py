"""LabHub: the lab hub for STEAM innovation labs.

This package is the app shell: settings, the command line, the HTTP API, and the wiring
that joins the domains (``sensors``, ``firmware_bridge``, ``inventory``) without letting
them import each other.
"""

__version__ = "0.1.0.dev0"
