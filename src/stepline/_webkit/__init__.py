"""The web-app kit: routes that start, watch, cancel and await runs for the app's own users."""
