"""Dify's error codes: which are the app's failures, which the caller's mistakes.

Dify answers both with HTTP 4xx (a model outage on a blocking chat is
``400 completion_request_error``) and streams both as an ``error`` event, so the code
decides. An app failure is an error row (it shows in error lists, groups and alerts);
a caller's mistake leaves the chat with status error and no error row. A 4xx code in
neither list is taken as the caller's (Dify's validation errors are the common case);
a 5xx answer is always the app's.
"""

from __future__ import annotations

# Code -> why it is the app's failure, not the caller's.
APP_FAILURES: dict[str, str] = {
    "completion_request_error": "the model provider's call failed (Dify's InvokeError)",
    "provider_not_initialize": "the app's model provider has no valid credentials",
    "provider_quota_exceeded": "the model provider's quota is used up",
    "model_currently_not_support": "the app's model is not available",
    "rate_limit_error": "the model provider, or the app's own limit, throttled the call",
    "invoke_rate_limit_error": "the model provider throttled the call",
    "internal_server_error": "Dify failed unexpectedly",
}

# Code -> why it is the caller's mistake.
CALLER_MISTAKES: dict[str, str] = {
    "invalid_param": "the request's parameters are wrong",
    "bad_request": "the request is malformed",
    "not_found": "the conversation or message does not exist",
    "conversation_not_exists": "the conversation does not exist",
    "conversation_completed": "the conversation has ended",
    "unauthorized": "the credential is missing or wrong",
    "forbidden": "the credential may not use this app",
    "app_unavailable": "the app is not published or not configured",
    "not_chat_app": "the route does not match the app's mode",
    "not_completion_app": "the route does not match the app's mode",
    "not_workflow_app": "the route does not match the app's mode",
    "no_file_uploaded": "the request has no file",
    "too_many_files": "the request has too many files",
    "file_too_large": "the request's file is too large",
    "unsupported_file_type": "the request's file type is not allowed",
}

# Dify turns a failed workflow run into ValueError("Run failed: <the run's error>"), which
# its API answers as invalid_param: the app's failure, whatever the code says.
RUN_FAILED_PREFIX = "Run failed: "


def run_failure(message: str | None) -> str | None:
    """The run's error when `message` is Dify's report of a failed workflow run."""
    if message and message.startswith(RUN_FAILED_PREFIX):
        return message[len(RUN_FAILED_PREFIX) :] or None
    return None


def is_app_failure(code: str | None, status: int | None, *, in_stream: bool) -> bool:
    """Whether an error `code` (with its HTTP `status`) is the app's failure.

    In a stream an unknown code is the app's (validation happens before a stream starts);
    in a blocking answer it is the caller's unless the status is 5xx.
    """
    if code in APP_FAILURES or (status is not None and status >= 500):
        return True
    if code in CALLER_MISTAKES:
        return False
    return in_stream
