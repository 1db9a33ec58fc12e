"""Shapes: how one family of chat routes carries a chat in its HTTP traffic.

A shape reads a chat request's credential and JSON into ``RequestFacts`` and a blocking
answer or each streamed event into ``ResponseFacts`` (see ``chatspan.instrumentation.facts``);
it never touches spans. ``base`` holds the :class:`~.base.Shape` every shape derives from;
``dify``, ``openai`` and ``custom`` the shapes chatspan knows; routing pairs them with routes.
"""
