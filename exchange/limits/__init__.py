"""Limits on what one caller may do: request rates, failed logins, body sizes; security headers."""
