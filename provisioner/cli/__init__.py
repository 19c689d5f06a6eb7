"""The command line: parses, calls one core function per command, prints."""
