"""`streamctl serve`: the JSON API and the monitor page, over the same library calls as the CLI.

auth.py holds the rules of who may ask (pure, no web framework), api.py the routes (Starlette),
openapi.py their description, server.py how it listens (uvicorn), static/ the page. Only `serve`
imports this package, so no other command pays for the framework.
"""
