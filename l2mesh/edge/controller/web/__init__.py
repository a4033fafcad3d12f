"""The controller's web admin (issue 15): pages under /web of the admin API, with login links, named admins and live updates."""

from l2mesh.edge.controller.web.pages import WebAdmin

__all__ = ["WebAdmin"]
