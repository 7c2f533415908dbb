"""HTTP API routers, all under ``/api/v1``; thin layers over the domain functions."""
