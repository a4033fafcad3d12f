"""The controller's web admin (issue 15): pages under /web of the admin API (pages.WebAdmin), with login links,
named admins (auth), form handling (forms) and the views the pages show (views)."""
