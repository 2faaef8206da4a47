"""HTTP routes (/v1, health, admin). Routes are thin: validate, call a service, return."""
