"""Verification suite of a deployed stack (run by `visio verify <stack>`)."""
