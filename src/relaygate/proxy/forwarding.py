"""Forwarding one request along its plan: the targets of its route in failover order,
each sent the request as the client wrote it or translated to the API its endpoint
serves (:mod:`relaygate.proxy.translation`), one attempt at a time
(:meth:`relaygate.proxy.upstream.Upstream.attempt`), while a watch notices a client
that leaves (:mod:`relaygate.proxy.disconnect`)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from relaygate.errors import NotServed, RelaygateError, TryNextTarget
from relaygate.proxy.accounting import Exchange
from relaygate.proxy.asgi import Receive, Scope, Send, send_json
from relaygate.proxy.body import dump_body
from relaygate.proxy.disconnect import DisconnectWatch
from relaygate.proxy.multipart import Form, Spliced
from relaygate.proxy.outgoing import Outgoing, ask_for_usage
from relaygate.proxy.translation import NATIVE, PROBE, TOKEN_COUNT_HEADER, TRANSLATE, Translation
from relaygate.proxy.upstream import Upstream
from relaygate.targets import Target

log = logging.getLogger(__name__)


class Forwarding:
    """Sends a routed request to its targets over ``upstream``, translating with
    ``translation`` where a target's endpoint speaks another API."""

    def __init__(self, upstream: Upstream, translation: Translation) -> None:
        self._upstream = upstream
        self._translation = translation

    async def forward(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        plan: list[tuple[Target, str]],
        payload: dict[str, Any],
        model: str,
        body: bytes,
        state: Exchange,
        form: Form | None = None,
    ) -> int:
        """Try the ``plan`` in turn until a target answers; fail over on connection
        errors, timeouts before the first byte, 5xx, 429 and refused provider keys — never
        once a byte has reached the client. The last target's error response is passed
        through.

        A streamed chat or text completion that did not ask for usage is sent with
        ``stream_options.include_usage`` so its tokens can be counted, and the extra
        usage chunk is kept from the client. A target whose endpoint does not serve the
        client's API gets the request translated (:mod:`relaygate.proxy.translation`);
        a multipart ``form`` never is."""
        out, modes = await self._outgoing(scope["path"], plan, payload, model, body, state, form)
        task = asyncio.current_task()
        watch = DisconnectWatch(receive, state, task)
        watch.start()
        try:
            return await self._try_plan(scope, send, plan, modes, out, model, state)
        except asyncio.CancelledError:
            if watch.left and not state.finished and task is not None:
                task.uncancel()
                log.info("client disconnected; cancelled the upstream request")
                return 499
            raise
        finally:
            state.finished = True
            watch.stop()

    async def _outgoing(
        self,
        path: str,
        plan: list[tuple[Target, str]],
        payload: dict[str, Any],
        model: str,
        body: bytes,
        state: Exchange,
        form: Form | None,
    ) -> tuple[Outgoing, list[str]]:
        """What goes to the plan's targets, and each target's mode (native, or the API
        the request is translated to)."""
        translation = self._translation
        modes = [
            NATIVE if form is not None else translation.mode(path, target, payload)
            for target, _ in plan
        ]
        assert state.principal is not None
        turn = (
            await translation.turn(path, payload, state.principal)
            if any(mode != NATIVE for mode in modes)
            else None
        )
        rewrite = form is None and state.stream and ask_for_usage(path, payload, state)
        return Outgoing(payload, model, body, rewrite, state.strip_usage, turn, form), modes

    async def _try_plan(
        self,
        scope: Scope,
        send: Send,
        plan: list[tuple[Target, str]],
        modes: list[str],
        out: Outgoing,
        model: str,
        state: Exchange,
    ) -> int:
        """Each target of ``plan`` in turn until one answers (a batch request within its
        endpoint's batch slots); the last one's error is raised."""
        failure: RelaygateError | None = None
        last = len(plan) - 1
        for index, (target, name) in enumerate(plan):
            state.target = target
            state.served_model = name if name != model else None
            final = index == last
            try:
                ticket = state.ticket
                if ticket is None:
                    return await self._to_target(
                        scope, send, target, name, modes[index], out, state, final=final
                    )
                async with ticket.slots.slot(target.endpoint_id, ticket.batch_id):
                    return await self._to_target(
                        scope, send, target, name, modes[index], out, state, final=final
                    )
            except TryNextTarget as retry:
                failure = retry.error
                log.warning(
                    "failing over from endpoint %r: %s", target.endpoint_name, retry.error.message
                )
        assert failure is not None
        raise failure

    async def _to_target(
        self,
        scope: Scope,
        send: Send,
        target: Target,
        name: str,
        mode: str,
        out: Outgoing,
        state: Exchange,
        *,
        final: bool,
    ) -> int:
        """One attempt at ``target`` (raises :class:`TryNextTarget` to fail over): the request as
        sent, or translated (``mode``); a probe the endpoint answers 404 or 405 is
        translated at once, and what it found remembered."""
        translation = self._translation
        if mode != TRANSLATE:
            state.strip_usage = out.strip
            payload = out.payload
            sent: bytes | Spliced = out.body
            if out.form is not None:  # the form's own bytes, around the new model
                sent = out.form.with_model(target.upstream_id)
            elif target.upstream_id != out.model or out.rewrite:
                payload["model"] = target.upstream_id
                sent = dump_body(payload)
            try:
                status = await self._upstream.attempt(
                    scope, send, target, sent, state, final=final, probe=mode == PROBE
                )
            except NotServed:  # only a probe raises it
                translation.note(target, translation.api_of(scope["path"]), TRANSLATE)
            else:
                if mode == PROBE and 200 <= state.upstream_status < 300:
                    translation.note(target, translation.api_of(scope["path"]), NATIVE)
                return status
        return await self._translated(scope, send, target, name, out, state, final=final)

    async def _translated(
        self,
        scope: Scope,
        send: Send,
        target: Target,
        name: str,
        out: Outgoing,
        state: Exchange,
        *,
        final: bool,
    ) -> int:
        """One attempt at ``target`` with the request translated to the API its endpoint
        serves; a translated Responses answer is stored for its owner afterwards."""
        translation = self._translation
        conversion = translation.convert(
            scope["path"],
            out.payload,
            target,
            name,
            out.turn,
            usage_asked=state.stream and not out.strip,
        )
        if conversion.local is not None:  # nothing to ask the endpoint
            state.finished = True  # before its one message: whole, and settled before it
            await send_json(send, 200, conversion.local, ((TOKEN_COUNT_HEADER, b"estimate"),))
            return 200
        state.strip_usage = False  # the translation reads the usage chunk itself
        status = await self._upstream.attempt(
            scope, send, target, conversion.body, state, final=final, conversion=conversion
        )
        assert state.principal is not None
        translation.finished(conversion, out.payload, state.principal, name, out.turn)
        return status
