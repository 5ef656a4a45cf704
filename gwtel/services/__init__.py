"""Local services for development, tests and the embedded default deployment (`gwtel up|down|status`)."""
