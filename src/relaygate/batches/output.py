"""A batch's output and error files in OpenAI's line format
(https://platform.openai.com/docs/api-reference/batch/request-output)::

    {"id": "batch_req_…", "custom_id": "…",
     "response": {"status_code": 200, "request_id": "…", "body": {…}}, "error": null}

An answer with a 2xx status goes to the output file, any other answer to the error
file as it is, and a request that got no answer (its key revoked, its batch cancelled
or expired first) to the error file with ``"response": null`` and an ``error``.
"""

from __future__ import annotations

import orjson

from relaygate.db.tables import BatchRequest

ENDED_UNSENT = {
    "cancelled": ("batch_cancelled", "the batch was cancelled before this request was sent"),
    "expired": ("batch_expired", "the batch expired before this request was sent"),
}


def response_text(body: bytes) -> str:
    """An answer's body as it is kept and written: compact JSON on one line (a JSON
    string when the body is not JSON)."""
    try:
        return orjson.dumps(orjson.loads(body)).decode()
    except orjson.JSONDecodeError:
        return orjson.dumps(body.decode("utf-8", "replace")).decode()


def output_line(row: BatchRequest, unsent_state: str) -> tuple[bool, bytes]:
    """The line of ``row`` (its newline included) and whether it goes to the output
    file (else the error file). A row never answered is written as ended by
    ``unsent_state`` (``cancelled`` or ``expired``)."""
    line_id = f"batch_req_{row.batch_id.removeprefix('batch_')}_{row.line}"
    head = b'{"id":' + orjson.dumps(line_id) + b',"custom_id":'
    head += orjson.dumps(row.custom_id)
    if row.response is not None and row.status_code is not None:
        response = (
            b',"response":{"status_code":'
            + str(row.status_code).encode()
            + b',"request_id":'
            + orjson.dumps(row.request_id)
            + b',"body":'
            + row.response.encode()
            + b'},"error":null}\n'
        )
        return 200 <= row.status_code < 300, head + response
    if row.error_code is not None:
        code, message = row.error_code, row.error_message or row.error_code
    else:
        code, message = ENDED_UNSENT.get(row.state, ENDED_UNSENT[unsent_state])
    error = orjson.dumps({"code": code, "message": message})
    return False, head + b',"response":null,"error":' + error + b"}\n"
