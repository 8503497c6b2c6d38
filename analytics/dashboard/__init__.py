"""The dashboard: server-rendered pages whose every number comes from the analytics engine.

``data`` is the only module that calls the engine; ``state`` turns the URL into API
parameters; ``reports`` names the panels; ``access`` decides who sees which site (a session
user or a shared link); ``views`` and ``share`` are thin views over those.
"""
