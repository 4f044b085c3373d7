"""The `marketdata` command line: one entry point for every service, tool and benchmark."""
