"""LabHub's web pages: rendered on the hub with Jinja2 (no build step, light on old laptops
and phones), in Spanish, Portuguese or English (gettext catalogs read with Babel), with one
stylesheet and one script of the hub's own and htmx, all served by the hub (no CDN).
docs/web.md says why and how."""
