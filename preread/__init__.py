"""preread: AI pre-read service for telemedicine networks (command line entry point)."""

__version__ = "0.1.0"
