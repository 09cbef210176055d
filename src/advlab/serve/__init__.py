"""The playground: a local web app to draw a digit, attack it and watch the network be fooled."""

from advlab.serve.app import create_app

__all__ = ["create_app"]
