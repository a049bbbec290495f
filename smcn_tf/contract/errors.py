"""The one error type of a served SMCN, with TF Serving's status codes.

Every failure a request can meet is a `ServingError` carrying a canonical
status code name (`"INVALID_ARGUMENT"`, `"NOT_FOUND"`, ...). The gRPC front
end turns it into that `grpc.StatusCode`, the REST front end into the HTTP
status TF Serving uses for the code (`http_server.cc`, `ToHTTPStatusCode`)
and the body `{"error": "<message>"}`. Clients raise the same type, so a
caller handles a bad request the same way whatever the transport.
"""

# TF Serving's mapping from status codes to HTTP statuses.
_HTTP_STATUS = {
    "OK": 200,
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400,
    "ABORTED": 409,
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 500,
    "UNAUTHENTICATED": 401,
}

STATUS_CODES = tuple(_HTTP_STATUS)


class ServingError(Exception):
    """A request failed with a canonical status code and a clear message.

    Args:
        code: a canonical status code name, e.g. `"INVALID_ARGUMENT"`.
        message: what went wrong, phrased for the person who sent the request.
        http_status: the HTTP status to answer with; by default TF Serving's
            status for `code`.

    Example:

    >>> error = ServingError("NOT_FOUND", "Servable not found for request: Latest(x)")
    >>> error.http_status
    404
    """

    def __init__(self, code, message, http_status=None):
        if code not in _HTTP_STATUS:
            raise ValueError(f"Unknown status code {code!r}; expected one of {STATUS_CODES}.")
        super().__init__(message)
        self.code = code
        self.message = message
        self.http_status = http_status or _HTTP_STATUS[code]

    @property
    def grpc_code(self):
        """The `grpc.StatusCode` of this error."""
        import grpc

        return getattr(grpc.StatusCode, self.code)

    def __str__(self):
        return f"{self.code}: {self.message}"


def invalid_argument(message):
    """A `ServingError` with code `INVALID_ARGUMENT` (HTTP 400)."""
    return ServingError("INVALID_ARGUMENT", message)


def not_found(message):
    """A `ServingError` with code `NOT_FOUND` (HTTP 404)."""
    return ServingError("NOT_FOUND", message)


# The code a client reports for an HTTP error status (the inverse of the table above,
# with 408 / 411 / 413 that only the REST front end sends).
_CODE_FOR_HTTP_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED",
    409: "ABORTED",
    411: "INVALID_ARGUMENT",
    413: "RESOURCE_EXHAUSTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def code_for_http_status(status):
    """The canonical code name a client reports for an HTTP error status."""
    return _CODE_FOR_HTTP_STATUS.get(status, "UNKNOWN")


def describe_key_mismatch(expected, sent):
    """`missing input(s) {a}; unknown input(s) {b}` for two sets of input names."""
    missing, extra = sorted(set(expected) - set(sent)), sorted(set(sent) - set(expected))
    parts = []
    if missing:
        parts.append(f"missing input(s) {{{', '.join(missing)}}}")
    if extra:
        parts.append(f"unknown input(s) {{{', '.join(extra)}}}")
    return "; ".join(parts)
