"""Active probes run by `visio verify` against a deployed stack: a TURN client and a real LiveKit call.

Probes read secrets from environment variables or files, never from the command line, and print
results as JSON without any credential in them.
"""
