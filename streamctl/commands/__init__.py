"""What each command does, under the CLI: status, stop, sweep, check, doctor, install-service, demo."""
